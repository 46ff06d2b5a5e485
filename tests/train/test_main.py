"""train.py end to end on a small synthetic SID (tiny model), Ctrl-C saving last.pth; a mistake
stops it before any work with one line, and a failed run says why in train.log."""
from __future__ import annotations

import os
import re
import signal
import sys

import pytest
import torch
from helpers import DEMO, REPO, TINY_CANS, load_script, one_error_line

from cans.config import load_config, validate
from cans.engine.checkpoint import load_checkpoint
from cans.train.trainer import Trainer

TINY = ["model.width=8", "model.enc_blk_nums=[1,1,1,1]", "model.dec_blk_nums=[1,1,1,1]", "model.middle_blk_num=1"]


def _train_module():
    return load_script("train.py")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A 4-scene synthetic SID made once for this module (the data package creates it)."""
    root = tmp_path_factory.mktemp("sid")
    data_path = root / "synthetic_sid"
    return [f"data.data_path={data_path}", "data.synthetic.scenes=4", "data.synthetic.height=256",
            "data.synthetic.width=384", "data.num_workers=0"]


def test_train_py_runs_the_demo_recipe_end_to_end(tmp_path, synthetic, capsys):
    out = tmp_path / "run"
    overrides = TINY + synthetic + [f"output_dir={out}", "train.epochs=2", "data.train.repeat=1",
                                    "train.log_every=1", "train.valid_per_epoch=1", "train.save_per_epoch=1"]
    code = _train_module().main(["-c", str(REPO / "configs" / "demo.yaml"), "--no-progress", "--set", *overrides])
    assert code == 0
    printed = capsys.readouterr().out
    assert "untrained" in printed and "validation PSNR" in printed
    assert "Reconstruction" in printed and "Denoising" in printed  # the test tables at the end
    ck = out / "checkpoints"
    assert {"last.pth", "best.pth", "epoch_0001.pth", "epoch_0002.pth"} <= {p.name for p in ck.iterdir()}
    last = load_checkpoint(str(ck / "last.pth"))
    assert last["epoch"] == 2 and last["history"]["initial"]["psnr"] is not None
    assert last["config"]["model"]["width"] == 8
    assert (out / "config.yaml").is_file() and (out / "train.log").is_file()
    assert (out / "train_summary.json").is_file() and (out / "test" / "metrics.json").is_file()
    events = list((out / "tensorboard").glob("events.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"train/raw", "train/rgb", "train/total", "train/lr", "train/grad_norm", "train/step_time",
            "train/data_time", "valid/psnr", "valid/ssim"} <= set(tags["scalars"])
    assert {"valid/input_output_target", "valid/raw_output_target"} <= set(tags["images"])


def test_ctrl_c_saves_last_and_resume_continues(tmp_path, synthetic):
    out = tmp_path / "run"
    cfg = load_config(str(REPO / "configs" / "demo.yaml"),
                      TINY + synthetic + [f"output_dir={out}", "train.epochs=2", "data.train.repeat=1",
                                          "train.validate_at_start=false", "train.auto_resume=true"])
    from cans.synthetic import ensure_synthetic
    ensure_synthetic(cfg, log=lambda m: None)
    tr = Trainer(cfg, progress=False, device=torch.device("cpu"))
    real_step = tr.train_step

    def step_then_interrupt(batch):
        if tr.step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: the step under way finishes, then the run stops
        return real_step(batch)

    tr.train_step = step_then_interrupt
    with pytest.raises(KeyboardInterrupt):
        tr.fit()
    tr.close()
    last = load_checkpoint(str(out / "checkpoints" / "last.pth"))
    assert last["interrupted"] and last["step"] == 3 and last["epoch"] == 0 and last["batches_done"] == 3
    for k, v in tr.model.state_dict().items():
        assert torch.equal(v, last["model"][k])
    again = Trainer(cfg, progress=False, device=torch.device("cpu"))  # train.auto_resume
    assert again.step == 3 and again.epoch == 0 and again.batches_done == 3
    summary = again.fit()
    again.close()
    assert summary["epochs_done"] == 2


def test_bad_config_key_gives_a_clear_error(capsys):
    code = _train_module().main(["-c", str(REPO / "configs" / "demo.yaml"), "--set", "train.base_lrr=1e-3"])
    assert code == 2
    assert "train.base_lr" in capsys.readouterr().err


def test_corrupt_resume_file_is_a_one_line_error(tmp_path, synthetic, capsys):
    bad = tmp_path / "last.pth"
    bad.write_bytes(b"PK\x03\x04 not a whole checkpoint")
    code = _train_module().main(["-c", str(REPO / "configs" / "demo.yaml"), "--no-progress", "--resume", str(bad),
                                 "--set", f"output_dir={tmp_path / 'run'}", *synthetic, *TINY])
    err = capsys.readouterr().err
    assert code == 2 and "cannot read checkpoint" in err and "Traceback" not in err, err


def test_train_sh_passes_options_on_when_no_config_is_given():
    import subprocess
    proc = subprocess.run(["sh", str(REPO / "train.sh"), "--set", "train.epochs=ten"], cwd=str(REPO),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "--set train.epochs=ten: train.epochs: expected int" in proc.stderr, proc.stderr[-2000:]


def _subprocess_cfg(out, synthetic):
    """train.py's arguments for a small run with the default data path (a persistent worker)."""
    return [sys.executable, str(REPO / "train.py"), "-c", str(REPO / "configs" / "demo.yaml"), "--no-progress",
            "--set", *TINY, *synthetic, "data.num_workers=1", f"output_dir={out}", "train.epochs=2",
            "data.train.repeat=1", "train.log_every=1", "train.validate_at_start=false", "train.test_at_end=false",
            "train.valid_per_epoch=100", "train.num_threads=1"]


