"""cans.evaluate.scores with a hand-made dataset and a tiny model."""
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from cans.evaluate.scores import (evaluate, format_tables, summarize, write_metrics_csv,
                                  write_metrics_json)
from cans.evaluate.paper import PAPER
from cans.evaluate.metrics import psnr
from cans.models import build_model

from helpers import REPO, TESTS, Oracle, PairSet

TINY = {"type": "CANS", "in_channel": 4, "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1, 1, 1],
        "dec_blk_nums": [1, 1, 1, 1], "adaptive_size": 2, "block_size": 2}


def test_report_schema_and_values(tmp_path):
    ds = PairSet()
    report = evaluate(Oracle(), DataLoader(ds, batch_size=2), "cpu", progress=False, save_dir=str(tmp_path),
                      save_images=True, save_grid=True)
    assert set(report) == {"reconstruction", "denoising", "per_image", "skipped"}
    assert report["reconstruction"]["images"] == 4 and report["skipped"] == []
    den = report["denoising"]
    assert list(den)[:3] == ["x100", "x250", "x300"] and "average" in den
    assert [den[g]["images"] for g in ("x100", "x250", "x300")] == [1, 1, 2]
    # RAW PSNR of each image computed directly
    direct = [psnr(ds[i]["noisy_raw"][None], ds[i]["clean_raw"][None]).item() for i in range(4)]
    assert den["x300"]["psnr"] == pytest.approx((direct[2] + direct[3]) / 2, abs=1e-9)
    group_means = [direct[0], direct[1], (direct[2] + direct[3]) / 2]
    assert den["average"]["psnr"] == pytest.approx(sum(group_means) / 3, abs=1e-9)
    assert den["all_images"]["psnr"] == pytest.approx(sum(direct) / 4, abs=1e-9)
    rgb_direct = [psnr(torch.full((1, 3, 104, 120), 0.5), ds[i]["clean_rgb"][None]).item() for i in range(4)]
    assert report["reconstruction"]["psnr"] == pytest.approx(sum(rgb_direct) / 4, abs=1e-9)
    # file names: the input stem only (one file per image, the PSNR is in the report); grids three images wide
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == sorted(f"1000{i}_00_0.1s.png" for i in range(4))
    grids = sorted(tmp_path.joinpath("grid").glob("*_grid.png"))
    assert len(grids) == 4
    from PIL import Image
    assert Image.open(grids[0]).size == (3 * 120, 104)
    rec = report["per_image"][0]
    assert rec["img_file"].endswith("10000_00_0.1s.ARW") and rec["group"] == "x100"
    assert rec["output"].endswith(".png")


def test_writers_and_tables(tmp_path):
    report = evaluate(Oracle(), DataLoader(PairSet(), batch_size=1), "cpu", progress=False, max_images=3)
    assert report["reconstruction"]["images"] == 3
    assert report["denoising"]["x300"]["images"] == 1
    report["per_image"][0]["rgb_psnr"] = math.inf  # identical images -> null in JSON
    path = write_metrics_json(str(tmp_path / "metrics.json"), report, config={"a": 1}, checkpoint="x.pth")
    data = json.loads(open(path).read())
    assert data["checkpoint"] == "x.pth" and data["per_image"][0]["rgb_psnr"] is None
    for g in ("x100", "x250", "x300", "average"):
        assert set(data["denoising"][g]) == {"psnr", "ssim", "images"}
    rows = list(csv.DictReader(open(write_metrics_csv(str(tmp_path / "metrics.csv"), report["per_image"]))))
    assert len(rows) == 3 and rows[1]["group"] == "x250"
    assert float(rows[1]["raw_psnr"]) == pytest.approx(report["per_image"][1]["raw_psnr"])
    text = format_tables(report)
    assert "Reconstruction" in text and "Denoising" in text and "| x250 | 1 |" in text
    cmp = format_tables(report, PAPER["CANS_Plus"], "CANS++")
    ours = report["denoising"]["x100"]["psnr"]
    assert f"{ours - 42.373:+.3f}" in cmp and "CANS++ PSNR" in cmp


