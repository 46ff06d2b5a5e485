"""The own-camera path for a Fuji X-Trans sensor, end to end, on a tiny synthetic X-Trans camera.

The set is made as a user would have it (``make_own_camera_set(sensor="xtrans", prepare=False)``:
DNG files with a 6x6 X-Trans filter at another phase than SID's Fuji, each file's own black and
white levels, exposure time and ISO in the metadata, in scene folders, and ``short long [ratio]``
lists), cached with ``scripts/prepare_pairs.py`` through its command line, read in both modes,
then a tiny 9-channel CANS++ is trained with ``train.py``, scored with ``test.py`` and run on one
DNG with ``scripts/infer.py``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

rawpy = pytest.importorskip("rawpy")
pytest.importorskip("tifffile")
torch = pytest.importorskip("torch")

from helpers import REPO, load_script  # noqa: E402

from cans.cfa import XTRANS_PATTERN, pack_xtrans  # noqa: E402
from cans.data import DataError  # noqa: E402
from cans.data.rawpair import XTransPairDataset, prepare_pairs  # noqa: E402
from cans.synthetic import make_own_camera_set  # noqa: E402

H, W = 96, 144                  # sensor pixels; packed 30 x 46 after the (1, 2) phase crop
CROP = (1, 2)                   # the synthetic camera's filter is XTRANS_PATTERN shifted by one row, two columns
PACKED = ((H - CROP[0]) // 6 * 2, (W - CROP[1]) // 6 * 2)
LISTS = ["train_list.txt", "val_list.txt", "test_list.txt"]
TINY = ("model:\n  width: 4\n  enc_blk_nums: [1, 1]\n  dec_blk_nums: [1, 1]\n  middle_blk_num: 1\n")


def _script(name):
    return load_script(name)


def _list_lines(folder: Path, name: str):
    return [line.split() for line in (folder / name).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def raw_set(tmp_path_factory):
    """The synthetic X-Trans camera's files and lists, not prepared (no caches yet)."""
    out = tmp_path_factory.mktemp("xtrans") / "my_fuji"
    make_own_camera_set(str(out), scenes=3, seed=1, height=H, width=W, sensor="xtrans", prepare=False,
                        min_packed=13, progress=False, log=lambda m: None)
    return out


@pytest.fixture(scope="module")
def prepared(raw_set):
    """``scripts/prepare_pairs.py`` run on the set through its command line (sensor detected)."""
    before = sorted(p.name for p in raw_set.rglob("*.npy"))
    code = _script("scripts/prepare_pairs.py").main(["--data-path", str(raw_set), "--lists", *LISTS,
                                                     "--no-progress"])
    return raw_set, code, before


def test_synthetic_xtrans_camera_files_and_lists(raw_set):
    lines = [t for name in LISTS for t in _list_lines(raw_set, name)]
    assert len(lines) == 9 and all(len(t) in (2, 3) for t in lines)
    assert any(len(t) == 2 for t in lines) and any(len(t) == 3 for t in lines)
    assert all(t[0].startswith("scene_") and t[0].endswith(".DNG") for t in lines)
    shorts_iso = {}
    for t in lines:
        with rawpy.imread(str(raw_set / t[1])) as rp:
            assert rp.raw_image_visible.shape == (H, W)
            assert rp.raw_pattern.shape == (6, 6)
            desc = rp.color_desc.decode()
            cfa = np.array([[{"R": 0, "G": 1, "B": 2}[desc[i]] for i in row] for row in rp.raw_pattern])
            assert np.array_equal(np.roll(cfa, (-CROP[0], -CROP[1]), axis=(0, 1)), XTRANS_PATTERN)
            assert not np.array_equal(cfa, XTRANS_PATTERN)            # a phase crop is needed
            assert rp.white_level == 15871 and rp.other.shutter_speed == pytest.approx(10.0)
            long_black = set(np.asarray(rp.black_level_per_channel).tolist())
        with rawpy.imread(str(raw_set / t[0])) as rp:
            shorts_iso[t[0]] = (int(rp.other.iso_speed), set(np.asarray(rp.black_level_per_channel).tolist()),
                                len(t) == 3)
    assert long_black == {1024}
    # the ISO 800 capture carries its own black level, and its list line gives the ratio
    assert {iso: (tuple(black), has_ratio) for iso, black, has_ratio in shorts_iso.values()} == \
        {200: ((1024,), False), 800: ((1018,), True)}
    assert not list(raw_set.rglob("*.npy")) and not (raw_set / "raw_pairs.json").exists()


