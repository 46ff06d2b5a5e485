"""cans.evaluate.tester (what test.py and test.sh run): test.sh end to end on a small synthetic SID,
the report and the images it leaves (one image per test image; an interrupted run leaves the
previous report whole), its one-line errors before the model and the data."""
import csv
import hashlib
import json
from pathlib import Path

import pytest
import torch
from helpers import DEMO, REPO, TINY_CANS, IdentityPairs, load_script, one_error_line
from torch.utils.data import DataLoader

from cans.config import validate
from cans.data import collate_samples
from cans.models import build_model

# ---------------------------------------------------- test.py / test.sh end to end on a small synthetic SID

@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    import subprocess

    pytest.importorskip("rawpy")
    pytest.importorskip("tifffile")
    from cans.config import load_config

    root = REPO
    tmp = tmp_path_factory.mktemp("e2e")
    cfg_path = tmp / "tiny.yaml"
    cfg_path.write_text(
        f"base: {root / 'configs/base/Sony.yaml'}\nname: tiny\noutput_dir: {tmp / 'run'}\n"
        "model: {type: CANS_Plus, width: 8, middle_blk_num: 1, enc_blk_nums: [1, 1, 1, 1], dec_blk_nums: [1, 1, 1, 1]}\n"
        f"data:\n  data_path: {tmp / 'SID'}\n  num_workers: 0\n"
        "  synthetic: {auto_create: true, scenes: 3, height: 128, width: 160}\n"
        "test: {save_grid: true}\n")
    torch.manual_seed(0)
    ckpt = tmp / "tiny.pth"
    torch.save({"model": build_model(load_config(str(cfg_path))).state_dict(), "epoch": 1}, ckpt)
    proc = subprocess.run(["sh", str(root / "test.sh"), str(cfg_path), str(ckpt), "--compare-paper", "--all-frames",
                           "--no-progress"],
                          capture_output=True, text=True, timeout=600, cwd=str(tmp))
    return {"proc": proc, "out": tmp / "run" / "test", "cfg": cfg_path, "ckpt": ckpt, "root": root, "tmp": tmp}