def test_summarize_empty_groups():
    recs = [{"group": "x100", "rgb_psnr": 20.0, "rgb_ssim": 0.5, "raw_psnr": 30.0, "raw_ssim": 0.7},
            {"group": "x7", "rgb_psnr": 22.0, "rgb_ssim": 0.6, "raw_psnr": 34.0, "raw_ssim": 0.9}]
    s = summarize(recs)
    assert list(s["denoising"]) == ["x7", "x100", "x250", "x300", "average", "all_images"]
    assert s["denoising"]["x250"] == {"psnr": None, "ssim": None, "images": 0}
    assert s["denoising"]["average"]["psnr"] == pytest.approx(32.0)
    assert "| x250 | 0 | - | - |" in format_tables(s)


def test_real_model_restores_mode_and_checks_shapes():
    torch.manual_seed(0)
    model = build_model(TINY)
    model.train()
    report = evaluate(model, DataLoader(PairSet(), batch_size=1), "cpu", progress=False, max_images=2,
                      amp="bf16")
    assert model.training
    assert all(np.isfinite(r["rgb_ssim"]) for r in report["per_image"])

    class Wrong(PairSet):
        def __getitem__(self, i):
            s = super().__getitem__(i)
            s["clean_rgb"] = s["clean_rgb"][:, :-2]
            return s

    with pytest.raises(ValueError, match="10000_00_0.1s.ARW"):
        evaluate(model, DataLoader(Wrong(), batch_size=1), "cpu", progress=False)


DIST_SCRIPT = r'''
import json, os, sys
import torch, torch.distributed as dist
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
sys.path.insert(0, sys.argv[2])
from helpers import PairSet, Oracle
from cans.engine.distributed import cleanup_distributed
from cans.evaluate.scores import evaluate
dist.init_process_group("gloo")
ds = PairSet()
ds.ratios = (100.0, 250.0, 300.0)  # 3 images on 2 ranks: the sampler repeats one
loader = DataLoader(ds, batch_size=1, sampler=DistributedSampler(ds, shuffle=False))
report = evaluate(Oracle(), loader, "cpu", progress=False)
with open(sys.argv[1] + f".{dist.get_rank()}", "w") as fh:
    json.dump(report, fh)
cleanup_distributed()
'''


def test_distributed_gather(tmp_path):
    import os
    import socket
    import subprocess
    import sys
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "dist_eval.py"
    script.write_text(DIST_SCRIPT)
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "out"), str(TESTS)],
                              env=dict(env, RANK=str(r)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for r in range(2)]
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out.decode()[-2000:]
    r0 = json.loads((tmp_path / "out.0").read_text())
    r1 = json.loads((tmp_path / "out.1").read_text())
    assert r0 == r1
    assert r0["reconstruction"]["images"] == 3
    assert sorted(r["img_file"] for r in r0["per_image"]) == [f"./Sony/short/1000{i}_00_0.1s.ARW" for i in range(3)]


# ---------------------------------------------------------------------------------------
# test.py / test.sh end to end on a small synthetic SID
# ---------------------------------------------------------------------------------------

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


def test_png_writer_8_and_16_bit(tmp_path):
    import struct
    import zlib

    from cans.evaluate.images import write_png
    img = torch.rand(3, 7, 9, generator=torch.Generator().manual_seed(3))
    for bits, dtype, peak in ((8, np.uint8, 255), (16, np.dtype(">u2"), 65535)):
        path = write_png(str(tmp_path / f"x{bits}.png"), img, bits)
        blob = open(path, "rb").read()
        assert blob[:8] == b"\x89PNG\r\n\x1a\n"
        w, h, depth, colour = struct.unpack(">IIBB", blob[16:26])
        assert (w, h, depth, colour) == (9, 7, bits, 2)
        i = blob.index(b"IDAT")
        n = struct.unpack(">I", blob[i - 4:i])[0]
        rows = np.frombuffer(zlib.decompress(blob[i + 4:i + 4 + n]), np.uint8).reshape(7, -1)
        assert (rows[:, 0] == 0).all()
        pixels = rows[:, 1:].copy().view(dtype).reshape(7, 9, 3).astype(np.float64) / peak
        assert np.abs(pixels - img.permute(1, 2, 0).numpy()).max() <= 0.5 / peak + 1e-6