def test_prepare_cli_and_both_reading_modes_agree(prepared):
    folder, code, before = prepared
    assert code == 0 and before == []
    table = json.loads((folder / "raw_pairs.json").read_text())
    assert table["block_size"] == 3 and len(table["files"]) == 12
    assert all(tuple(m["crop"]) == CROP for m in table["files"].values())
    assert len(list(folder.glob("scene_*_pack/*.DNG.npy"))) == 12
    assert len(list(folder.glob("scene_*_post_int/*.DNG.npy"))) == 3
    for split, lst, patch in (("test", "test_list.txt", None), ("train", "train_list.txt", 48)):
        kwargs = dict(patch_size=patch) if patch else {}
        raw_mode = XTransPairDataset(str(folder), lst, split, load_npy=False, **kwargs)
        npy_mode = XTransPairDataset(str(folder), lst, split, load_npy=True, **kwargs)
        lines = _list_lines(folder, lst)
        # ratios: from the exposure times (100, 250), or as written in the list (200; the exposure
        # times alone say 800, capped at 300)
        assert [e.ratio for e in raw_mode.entries] == [e.ratio for e in npy_mode.entries]
        assert sorted(e.ratio for e in raw_mode.entries) == pytest.approx([100.0, 200.0, 250.0])
        for e, t in zip(raw_mode.entries, lines):
            if len(t) == 3:
                assert e.ratio == float(t[2])
        for i in range(len(raw_mode)):
            torch.manual_seed(i)
            a = raw_mode[i]
            torch.manual_seed(i)
            b = npy_mode[i]
            side = (patch // 3, patch // 3) if patch else PACKED
            assert tuple(a["noisy_raw"].shape) == (9, *side)
            assert tuple(a["clean_raw"].shape) == (9, *side)
            assert tuple(a["clean_rgb"].shape) == (3, side[0] * 3, side[1] * 3)
            for key in ("noisy_raw", "clean_raw", "clean_rgb"):
                assert np.array_equal(a[key].numpy(), b[key].numpy()), (split, i, key)
            assert a["ratio"] == b["ratio"] and a["img_file"] == b["img_file"]


def test_xtrans_normalisation_uses_each_files_levels_and_keeps_negatives(prepared):
    folder = prepared[0]
    ds = XTransPairDataset(str(folder), "train_list.txt", "test", load_npy=True)
    lines = _list_lines(folder, "train_list.txt")
    negatives = 0
    for i, t in enumerate(lines):
        sample = ds[i]
        with rawpy.imread(str(folder / t[0])) as rp:
            raw = rp.raw_image_visible.astype(np.float32)
            black = float(np.asarray(rp.black_level_per_channel)[0])
            white = float(rp.white_level)
            iso = int(rp.other.iso_speed)
        assert black == (1018.0 if iso == 800 else 1024.0)
        packed = pack_xtrans(raw[CROP[0]:, CROP[1]:])
        ratio = np.float32(sample["ratio"])
        expected = np.minimum((packed - np.float32(black)) / np.float32(white - black) * ratio, np.float32(1.0))
        np.testing.assert_allclose(sample["noisy_raw"].numpy(), expected, rtol=1e-6, atol=1e-6)
        below = packed < black
        negatives += int(below.sum())
        assert (sample["noisy_raw"].numpy()[below] < 0).all()
    assert negatives > 0                   # the dark captures do go below black: nothing clips them at 0


def test_wrong_type_and_wrong_sensor_prepare_are_clear(prepared, tmp_path):
    folder = prepared[0]
    from cans.data.rawpair import RawPairDataset
    with pytest.raises(DataError, match="XTransPairDataset"):
        RawPairDataset(str(folder), "test_list.txt", "test", load_npy=False)
    with pytest.raises(DataError, match=r"raw_pairs\.json: prepared for block size 3.*RawPairDataset needs 2"):
        RawPairDataset(str(folder), "test_list.txt", "test", load_npy=True)
    # forcing the Bayer packing on X-Trans files: each file fails, naming it, with a hint
    import shutil
    other = tmp_path / "copy"
    shutil.copytree(folder / "scene_01", other / "scene_01")
    (other / "l.txt").write_text("scene_01/IMG_0002.DNG scene_01/IMG_0001.DNG\n")
    messages = []
    summary = prepare_pairs(str(other), ["l.txt"], block_size=2, progress=False, log=messages.append)
    assert set(summary["failed"]) == {"scene_01/IMG_0001.DNG", "scene_01/IMG_0002.DNG"}
    assert "IMG_0001.DNG: a 6x6 colour filter" in summary["failed"]["scene_01/IMG_0001.DNG"]
    assert any("--sensor" in m for m in messages)
    # a raw_pairs.json left by that failed run pins nothing: detection gives X-Trans
    summary = prepare_pairs(str(other), ["l.txt"], progress=False, log=lambda m: None)
    assert summary["block_size"] == 3 and summary["failed"] == {} and summary["written"] == 2


def test_train_test_infer_tiny_xtrans_model(prepared, tmp_path, capsys):
    folder = prepared[0]
    run = tmp_path / "run"
    cfg = tmp_path / "xtrans.yaml"
    cfg.write_text(
        f"base: {REPO / 'configs' / 'CANS_Plus' / 'Fuji.yaml'}\nname: tiny_own_xtrans\noutput_dir: {run}\n" + TINY +
        f"data:\n  type: XTransPairDataset\n  camera: own\n  data_path: {folder}\n  load_npy: true\n"
        f"  ratio_mode: exposure\n  num_workers: 0\n"
        f"  train: {{image_list_file: train_list.txt, patch_size: 48, repeat: 2, batch_size: 1}}\n"
        f"  valid: {{image_list_file: val_list.txt, only_00: false, patch_size: null}}\n"
        f"  test: {{image_list_file: test_list.txt, only_00: false}}\n"
        f"train:\n  epochs: 1\n  base_lr: 1.0e-3\n  save_per_epoch: 0\n  num_threads: 1\n  validate_at_start: true\n")
    assert _script("train.py").main(["-c", str(cfg), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "XTransPairDataset" in text and "validation PSNR: untrained" in text
    ckpt = run / "checkpoints" / "best.pth"
    assert ckpt.is_file()
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["steps"] == 6 and summary["epochs_done"] == 1         # 3 train pairs x repeat 2
    assert summary["initial"] is not None and np.isfinite(summary["final"]["psnr"])

    assert _script("test.py").main(["-c", str(cfg), "--checkpoint", str(ckpt), "--device", "cpu",
                                    "--no-progress"]) == 0
    report = json.loads((run / "test" / "metrics.json").read_text())
    assert report["protocol"]["dataset"] == "own camera (XTransPairDataset)"
    assert report["reconstruction"]["images"] == 3
    assert np.isfinite(report["reconstruction"]["psnr"])
    assert (run / "test" / "tables.md").is_file() and (run / "test" / "metrics.csv").is_file()
    pngs = sorted(p.name for p in (run / "test" / "images").glob("*.png"))
    assert pngs == sorted(Path(t[0]).stem + ".png" for t in _list_lines(folder, "test_list.txt"))
    from PIL import Image
    with Image.open(run / "test" / "images" / pngs[0]) as im:
        assert im.size == (PACKED[1] * 3, PACKED[0] * 3)

    short = folder / _list_lines(folder, "test_list.txt")[0][0]
    out = tmp_path / "infer"
    assert _script("scripts/infer.py").main(["-c", str(cfg), "--checkpoint", str(ckpt), "--device", "cpu",
                                             "--no-progress", "--ratio", "100", "--out", str(out), str(short)]) == 0
    with Image.open(out / (short.stem + ".png")) as im:
        assert im.size == (W, H)                       # the photo's own size: padded, not cropped
        pixels = np.asarray(im)
    assert pixels.shape == (H, W, 3) and pixels.std() > 0


def test_example_xtrans_config_creates_its_set(tmp_path):
    """configs/example_own_camera_xtrans.yaml: the keys fit together and data.synthetic.auto_create
    makes (and caches) the X-Trans set for XTransPairDataset; small sizes here."""
    from cans.config import load_config
    from cans.config_checks import check_config
    from cans.data import build_dataset
    from cans.synthetic import ensure_synthetic

    where = tmp_path / "example"
    cfg = load_config(str(REPO / "configs" / "example_own_camera_xtrans.yaml"),
                      [f"data.data_path={where}", "data.synthetic.scenes=3", "data.synthetic.height=156",
                       "data.synthetic.width=228"])
    check_config(cfg)
    assert (cfg["data"]["type"], cfg["model"]["in_channel"], cfg["model"]["block_size"]) == ("XTransPairDataset", 9, 3)
    messages = []
    assert ensure_synthetic(cfg, log=messages.append) is True
    assert any("X-Trans own-camera set" in m for m in messages)
    assert json.loads((where / "raw_pairs.json").read_text())["block_size"] == 3
    ds = build_dataset(cfg, "valid")
    assert isinstance(ds, XTransPairDataset)
    sample = ds[0]
    assert tuple(sample["noisy_raw"].shape) == (9, (156 - 1) // 6 * 2, (228 - 2) // 6 * 2)
    assert ensure_synthetic(cfg, log=messages.append) is False     # made once


def test_xtrans_pair_loader_matches_the_authors_loader(reference_dir, tmp_path):
    """The reference's SID Fuji samples of two real X-Trans DNG pairs: XTransPairDataset on the same
    files, listed as a user would (``short long ratio``), gives the same input and RGB target in both
    reading modes, and the same RAW target up to the white balance's rounding (the reference takes
    it from the list's 6 decimals, the own-camera loader from the file)."""
    import shutil
    ref = reference_dir / "loader_parity" / "Fuji"
    if not (ref / "Fuji_reference_samples.pt").is_file():
        pytest.skip(f"reference samples not found under {ref}")
    expected = torch.load(ref / "Fuji_reference_samples.pt")
    shutil.copytree(ref / "Fuji", tmp_path / "fuji")
    # the SID names say 10 s / 0.04 s and 10 s / 0.033 s (capped at 300): written in the list
    (tmp_path / "pairs.txt").write_text("fuji/short/10001_00_0.04s.RAF fuji/long/10001_00_10s.RAF 250\n"
                                        "fuji/short/10001_01_0.033s.RAF fuji/long/10001_00_10s.RAF 300\n")
    summary = prepare_pairs(str(tmp_path), ["pairs.txt"], progress=False, log=lambda m: None)
    assert summary["block_size"] == 3 and summary["failed"] == {}
    for load_npy in (False, True):
        ds = XTransPairDataset(str(tmp_path), "pairs.txt", "test", load_npy=load_npy)
        for i, ref_sample in enumerate(expected):
            sample = ds[i]
            assert sample["ratio"] == pytest.approx(float(ref_sample["ratio"]))
            for key in ("noisy_raw", "clean_rgb"):
                assert np.array_equal(sample[key].numpy(), ref_sample[key].numpy()), (load_npy, i, key)
            np.testing.assert_allclose(sample["clean_raw"].numpy(), ref_sample["clean_raw"].numpy(),
                                       rtol=1e-5, atol=1e-6)
            assert (sample["noisy_raw"].numpy() < 0).sum() == (ref_sample["noisy_raw"].numpy() < 0).sum() > 0
