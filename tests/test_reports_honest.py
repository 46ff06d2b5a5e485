"""Reports that say what happened: an interrupted test run leaves the previous report whole, a bad
CFA description is one line, capped own-camera ratios are reported, skipped pairs can be listed."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from cans.config import validate
from cans.data import collate_samples
from cans.models import build_model

from helpers import REPO

TINY = {"type": "CANS", "in_channel": 4, "width": 4, "middle_blk_num": 1, "enc_blk_nums": [1, 1, 1, 1],
        "dec_blk_nums": [1, 1, 1, 1], "adaptive_size": 2, "block_size": 2}


# ----------------------------------------------------------------------------- 1: the report is swapped in whole

class _Pairs(Dataset):
    """Six tiny samples; ``stop_at``: raise KeyboardInterrupt when that index is loaded (a Ctrl-C
    in the middle of a test run)."""

    def __init__(self, stop_at=None):
        self.stop_at = stop_at

    def __len__(self):
        return 6

    def __getitem__(self, i):
        if i == self.stop_at:
            raise KeyboardInterrupt
        g = torch.Generator().manual_seed(i)
        clean = torch.rand(4, 52, 52, generator=g)
        return {"noisy_raw": clean, "clean_raw": clean, "clean_rgb": torch.rand(3, 104, 104, generator=g),
                "ratio": 100.0, "img_file": f"./Sony/short/1000{i}_00_0.1s.ARW", "lbl_file": f"gt{i}"}


def _snapshot(folder: Path):
    """Every file under ``folder``: relative path -> SHA-1 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(cfg, ckpt, stop_at=None):
    from cans.evaluate.tester import run_test

    return run_test(cfg, str(ckpt), device="cpu", progress=False, print_fn=lambda s: None,
                    loader=DataLoader(_Pairs(stop_at), batch_size=1, collate_fn=collate_samples))


