"""The own-camera example recipe end to end, small: the synthetic own-camera set is created on
first use, a tiny model trains on it through RawPairDataset, the validation gain is printed, and
test.py scores it with tiled inference."""
from __future__ import annotations

import importlib.util
import json

import pytest

from helpers import REPO

pytest.importorskip("rawpy")
pytest.importorskip("tifffile")

TINY = ["model.width=8", "model.enc_blk_nums=[1,1,1,1]", "model.dec_blk_nums=[1,1,1,1]", "model.middle_blk_num=1"]


def _script(name):
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), REPO / name)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_example_recipe_end_to_end(tmp_path, capsys):
    data = tmp_path / "own_camera"
    out = tmp_path / "run"
    overrides = TINY + [f"data.data_path={data}", "data.synthetic.scenes=3", "data.synthetic.height=128",
                        "data.synthetic.width=160", "data.num_workers=0", "data.train.patch_size=128",
                        "data.train.repeat=2", "train.epochs=1", f"output_dir={out}"]
    config = str(REPO / "configs" / "example_own_camera.yaml")
    assert _script("train.py").main(["-c", config, "--no-progress", "--set", *overrides]) == 0
    text = capsys.readouterr().out
    assert "creating the synthetic own-camera set" in text
    assert "validation PSNR: untrained" in text and "dB ->" in text
    assert (out / "checkpoints" / "best.pth").is_file()
    files = json.loads((data / "raw_pairs.json").read_text())["files"]
    assert all(meta["pattern"] == "GRBG" and meta["crop"] == [0, 1] for meta in files.values())
    assert not any("_00_" in name for name in files)          # no SID names: the ratio is from metadata
    code = _script("test.py").main(["-c", config, "--checkpoint", str(out / "checkpoints" / "best.pth"),
                                    "--no-progress", "--no-images", "--tile", "64", "--overlap", "16", "--one-pass",
                                    "--device", "cpu", "--set", *overrides])
    assert code == 0
    report = json.loads((out / "test" / "metrics.json").read_text())
    assert report["tiling"] == {"tile": 64, "overlap": 16, "two_pass": False}
    assert report["reconstruction"]["images"] == 3
    assert report["protocol"]["dataset"] == "own camera (RawPairDataset)"
