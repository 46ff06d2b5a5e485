"""SID loaders: crop alignment, flips, white-balanced RAW target, both reading modes, DataLoader."""
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO

from cans.config import load_config
from cans.data import DATASETS, DataError, FujiDictSet, SonyDictSet, build_dataloader, build_dataset
from cans.data.prepare import cache_path, save_npy
from cans.synthetic import ensure_synthetic, make_synthetic_sid

QUIET = dict(log=lambda *_: None)
SMALL = dict(scenes=3, height=192, width=288, progress=False, log=lambda *_: None)


@pytest.fixture(scope="module")
def sony_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("loader") / "sony"
    make_synthetic_sid(str(out), camera="Sony", seed=3, **SMALL)
    return str(out)


@pytest.fixture(scope="module")
def fuji_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("loader") / "fuji"
    make_synthetic_sid(str(out), camera="Fuji", seed=3, **SMALL)
    return str(out)


BLACK, RANGE = 512, 16383 - 512     # Sony levels: sample = (stored - BLACK) / RANGE


def _position_set(folder, h=40, w=56, b=2, wb=(2.0, 1.0, 1.5), channels=4, n=2):
    """uint16 caches whose values encode their position: packed ch0 = y, ch1 = x above black;
    ch3 of the short exposure is below black (a negative input); RGB R = Y, G = X."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.uint16)
    lines = []
    for i in range(n):
        s_rel, l_rel = f"./Sony/short/0000{i}_0{i}_0.1s.ARW", f"./Sony/long/0000{i}_00_10s.ARW"
        short = np.full((channels, h, w), BLACK + 1, np.uint16)
        short[0], short[1], short[3] = BLACK + yy, BLACK + xx, BLACK - 5
        long_ = np.full((channels, h, w), BLACK + 1000, np.uint16)
        long_[0], long_[1] = BLACK + yy, BLACK + xx
        Y, X = np.mgrid[0:h * b, 0:w * b]
        rgb = np.stack([Y, X, np.full_like(Y, 7)], axis=0).astype(np.uint16)
        save_npy(cache_path(folder, s_rel, "pack"), short)
        save_npy(cache_path(folder, l_rel, "pack"), long_)
        save_npy(cache_path(folder, l_rel, "post_int"), rgb)
        lines.append(f"{s_rel} {l_rel} ISO100 F8" + (" %g %g %g" % wb if wb else ""))
    (Path(folder) / "list.txt").write_text("\n".join(lines) + "\n")
    return "list.txt"


def _decode(sample, b=2):
    ny = np.rint(sample["noisy_raw"][0].numpy() * RANGE / 100).astype(int)   # ratio 100
    nx = np.rint(sample["noisy_raw"][1].numpy() * RANGE / 100).astype(int)
    Y = np.rint(sample["clean_rgb"][0].numpy() * 65535).astype(int)
    X = np.rint(sample["clean_rgb"][1].numpy() * 65535).astype(int)
    return ny, nx, Y, X


def _assert_aligned(sample, b=2):
    ny, nx, Y, X = _decode(sample, b)
    h, w = ny.shape
    assert Y.shape == (h * b, w * b)
    # every RGB pixel lies in the mosaic cell of the packed pixel it sits over
    np.testing.assert_array_equal(Y // b, np.repeat(np.repeat(ny, b, 0), b, 1))
    np.testing.assert_array_equal(X // b, np.repeat(np.repeat(nx, b, 0), b, 1))
    clean = sample["clean_raw"].numpy()
    np.testing.assert_array_equal(np.rint(clean[1] * RANGE).astype(int), nx)


def test_registry_names_and_the_facts_on_each_class():
    classes = DATASETS.classes()
    assert set(classes) == {"SonyDictSet", "FujiDictSet", "MCRDictSet", "RawPairDataset", "XTransPairDataset",
                            "CleanFrameDataset"}
    facts = {n: (c.packed_channels, c.block_size) for n, c in classes.items()}
    assert facts == {"SonyDictSet": (4, 2), "FujiDictSet": (9, 3), "MCRDictSet": (4, 2), "RawPairDataset": (4, 2),
                     "XTransPairDataset": (9, 3), "CleanFrameDataset": (4, 2)}


def test_crop_alignment_with_flips_and_transpose(tmp_path):
    lst = _position_set(str(tmp_path))
    ds = SonyDictSet(str(tmp_path), lst, "train", patch_size=32, max_clip=None, h_flip=True, v_flip=True,
                     transpose=True, **QUIET)
    seen = set()
    for seed in range(24):
        torch.manual_seed(seed)
        s = ds[seed % 2]
        assert s["noisy_raw"].shape == (4, 16, 16) and s["clean_rgb"].shape == (3, 32, 32)
        _assert_aligned(s)
        ny, nx, _, _ = _decode(s)
        transposed = ny[0, 1] != ny[0, 0]
        rows, cols = (nx, ny) if transposed else (ny, nx)
        seen.add((bool(transposed), bool(cols[0, 1] < cols[0, 0]), bool(rows[1, 0] < rows[0, 0])))
        assert 0 <= ny.min() and ny.max() < 40 and nx.max() < 56
    assert len(seen) >= 6    # flips and transpose each happen, in combinations


def test_valid_centre_crop_and_test_full_image(tmp_path):
    lst = _position_set(str(tmp_path))
    valid = SonyDictSet(str(tmp_path), lst, "valid", patch_size=32, max_clip=None, **QUIET)[0]
    ny, nx, _, _ = _decode(valid)
    assert (ny[0, 0], nx[0, 0]) == ((40 - 16) // 2, (56 - 16) // 2)
    _assert_aligned(valid)
    test = SonyDictSet(str(tmp_path), lst, "test", patch_size=32, max_clip=None, **QUIET)[0]
    assert test["noisy_raw"].shape == (4, 40, 56)     # full image, patch_size ignored
    ny, nx, _, _ = _decode(test)
    assert ny[0, 0] == 0 and nx[0, -1] == 55          # no flips
    _assert_aligned(test)


def test_white_balanced_raw_target_and_ratio(tmp_path):
    lst = _position_set(str(tmp_path), wb=(2.0, 1.0, 1.5))
    s = SonyDictSet(str(tmp_path), lst, "test", max_clip=None, **QUIET)[0]
    clean = s["clean_raw"].numpy()
    long_ = np.load(cache_path(str(tmp_path), "./Sony/long/00000_00_10s.ARW", "pack"))
    expected = (long_.astype(np.float64) - BLACK) / RANGE * np.array([2.0, 1.0, 1.5, 1.0])[:, None, None]
    np.testing.assert_allclose(clean, expected, rtol=1e-6)
    assert s["ratio"] == pytest.approx(100) and s["input_exposure"] == 0.1 and s["gt_exposure"] == 10
    assert s["img_file"] == "./Sony/short/00000_00_0.1s.ARW"
    # without white balance in the list: the plain packed long exposure
    lst = _position_set(str(tmp_path / "nowb"), wb=None)
    s = SonyDictSet(str(tmp_path / "nowb"), lst, "test", max_clip=None, **QUIET)[0]
    np.testing.assert_allclose(s["clean_raw"].numpy(), (long_.astype(np.float64) - BLACK) / RANGE, rtol=1e-6)


def test_input_amplified_and_clipped(tmp_path):
    lst = _position_set(str(tmp_path))
    short = np.load(cache_path(str(tmp_path), "./Sony/short/00000_00_0.1s.ARW", "pack"))
    amplified = (short.astype(np.float64) - BLACK) / RANGE * 100
    s = SonyDictSet(str(tmp_path), lst, "test", max_clip=1.0, min_clip=0.05, **QUIET)[0]
    np.testing.assert_allclose(s["noisy_raw"].numpy(), np.clip(amplified, 0.05, 1.0), rtol=1e-6)
    # the paper's setting: clipped above only, so the below-black channel stays negative
    s = SonyDictSet(str(tmp_path), lst, "test", max_clip=1.0, min_clip=None, **QUIET)[0]
    np.testing.assert_allclose(s["noisy_raw"].numpy(), np.minimum(amplified, 1.0), rtol=1e-6)
    assert float(s["noisy_raw"][3].max()) < 0


def test_only_00_repeat_max_samples(tmp_path):
    lst = _position_set(str(tmp_path), n=2)    # captures _00_ and _01_
    assert len(SonyDictSet(str(tmp_path), lst, "train", patch_size=32, **QUIET)) == 2
    ds = SonyDictSet(str(tmp_path), lst, "train", patch_size=32, only_00=True, repeat=3, **QUIET)
    assert len(ds) == 3 and {ds[i]["img_file"] for i in range(3)} == {"./Sony/short/00000_00_0.1s.ARW"}
    assert len(SonyDictSet(str(tmp_path), lst, "train", patch_size=32, max_samples=1, **QUIET)) == 1


@pytest.mark.parametrize("split, patch", [("train", 64), ("valid", 64), ("test", None)])
def test_rawpy_mode_equals_cached_mode(sony_set, split, patch):
    lst = {"train": "Sony_train_list.txt", "valid": "Sony_val_list.txt", "test": "Sony_test_list.txt"}[split]
    kw = dict(patch_size=patch, transpose=True, **QUIET)
    cached = SonyDictSet(sony_set, lst, split, load_npy=True, **kw)
    raw = SonyDictSet(sony_set, lst, split, load_npy=False, **kw)
    for i in range(len(cached)):
        torch.manual_seed(i)
        a = cached[i]
        torch.manual_seed(i)
        b = raw[i]
        for key in ("noisy_raw", "clean_raw", "clean_rgb"):
            assert torch.equal(a[key], b[key]), (split, i, key)
            assert a[key].dtype == torch.float32 and a[key].is_contiguous()
        assert a["ratio"] == b["ratio"] and a["img_file"] == b["img_file"]
    assert 0 <= float(a["clean_rgb"].min()) and float(a["clean_rgb"].max()) <= 1
    assert float(a["noisy_raw"].max()) <= 1.0


def test_fuji_loader_end_to_end(fuji_set):
    for split, lst, patch in (("train", "Fuji_train_list.txt", 96), ("test", "Fuji_test_list.txt", None)):
        cached = FujiDictSet(fuji_set, lst, split, load_npy=True, patch_size=patch, **QUIET)
        raw = FujiDictSet(fuji_set, lst, split, load_npy=False, patch_size=patch, **QUIET)
        torch.manual_seed(0)
        a = cached[0]
        torch.manual_seed(0)
        b = raw[0]
        for key in ("noisy_raw", "clean_raw", "clean_rgb"):
            assert torch.equal(a[key], b[key])
        c, h, w = a["noisy_raw"].shape
        assert c == 9 and a["clean_rgb"].shape == (3, 3 * h, 3 * w)
        if patch:
            assert h == patch // 3
        else:
            assert (h, w) == (192 // 3, 288 // 3)


def _demo_cfg(path, *extra):
    return load_config(str(REPO / "configs" / "demo.yaml"),
                       [f"data.data_path={path}", "data.synthetic.scenes=3", "data.synthetic.height=192",
                        "data.synthetic.width=288", "data.train.patch_size=64", *extra])


def test_demo_config_ensure_synthetic_and_build(tmp_path):
    path = tmp_path / "made_here"
    cfg = _demo_cfg(path)
    messages = []
    assert ensure_synthetic(cfg, log=messages.append) is True
    assert any("creating the synthetic SID" in m and str(path) in m for m in messages)
    assert ensure_synthetic(cfg, log=messages.append) is False
    for split in ("train", "valid", "test"):
        s = build_dataset(cfg, split, log=messages.append)[0]
        assert s["noisy_raw"].shape[0] == 4
    assert build_dataset(cfg, "train")[0]["noisy_raw"].shape == (4, 32, 32)
    off = _demo_cfg(tmp_path / "absent", "data.synthetic.auto_create=false")
    assert ensure_synthetic(off) is False and not (tmp_path / "absent").exists()


def test_ensure_synthetic_follows_the_data_type(tmp_path):
    """A Fuji config with auto_create used to get a Sony set (synthetic.camera now defaults to data.type's)."""
    path = tmp_path / "fuji_made"
    cfg = load_config(str(REPO / "configs" / "CANS" / "Fuji.yaml"),
                      [f"data.data_path={path}", "data.synthetic.auto_create=true", "data.synthetic.scenes=3",
                       "data.synthetic.height=150", "data.synthetic.width=156", "data.train.patch_size=144"])
    messages = []
    assert ensure_synthetic(cfg, log=messages.append) is True
    assert any("creating the synthetic SID" in m and "camera Fuji" in m for m in messages), messages
    assert build_dataset(cfg, "train", log=messages.append)[0]["noisy_raw"].shape == (9, 48, 48)
    mcr = load_config(str(REPO / "configs" / "CANS" / "MCR.yaml"),
                      [f"data.data_path={tmp_path / 'mcr'}", "data.synthetic.auto_create=true"])
    with pytest.raises(DataError, match="no synthetic set stands in for data.type MCRDictSet"):
        ensure_synthetic(mcr, log=messages.append)


def test_cache_arrays_are_checked_when_opened(sony_set, tmp_path, monkeypatch):
    """The shape / dtype check of the three cache files runs once per opened file, not per sample;
    a cache that is not 3-D is still refused when a sample is read."""
    import shutil
    ds = SonyDictSet(sony_set, "Sony_test_list.txt", "test", **QUIET)
    seen = []
    check = SonyDictSet._check_cache_array
    monkeypatch.setattr(SonyDictSet, "_check_cache_array", lambda self, arr, path: (seen.append(path), check(self, arr, path)))
    first = ds[0]
    assert torch.equal(ds[0]["noisy_raw"], first["noisy_raw"]) and len(seen) == len(set(seen)) == 3
    copy = tmp_path / "sony"
    shutil.copytree(sony_set, copy)
    entry = ds.entries[0]
    bad = cache_path(str(copy), entry.lbl_file, "post_int")
    np.save(bad, np.load(bad)[0])
    with pytest.raises(DataError, match="expected 3 dimensions"):
        SonyDictSet(str(copy), "Sony_test_list.txt", "test", **QUIET)[0]


def test_evaluation_loader_keeps_list_order_with_two_workers(sony_set):
    """build_dataloader is the evaluation loader (training has cans.train.loaders): list order,
    every image once, the same on every pass."""
    cfg = _demo_cfg(sony_set, "data.num_workers=2", "data.persistent_workers=false")
    loader = build_dataloader(cfg, "test")
    assert loader.num_workers == 2 and not loader.drop_last and len(loader) == len(loader.dataset)
    names = [b["img_file"][0] for b in loader]
    assert names == [e.img_file for e in loader.dataset.entries] == [b["img_file"][0] for b in loader]


def test_dataloader_workers_in_rawpy_mode(sony_set):
    """RAW files read in worker processes (spawned: LibRaw's OpenMP would hang a forked one)."""
    cfg = _demo_cfg(sony_set, "data.num_workers=2", "data.load_npy=false", "data.persistent_workers=false")
    loader = build_dataloader(cfg, "valid", log=print)
    assert loader.multiprocessing_context is not None
    batches = list(loader)
    assert len(batches) == len(loader.dataset) and batches[0]["clean_rgb"].shape == (1, 3, 192, 288)