def test_tester_errors_are_clear(tmp_path):
    from cans.config import validate
    from cans.evaluate.tester import TestSetupError, load_model, run_test, run_throughput

    cfg = validate({"name": "tiny", "output_dir": str(tmp_path / "run"), "model": dict(TINY)})
    with pytest.raises(TestSetupError, match="at least 49 x 49"):
        run_throughput(cfg, size=(30, 64), random_weights=True, device="cpu", warmup=0, iters=1, print_fn=lambda s: None)
    # a checkpoint whose recorded config has another depth: the message is readable and says what to --set
    path = tmp_path / "other.pth"
    other = dict(TINY, middle_blk_num=2)
    torch.save({"model": build_model(other).state_dict(), "config": {"model": other}}, path)
    with pytest.raises(TestSetupError) as info:
        load_model(cfg, str(path), torch.device("cpu"))
    text = str(info.value)
    assert "does not match" in text and "\\n" not in text and not text.startswith("'"), text
    assert "--set model.middle_blk_num=2" in text, text
    with pytest.raises(TestSetupError, match="max-images"):
        run_test(cfg, str(path), device="cpu", max_images=0, loader=[], print_fn=lambda s: None)
    from cans.evaluate.tester import pick_device
    with pytest.raises(TestSetupError, match="not a device name"):
        pick_device("gpu")
    with pytest.raises(TestSetupError, match="CUDA device"):
        pick_device(f"cuda:{torch.cuda.device_count()}")
    assert pick_device("cpu") == torch.device("cpu")
    fp16 = validate({"name": "tiny", "output_dir": str(tmp_path / "run"), "model": dict(TINY), "test": {"amp": "fp16"}})
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


def test_output_names_are_unique_and_the_same_on_every_rank():
    from cans.evaluate.scores import output_names
    files = ["kitchen/IMG_0102.CR2", "street/IMG_0102.CR2", "street/IMG_0103.CR2",
             "a/x/IMG_9.CR2", "b/x/IMG_9.CR2", "./Sony/short/10003_00_0.04s.ARW"]
    names = output_names(files)
    assert names["kitchen/IMG_0102.CR2"] == "kitchen_IMG_0102" and names["street/IMG_0102.CR2"] == "street_IMG_0102"
    assert names["street/IMG_0103.CR2"] == "IMG_0103"               # no clash: the plain stem
    assert names["./Sony/short/10003_00_0.04s.ARW"] == "10003_00_0.04s"
    assert names["a/x/IMG_9.CR2"] == "a_x_IMG_9" and names["b/x/IMG_9.CR2"] == "b_x_IMG_9"
    assert len(set(names.values())) == len(files)
    assert output_names(reversed(files)) == names                  # independent of the order a rank sees
    same = output_names(["x/IMG_1.CR2", "x//IMG_1.CR2"])            # one file spelt twice
    assert sorted(same.values()) == ["x_IMG_1", "x_IMG_1_2"]


class SameNames(PairSet):
    """Two folders holding files of the same name, as an own-camera test list can."""
    FILES = ["kitchen/IMG_0102.CR2", "street/IMG_0102.CR2", "street/IMG_0103.CR2", "kitchen/IMG_0104.CR2"]

    def __init__(self):
        super().__init__()
        self.entries = [type("Entry", (), {"img_file": f})() for f in self.FILES]

    def __getitem__(self, i):
        return dict(super().__getitem__(i), img_file=self.FILES[i])


def test_same_file_names_in_two_folders_give_two_images(tmp_path):
    report = evaluate(Oracle(), DataLoader(SameNames(), batch_size=2), "cpu", progress=False,
                      save_dir=str(tmp_path), save_images=True)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "IMG_0103.png", "IMG_0104.png", "kitchen_IMG_0102.png", "street_IMG_0102.png"]
    assert len({r["output"] for r in report["per_image"]}) == 4
