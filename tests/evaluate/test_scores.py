"""cans.evaluate.scores with a hand-made dataset and a tiny model."""
import csv
import json
import math

import numpy as np
import pytest
import torch
from helpers import REPO, TESTS, Oracle, PairSet
from torch.utils.data import DataLoader

from cans.evaluate.metrics import psnr
from cans.evaluate.paper import PAPER
from cans.evaluate.scores import evaluate, format_tables, summarize, write_metrics_csv, write_metrics_json
from cans.models import build_model

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
    assert "| x250 |" not in format_tables(s)  # no images, no paper figure to show: no row
    from cans.evaluate.paper import PAPER
    assert "| x250 | 0 | - | - |" in format_tables(s, PAPER["CANS_Plus"], "CANS++")  # beside the paper's figure


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