def _killed_in_epoch_2_then_resumed(killed, synthetic, env):
    """A run in ``killed`` SIGKILLed in its second epoch, then resumed from its last.pth to the end;
    returns that checkpoint's path."""
    import subprocess
    import time

    proc = subprocess.Popen(_subprocess_cfg(killed, synthetic), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    log, deadline = killed / "train.log", time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if log.is_file() and "epoch 2 step" in log.read_text():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed in epoch 2"
    last = killed / "checkpoints" / "last.pth"
    assert load_checkpoint(str(last))["epoch"] == 1
    resumed = subprocess.run(_subprocess_cfg(killed, synthetic) + ["--resume", str(last)], capture_output=True,
                             text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "took over the run folder's lock" in log.read_text()
    return last


def test_kill_9_then_resume_equals_the_uninterrupted_run(tmp_path, synthetic):
    """The default config (no train.deterministic, a persistent DataLoader worker): a run killed with
    SIGKILL in its second epoch and resumed from last.pth ends with the weights of a run never killed
    (which runs beside it, one thread each)."""
    import subprocess

    from cans.synthetic import ensure_synthetic
    ensure_synthetic(load_config(str(REPO / "configs" / "demo.yaml"), TINY + synthetic), log=lambda m: None)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(tmp_path / "a.err", "w") as err:
        straight = subprocess.Popen(_subprocess_cfg(tmp_path / "a", synthetic), stdout=subprocess.DEVNULL,
                                    stderr=err, env=env)
        try:
            last = _killed_in_epoch_2_then_resumed(tmp_path / "b", synthetic, env)
            straight.wait(timeout=300)
        finally:
            if straight.poll() is None:
                straight.kill()
    assert straight.returncode == 0, (tmp_path / "a.err").read_text()[-2000:]
    a = load_checkpoint(str(tmp_path / "a" / "checkpoints" / "last.pth"))
    b = load_checkpoint(str(last))
    assert a["step"] == b["step"] and b["epoch"] == 2
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k


def test_problems_a_run_would_meet_late_are_all_found_at_start(tmp_path, synthetic):
    """The own-camera trap: a test list that test_at_end reads at the end is checked at the start,
    with the other problems (a patch larger than every image, a missing pretrained file)."""
    from cans.config import ConfigError
    from cans.synthetic import ensure_synthetic
    from cans.train.main import preflight
    cfg = load_config(str(REPO / "configs" / "demo.yaml"),
                      TINY + synthetic + [f"output_dir={tmp_path / 'run'}", "train.test_at_end=true",
                                          "data.test.image_list_file=missing_test_list.txt",
                                          "data.train.patch_size=1024", f"train.pretrained={tmp_path / 'nope.pth'}"])
    ensure_synthetic(cfg, log=lambda m: None)
    with pytest.raises(ConfigError) as info:
        preflight(cfg)
    text = str(info.value)
    assert text.startswith("3 problems found before training")
    assert "missing_test_list.txt" in text and "data.train.patch_size: 1024 is larger than the smallest" in text
    assert "train.pretrained" in text and "nope.pth" in text
    code = _train_module().main(["-c", str(REPO / "configs" / "demo.yaml"), "--no-progress", "--set", *TINY,
                                 *synthetic, f"output_dir={tmp_path / 'run'}", "train.test_at_end=true",
                                 "data.test.image_list_file=missing_test_list.txt"])
    assert code == 2 and not (tmp_path / "run" / "checkpoints").exists()


# ------------------------------------------------- stops before any work, and the log says why a run failed

def test_train_py_stops_on_a_mismatch_before_any_work(tmp_path, capsys):
    out, data = tmp_path / "run", tmp_path / "synthetic_sid"
    code = load_script("train.py").main(["-c", str(REPO / "configs" / "demo.yaml"), "--no-progress", "--set",
                                     "data.type=FujiDictSet", f"output_dir={out}", f"data.data_path={data}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "set model.in_channel=9" in err, err
    assert not out.exists() and not data.exists()


def test_a_failed_run_says_why_in_train_log(tmp_path, capsys):
    from cans.train.main import train_main

    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"junk" * 10)
    cfg = validate({"name": "tiny", "output_dir": str(tmp_path / "run"), "model": dict(TINY_CANS),
                    "data": {"data_path": str(tmp_path / "nowhere")}, "train": {"pretrained": str(bad)}})
    (tmp_path / "run").mkdir()  # a folder of the user's: kept, and the failure recorded in it
    with pytest.raises(Exception) as info:
        train_main(cfg, progress=False)
    last = (tmp_path / "run" / "train.log").read_text().strip().splitlines()[-1]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ERROR ", last), last
    assert str(info.value) in last and "bad.pth" in last and "not a PyTorch checkpoint" in last


def test_train_output_dir_under_a_file_fails_before_the_data_set_is_made(tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    data = tmp_path / "synthetic"  # auto_create would make it: the output check must come first
    code = load_script("train.py").main(["-c", DEMO, "--no-progress", "--set", f"output_dir={blocker}/run",
                                     f"data.data_path={data}", "train.epochs=1"])
    one_error_line(code, capsys.readouterr().err, "output_dir", str(blocker / "run"))
    assert not data.exists() and blocker.read_text() == "a file, not a folder"


# ------------------------------------------------- a resume never writes into another run's folder

def _folder_state(folder):
    """Every file of a run folder with its bytes (the lock file aside)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def test_a_resume_continues_in_its_own_run_folder_and_leaves_a_finished_run_alone(tmp_path, synthetic,
                                                                                  monkeypatch, capsys):
    """The new user's path: a finished run in the config's default folder, a second run stopped in
    --set output_dir=runs/ctrlc, then --resume its last.pth without repeating --set output_dir."""
    monkeypatch.chdir(tmp_path)
    demo = str(REPO / "configs" / "demo.yaml")
    base = ["--no-progress", "--set", *TINY, *synthetic, "data.train.repeat=1", "train.validate_at_start=false",
            "train.test_at_end=false"]
    assert _train_module().main(["-c", demo, *base, "train.epochs=1"]) == 0
    finished = tmp_path / "runs" / "CANS_Plus_demo"
    assert (finished / "checkpoints" / "best.pth").is_file()
    before = _folder_state(finished)
    assert _train_module().main(["-c", demo, *base, "train.epochs=1", "output_dir=runs/ctrlc"]) == 0
    capsys.readouterr()

    last = "runs/ctrlc/checkpoints/last.pth"
    assert _train_module().main(["-c", demo, *base, "train.epochs=2", "--resume", last]) == 0
    printed = capsys.readouterr().out
    assert f"continuing in its run folder {tmp_path / 'runs' / 'ctrlc'}" in printed, printed
    assert load_checkpoint(last)["epoch"] == 2
    assert _folder_state(finished) == before  # best.pth, train.log, tensorboard/: not a byte changed

    # a config naming another folder: one line, nothing created or written there
    code = _train_module().main(["-c", demo, *base, "train.epochs=3", "output_dir=runs/other", "--resume", last])
    one_error_line(code, capsys.readouterr().err, "belongs to the run folder", "--set output_dir=")
    assert not (tmp_path / "runs" / "other").exists()
    # a start refused because the folder holds a run writes nothing into it (no log line, no events file)
    code = _train_module().main(["-c", demo, *base, "train.epochs=3"])
    one_error_line(code, capsys.readouterr().err, "already holds a run")
    assert _folder_state(finished) == before


# ------------------------------------------------- a stop sent to the whole process group (timeout, SLURM)

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_sent_to_the_process_group_saves_where_the_run_stands(tmp_path, synthetic, sig):
    """SLURM's pre-emption, ``timeout`` and Ctrl-C reach the DataLoader workers too: the run still
    stops after its step, saves last.pth mid-epoch, says so once, and exits without a traceback."""
    import subprocess
    import time

    from cans.synthetic import ensure_synthetic
    ensure_synthetic(load_config(str(REPO / "configs" / "demo.yaml"), TINY + synthetic), log=lambda m: None)
    out = tmp_path / "run"
    args = _subprocess_cfg(out, synthetic) + ["data.train.repeat=400", "train.log_every=5", "train.epochs=1"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    log, deadline = out / "train.log", time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if log.is_file() and "epoch 1 step 10 " in log.read_text():
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the stop"
    os.killpg(proc.pid, sig)  # to every process of the job, the worker included
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "killed by signal" not in stderr, stderr[-3000:]
    assert stdout.count("stopping after this step") == 1, stdout[-3000:]
    last = load_checkpoint(str(out / "checkpoints" / "last.pth"))
    assert last["interrupted"] and last["epoch"] == 0 and last["batches_done"] >= 10
    assert f"--resume {out / 'checkpoints' / 'last.pth'}" in stdout


def test_a_run_builds_each_data_set_once(tmp_path, synthetic, monkeypatch):
    """The start-up checks build the training and validation sets; the run uses those (it once
    built them a second time, reading every list and cache header twice)."""
    import cans.train.main as main_mod
    import cans.train.trainer as trainer_mod

    built = []

    def counting(real):
        def build(cfg, split, *args, **kwargs):
            built.append(split)
            return real(cfg, split, *args, **kwargs)
        return build

    monkeypatch.setattr(main_mod, "build_dataset", counting(main_mod.build_dataset))
    monkeypatch.setattr(trainer_mod, "build_dataset", counting(trainer_mod.build_dataset))
    overrides = TINY + synthetic + [f"output_dir={tmp_path / 'run'}", "train.epochs=1", "data.train.repeat=1",
                                    "train.test_at_end=false", "train.validate_at_start=false"]
    code = _train_module().main(["-c", str(REPO / "configs" / "demo.yaml"), "--no-progress", "--set", *overrides])
    assert code == 0
    assert sorted(built) == ["train", "valid"]