def test_test_sh_prints_tables_and_writes_files(synthetic_run):
    import subprocess
    proc, out = synthetic_run["proc"], synthetic_run["out"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for text in ("Reconstruction (sRGB)", "Denoising (RAW)", "| x100 |", "| x250 |", "| x300 |", "**average**",
                 "paper CANS++ PSNR", "42.373"):
        assert text in proc.stdout, text
    data = json.loads((out / "metrics.json").read_text())
    assert set(data) >= {"reconstruction", "denoising", "per_image", "config", "checkpoint"}
    assert set(data["reconstruction"]) == {"psnr", "ssim", "images"} and data["reconstruction"]["images"] == 3
    for g in ("x100", "x250", "x300", "average"):
        assert set(data["denoising"][g]) == {"psnr", "ssim", "images"}
    assert data["checkpoint"] == str(synthetic_run["ckpt"]) and data["config"]["model"]["width"] == 8
    # the report names the weights (git blob id, as `git hash-object` prints it) and the protocol
    blob = subprocess.run(["git", "hash-object", str(synthetic_run["ckpt"])], capture_output=True, text=True)
    if blob.returncode == 0:
        assert data["weights"]["git_blob"] == blob.stdout.strip() and data["weights"]["published"] is None
    assert f"git blob {data['weights']['git_blob']}" in proc.stdout
    assert data["protocol"]["only_00"] is False and data["protocol"]["images"] == 3
    assert data["protocol"]["dataset"] == "synthetic SID Sony"
    notes = " ".join(data["protocol"]["differs_from_paper"])
    assert "synthetic SID" in notes and "every frame is scored" in notes
    assert "warning: not the paper's protocol: every frame is scored" in proc.stdout
    assert "protocol: synthetic SID Sony, Sony_new_test_list.txt, every frame of the list, 3 images" in proc.stdout
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == 3
    for rec in data["per_image"]:
        stem = rec["img_file"].rsplit("/", 1)[-1].rsplit(".", 1)[0]
        png = out / "images" / f"{stem}.png"
        assert png.is_file() and rec["output"] == str(png)
        assert (out / "images" / "grid" / f"{stem}_grid.png").is_file()
        from PIL import Image
        assert Image.open(png).size == (rec["width"], rec["height"]) == (160, 128)
    assert (out / "tables.md").read_text().count("|") > 20


def test_test_py_errors_and_throughput(synthetic_run):
    import subprocess
    import sys
    root, cfg = synthetic_run["root"], synthetic_run["cfg"]
    proc = subprocess.run([sys.executable, str(root / "test.py"), "-c", str(cfg), "--checkpoint", "missing.pth"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and f"checkpoint not found: {Path.cwd() / 'missing.pth'}" in proc.stderr, proc.stderr
    proc = subprocess.run([sys.executable, str(root / "test.py"), "-c", str(cfg), "--checkpoint",
                           str(synthetic_run["ckpt"]), "--throughput", "--set", "test.throughput_iters=2",
                           "test.throughput_warmup=1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ms/image" in proc.stdout
    res = json.loads((synthetic_run["tmp"] / "run" / "test" / "throughput.json").read_text())
    assert res["iters"] == 2 and res["ms_mean"] > 0 and res["packed_size"] == [64, 80]


def test_tester_errors_are_clear(tmp_path):
    from cans.config import validate
    from cans.engine.loading import load_model
    from cans.errors import TestSetupError
    from cans.evaluate.tester import run_test, run_throughput

    cfg = validate({"name": "tiny", "output_dir": str(tmp_path / "run"), "model": dict(TINY_CANS)})
    with pytest.raises(TestSetupError, match="at least 49 x 49"):
        run_throughput(cfg, size=(30, 64), random_weights=True, device="cpu", warmup=0, iters=1, print_fn=lambda s: None)
    # a checkpoint whose recorded config has another depth: the message is readable and says what to --set
    path = tmp_path / "other.pth"
    other = dict(TINY_CANS, middle_blk_num=2)
    torch.save({"model": build_model(other).state_dict(), "config": {"model": other}}, path)
    with pytest.raises(TestSetupError) as info:
        load_model(cfg, str(path), torch.device("cpu"))
    text = str(info.value)
    assert "does not match" in text and "\\n" not in text and not text.startswith("'"), text
    assert "--set model.middle_blk_num=2" in text, text
    with pytest.raises(TestSetupError, match="max-images"):
        run_test(cfg, str(path), device="cpu", max_images=0, loader=[], print_fn=lambda s: None)
    from cans.engine.loading import pick_device
    with pytest.raises(TestSetupError, match="not a device name"):
        pick_device("gpu")
    with pytest.raises(TestSetupError, match="CUDA device"):
        pick_device(f"cuda:{torch.cuda.device_count()}")
    assert pick_device("cpu") == torch.device("cpu")
    fp16 = validate({"name": "tiny", "output_dir": str(tmp_path / "run"), "model": dict(TINY_CANS), "test": {"amp": "fp16"}})
    with pytest.raises(TestSetupError, match="fp16 needs a CUDA device"):
        run_throughput(fp16, size=(64, 64), random_weights=True, device="cpu", print_fn=lambda s: None)


def test_test_sh_takes_options_without_a_checkpoint_and_the_configs_default():
    import subprocess
    root = REPO
    # an option in the checkpoint's place is passed on to test.py, not taken as the checkpoint
    proc = subprocess.run(["sh", str(root / "test.sh"), str(root / "configs/CANS/Sony.yaml"), "--throughput",
                           "--random-weights", "--size", "30", "30"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--size 30 30" in proc.stderr, proc.stderr[-2000:]
    # no checkpoint: the config's own default (CANS weights for a CANS config), not CANS++'s
    proc = subprocess.run(["sh", str(root / "test.sh"), str(root / "configs/CANS/Sony.yaml")], cwd=str(root),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "pretrained_weights/CANS/Sony.pth" in proc.stderr, proc.stderr[-2000:]


# ----------------------------------------------------- one image per test image, the camera of a checkpoint

def test_two_test_runs_with_different_checkpoints_leave_one_image_per_test_image(tmp_path):
    from cans.evaluate.tester import run_test

    cfg = validate({"name": "tiny", "output_dir": str(tmp_path / "run"), "model": dict(TINY_CANS),
                    "data": {"data_path": str(tmp_path)}, "test": {"save_grid": True}})
    images = tmp_path / "run" / "test" / "images"
    images.mkdir(parents=True)
    (images / "10000_00_0.1s_12.34.png").write_bytes(b"an image named with the PSNR, by an older version")
    keep = images / "notes.txt"
    keep.write_text("not an image: left alone")
    reports = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        path = tmp_path / f"ckpt{seed}.pth"
        torch.save(build_model(cfg).state_dict(), path)
        reports.append(run_test(cfg, str(path), device="cpu", progress=False, print_fn=lambda s: None,
                                loader=DataLoader(IdentityPairs(), batch_size=1, collate_fn=collate_samples)))
    assert reports[0]["reconstruction"]["psnr"] != reports[1]["reconstruction"]["psnr"]
    assert sorted(p.name for p in images.glob("*.png")) == [f"1000{i}_00_0.1s.png" for i in range(3)]
    assert len(list((images / "grid").glob("*.png"))) == 3 and keep.is_file()
    saved = json.loads((tmp_path / "run" / "test" / "metrics.json").read_text())
    assert saved["skipped"] == [] and [r["output"] for r in saved["per_image"]] == \
        [str(images / f"1000{i}_00_0.1s.png") for i in range(3)]


def test_a_checkpoint_of_the_other_camera_names_the_camera_not_model_keys(tmp_path):
    from cans.engine.loading import load_model
    from cans.errors import TestSetupError

    fuji = validate({"name": "tiny_fuji", "model": dict(TINY_CANS, in_channel=9, block_size=3, adaptive_size=3),
                     "data": {"type": "FujiDictSet"}})
    path = tmp_path / "fuji.pth"
    torch.save({"model": build_model(fuji).state_dict(), "config": fuji}, path)
    sony = validate({"name": "tiny", "model": dict(TINY_CANS)})
    with pytest.raises(TestSetupError) as info:
        load_model(sony, str(path), torch.device("cpu"))
    text = str(info.value)
    assert text.endswith("the checkpoint was trained on data.type FujiDictSet (run tiny_fuji); this config reads "
                         "SonyDictSet: use a config for FujiDictSet data") and "--set" not in text, text


# ----------------------------- bad input: one line naming the option or file, before the model and the data

TINY_PLUS = {"type": "CANS_Plus", "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1, 1, 1],
             "dec_blk_nums": [1, 1, 1, 1]}


def test_test_out_that_is_a_file_fails_before_the_model_and_the_data(tmp_path, capsys):
    out = tmp_path / "results"
    out.write_text("keep me")
    (tmp_path / "not_read.pth").write_bytes(b"")  # exists (checked first), never read
    code = load_script("test.py").main(["-c", DEMO, "--checkpoint", str(tmp_path / "not_read.pth"), "--out", str(out),
                                    "--device", "cpu", "--no-progress", "--set",
                                    f"data.data_path={tmp_path / 'no_data'}"])
    one_error_line(code, capsys.readouterr().err, "--out", str(out), "not a folder")
    assert out.read_text() == "keep me"


@pytest.mark.parametrize("script, args, names", [
    ("test.py", ["--size", "64"], ["--size", "expected 2 arguments"]),
    ("test.py", ["--tile", "-1"], ["--tile", "-1"]),
])
def test_argument_mistakes_name_the_option(capsys, script, args, names):
    with pytest.raises(SystemExit) as info:
        load_script(script).parse_args(args)
    one_error_line(info.value.code, capsys.readouterr().err, *names)


def test_a_checkpoint_of_the_other_model_type_is_one_line_with_the_fix(tmp_path, capsys):
    cans_cfg = validate({"name": "tiny_cans", "model": dict(TINY_PLUS, type="CANS")})
    path = tmp_path / "cans.pth"
    torch.save({"model": build_model(cans_cfg).state_dict(), "config": cans_cfg}, path)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(f"model: {json.dumps(TINY_PLUS)}\noutput_dir: {tmp_path / 'run'}\n")
    code = load_script("test.py").main(["-c", str(cfg), "--checkpoint", str(path), "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    one_error_line(code, err, str(path), "model.type=CANS", "--set model.type=CANS")
    assert "missing keys" not in err and "get_kv" not in err, err


@pytest.mark.parametrize("throughput", [False, True], ids=["test", "throughput"])
def test_a_missing_checkpoint_leaves_no_result_folder(tmp_path, throughput):
    """test.py with a checkpoint that does not exist stops before it makes the result folder."""
    from cans.config import load_config
    from cans.evaluate.tester import TestSetupError, run_test, run_throughput

    cfg = load_config("configs/demo.yaml", [f"output_dir={tmp_path / 'run'}"])
    out = tmp_path / "results"
    run = run_throughput if throughput else run_test
    with pytest.raises(TestSetupError, match="checkpoint not found"):
        run(cfg, str(tmp_path / "missing.pth"), device="cpu", out_dir=str(out))
    assert not out.exists() and not (tmp_path / "run").exists()


# ------------------------------------------------- an interrupted test run leaves the previous report whole

def _snapshot(folder: Path):
    """Every file under ``folder``: relative path -> SHA-1 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(cfg, ckpt, stop_at=None):
    from cans.evaluate.tester import run_test

    return run_test(cfg, str(ckpt), device="cpu", progress=False, print_fn=lambda s: None,
                    loader=DataLoader(IdentityPairs(6, stop_at), batch_size=1, collate_fn=collate_samples))


def test_an_interrupted_test_run_leaves_the_previous_report_whole(tmp_path):
    from cans.evaluate import tester

    cfg = validate({"name": "tiny", "output_dir": str(tmp_path / "run"), "model": dict(TINY_CANS, width=4),
                    "data": {"data_path": str(tmp_path)}, "test": {"save_grid": True}})
    ckpts = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        ckpts.append(tmp_path / f"ckpt{seed}.pth")
        torch.save(build_model(cfg).state_dict(), ckpts[-1])
    out = tmp_path / "run" / "test"
    _run(cfg, ckpts[0])
    (out / "images" / "notes.txt").write_text("the user's own file: kept")
    (out / "throughput.json").write_text("{}")
    before = _snapshot(out)
    assert sum(name.endswith(".png") for name in before) == 12 and "metrics.json" in before

    with pytest.raises(KeyboardInterrupt):
        _run(cfg, ckpts[1], stop_at=2)      # two images of the new checkpoint done, then Ctrl-C
    assert _snapshot(out) == before         # the old report, every file of it, and nothing else
    assert sorted(p.name for p in out.iterdir()) == sorted({Path(n).parts[0] for n in before})

    # the leftover of a run that was killed outright is removed by the next run; the folder of a
    # run still going (its lock held) is not
    dead = out / f"{tester.STAGE_PREFIX}dead"
    (dead / "images").mkdir(parents=True)
    (dead / "images" / "10000_00_0.1s.png").write_bytes(b"half a report")
    (dead / tester.STAGE_LOCK).write_text("")
    busy, lock = tester._make_stage(str(out))
    born = out / f"{tester.STAGE_PREFIX}born"           # made, its lock file not yet in place
    born.mkdir()
    try:
        report = _run(cfg, ckpts[1])
        assert not dead.exists() and Path(busy).is_dir() and born.is_dir()
    finally:
        tester._drop_stage(busy, lock)
        born.rmdir()
    assert not Path(busy).exists()
    after = _snapshot(out)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["checkpoint"] == str(ckpts[1]) and saved["checkpoint"] == report["checkpoint"]
    pngs = sorted(n for n in after if n.endswith(".png"))
    assert pngs == sorted(n for n in before if n.endswith(".png"))           # the same names ...
    assert all(after[n] != before[n] for n in pngs if "/grid/" not in n)     # ... of the new checkpoint
    assert [r["output"] for r in saved["per_image"]] == [str(out / "images" / f"1000{i}_00_0.1s.png")
                                                         for i in range(6)]
    assert after["images/notes.txt"] == before["images/notes.txt"] and "throughput.json" in after
    assert sorted(p.name for p in out.iterdir()) == [".report.lock", "images", "metrics.csv", "metrics.json",
                                                     "tables.md", "throughput.json"]


def test_ctrl_c_during_the_swap_waits_until_it_is_done():
    import os
    import signal

    from cans.signals import signals_deferred

    done = []
    with pytest.raises(KeyboardInterrupt):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("the rest of the swap")
    assert done == ["the rest of the swap"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
