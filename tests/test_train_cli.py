"""train.py end to end on a small synthetic SID (tiny model), and Ctrl-C saving last.pth."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from cans.config import load_config
from cans.engine.checkpoint import load_checkpoint
from cans.engine.trainer import Trainer


REPO = Path(__file__).resolve().parents[1]
TINY = ["model.width=8", "model.enc_blk_nums=[1,1,1,1]", "model.dec_blk_nums=[1,1,1,1]", "model.middle_blk_num=1"]


def _train_module():
    spec = importlib.util.spec_from_file_location("train_script", REPO / "train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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
    from cans.data import ensure_synthetic
    ensure_synthetic(cfg, log=lambda m: None)
    tr = Trainer(cfg, progress=False, device=torch.device("cpu"))
    real_step = tr.train_step

    def step_then_interrupt(batch):
        if tr.step == 2:
            raise KeyboardInterrupt
        return real_step(batch)

    tr.train_step = step_then_interrupt
    with pytest.raises(KeyboardInterrupt):
        tr.fit()
    tr.close()
    last = load_checkpoint(str(out / "checkpoints" / "last.pth"))
    assert last["interrupted"] and last["step"] == 2 and last["epoch"] == 0
    for k, v in tr.model.state_dict().items():
        assert torch.equal(v, last["model"][k])
    again = Trainer(cfg, progress=False, device=torch.device("cpu"))  # train.auto_resume
    assert again.step == 2 and again.epoch == 0
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
    assert "configs/CANS_Plus/Sony.yaml: train.epochs: expected int" in proc.stderr, proc.stderr[-2000:]