def test_an_interrupted_test_run_leaves_the_previous_report_whole(tmp_path):
    from cans.evaluate import tester

    cfg = validate({"name": "tiny", "output_dir": str(tmp_path / "run"), "model": dict(TINY),
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
    assert sorted(p.name for p in out.iterdir()) == ["images", "metrics.csv", "metrics.json", "tables.md",
                                                     "throughput.json"]


def test_ctrl_c_during_the_swap_waits_until_it_is_done():
    import os
    import signal

    from cans.evaluate.tester import _signals_deferred

    done = []
    with pytest.raises(KeyboardInterrupt):
        with _signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("the rest of the swap")
    assert done == ["the rest of the swap"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ----------------------------------------------------------------------------- 2: a bad CFA description

class _FakeRaw:
    """What rawpy.imread returns, for a 12x12 Bayer file whose CFA description LibRaw got wrong."""

    def __init__(self, desc: bytes, pattern):
        import types

        import numpy as np

        self.color_desc, self.raw_pattern = desc, np.array(pattern, dtype=np.uint8)
        self.raw_image_visible = np.full((12, 12), 600, np.uint16)
        self.raw_colors_visible = np.tile(self.raw_pattern, (6, 6))
        self.black_level_per_channel, self.white_level = [512] * 4, 16383
        self.camera_whitebalance = [2.0, 1.0, 1.5, 1.0]
        self.sizes = types.SimpleNamespace(flip=0)
        self.other = types.SimpleNamespace(shutter_speed=0.1, iso_speed=100)
        self.color_matrix = np.eye(3, 4)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def postprocess(self, **kwargs):
        import numpy as np
        return np.zeros((12, 12, 3), np.uint16)


@pytest.mark.parametrize("desc,expect", [(b"RGB", "index 3 has no colour in color_desc"),
                                         (b"", "index 0 has no colour in color_desc"),
                                         (b"RGBE", "that is the cell 'RGEB' (expected only R, G and B sites")],
                         ids=["short", "empty", "rgbe"])
def test_a_bad_cfa_description_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys, desc, expect):
    import importlib.util

    from cans.data import DataError
    from cans.data import raw_io
    from cans.data.rawpair import RawPairDataset
    from cans.inference import InferenceError, read_mosaic

    monkeypatch.setattr(raw_io.rawpy, "imread", lambda path: _FakeRaw(desc, [[0, 1], [3, 2]]))
    for name in ("short.ARW", "long.ARW"):
        (tmp_path / name).write_bytes(b"read through the fake")
    (tmp_path / "list.txt").write_text("short.ARW long.ARW\n")
    told = f"LibRaw reports color_desc {desc.decode()!r} and raw_pattern [[0, 1], [3, 2]]"
    with pytest.raises(DataError) as info:
        raw_io.read_raw(str(tmp_path / "short.ARW"))
    assert str(info.value).startswith(f"{tmp_path / 'short.ARW'}: ") and told in str(info.value)
    assert expect in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(DataError, match="missing or unreadable files") as info:     # the dataset, from RAW
        RawPairDataset(str(tmp_path), "list.txt", "test", load_npy=False, log=lambda s: None)
    assert told in str(info.value) and "IndexError" not in str(info.value)
    # scripts/prepare_pairs.py: the file is FAILED with that line, not an IndexError
    spec = importlib.util.spec_from_file_location("prepare_pairs", REPO / "scripts/prepare_pairs.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    code = script.main(["--data-path", str(tmp_path), "--lists", "list.txt", "--no-progress"])
    out = capsys.readouterr()
    assert code == 1 and "IndexError" not in out.out + out.err
    assert f"FAILED {tmp_path / 'long.ARW'}: " in out.out and told in out.out, out.out
    # scripts/infer.py reads the visible area's colours: one line too
    with pytest.raises(InferenceError) as info:
        read_mosaic(str(tmp_path / "short.ARW"))
    assert str(info.value).startswith(f"{tmp_path / 'short.ARW'}: ") and "\n" not in str(info.value)


# ----------------------------------------------------------------------------- 3: ratios above data.max_ratio

def _own_camera_pairs(tmp_path, monkeypatch):
    """Four pairs read through a fake rawpy: metadata ratios 100, 400 and 600, and one written in
    the list (1000 by the metadata, 250 in the list)."""
    from cans.data import raw_io

    exposures = {"long.ARW": 10.0, "s100.ARW": 0.1, "s400.ARW": 0.025, "s600.ARW": 1 / 60, "s250.ARW": 0.01}

    def imread(path):
        raw = _FakeRaw(b"RGBG", [[0, 1], [3, 2]])
        raw.other.shutter_speed = exposures[Path(path).name]
        return raw

    monkeypatch.setattr(raw_io.rawpy, "imread", imread)
    for name in exposures:
        (tmp_path / name).write_bytes(b"read through the fake")
    (tmp_path / "list.txt").write_text("s100.ARW long.ARW\ns400.ARW long.ARW\ns600.ARW long.ARW\n"
                                       "s250.ARW long.ARW 250\n")


NOTE = ("2 of 4 pairs have an exposure ratio above data.max_ratio=300 (largest 600): their input is "
        "amplified by 300 only")


def test_ratios_capped_by_max_ratio_are_reported_at_preparation_and_load(tmp_path, monkeypatch, capsys):
    import importlib.util

    from cans.data.rawpair import RawPairDataset

    _own_camera_pairs(tmp_path, monkeypatch)
    spec = importlib.util.spec_from_file_location("prepare_pairs", REPO / "scripts/prepare_pairs.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--data-path", str(tmp_path), "--lists", "list.txt", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"warning: {NOTE}" in out, out
    assert f"RATIO ABOVE 300 {tmp_path / 'list.txt'}:2: 400\n" in out and f"list.txt:3: 600\n" in out
    assert "list.txt:1:" not in out and "list.txt:4:" not in out     # 100, and a ratio written in the list
    script.main(["--data-path", str(tmp_path), "--lists", "list.txt", "--no-progress", "--max-ratio", "none"])
    assert "ratio above" not in capsys.readouterr().out

    for load_npy in (True, False):
        lines = []
        ds = RawPairDataset(str(tmp_path), "list.txt", "train", load_npy=load_npy, log=lines.append)
        assert [e.ratio for e in ds.entries] == [100.0, 300.0, 300.0, 250.0]
        assert lines == [f"[data] data.train: warning: {NOTE}"]
        assert ds.capped_ratios == [(f"{tmp_path / 'list.txt'}:2", 400.0), (f"{tmp_path / 'list.txt'}:3", 600.0)]
    lines = []
    ds = RawPairDataset(str(tmp_path), "list.txt", "test", load_npy=True, max_ratio=None, log=lines.append)
    assert [e.ratio for e in ds.entries] == [100.0, 400.0, 600.0, 250.0] and lines == [] and ds.capped_ratios == []


# ----------------------------------------------------------------------------- 4: the skipped pairs, as a list

def _bad_pairs_dataset(tmp_path, split):
    """A PairDataset of four pairs with data.skip_bad_files: s0 fails the construction check, s2
    fails when loaded."""
    import numpy as np

    from cans.data import DataError
    from cans.data.base import PairDataset
    from cans.data.lists import PairEntry

    class Pairs(PairDataset):
        def prepare_hint(self):
            return "no hint"

        def _entries(self):
            return [PairEntry(f"s{i}.ARW", f"l{i}.ARW", source=f"list.txt:{i + 1}", input_exposure=0.1,
                              gt_exposure=10.0) for i in range(4)]

        def _check_entry(self, entry):
            if entry.img_file == "s0.ARW":
                raise DataError("s0.ARW: RAW file not found")

        def _levels(self, entry):
            return (0.0, 1000.0), (0.0, 1000.0)

        def _arrays(self, entry):
            if entry.img_file == "s2.ARW":
                raise DataError("s2.ARW: truncated")
            return (np.full((4, 8, 8), 10, np.uint16), np.full((4, 8, 8), 500, np.uint16),
                    np.zeros((3, 16, 16), np.uint16))

    (tmp_path / "list.txt").write_text("read by _entries\n")
    return Pairs(str(tmp_path), "list.txt", split, skip_bad_files=True, log=lambda s: None)


def test_skipped_pairs_lists_what_skip_bad_files_left_out(tmp_path):
    ds = _bad_pairs_dataset(tmp_path, "train")
    assert ds.skipped_pairs() == [("s0.ARW", "s0.ARW: RAW file not found")]
    for _ in range(2):   # two epochs: s2 is met twice, listed once
        assert [b["img_file"] for b in DataLoader(ds, batch_size=1, collate_fn=collate_samples)] == \
            [["s1.ARW"], ["s3.ARW"], ["s3.ARW"]]          # s2 replaced by the next pair
    assert ds.skipped_pairs() == [("s0.ARW", "s0.ARW: RAW file not found"), ("s2.ARW", "s2.ARW: truncated")]

    # valid with a worker process: its find comes back as a marker of the batch
    ds = _bad_pairs_dataset(tmp_path, "valid")
    markers = []
    for batch in DataLoader(ds, batch_size=2, collate_fn=collate_samples, num_workers=1,
                            multiprocessing_context="fork"):
        markers.extend(batch.get("skipped") or [])
    assert ds.skipped_pairs() == [("s0.ARW", "s0.ARW: RAW file not found")]     # the worker's copy saw s2
    assert ds.skipped_pairs(markers) == [("s0.ARW", "s0.ARW: RAW file not found"), ("s2.ARW", "s2.ARW: truncated")]
    assert ds.skipped_pairs([{"img_file": "", "source": "list.txt:1", "reason": "x"}]) == ds.skipped_pairs()
