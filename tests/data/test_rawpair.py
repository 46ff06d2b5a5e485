"""RawPairDataset (your own camera): metadata ratio, the four Bayer phases, per-site black levels,
both reading modes, mismatched pairs, X-Trans, write_dng's exposure / ISO metadata; a truncated
file, a bad CFA description and ratios above data.max_ratio are reported in one line; the example
recipe (configs/example_own_camera.yaml) trains and tests end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

rawpy = pytest.importorskip("rawpy")
pytest.importorskip("tifffile")

from helpers import REPO, load_script  # noqa: E402

from cans.cfa import XTRANS_PATTERN  # noqa: E402
from cans.data import DataError, build_dataset  # noqa: E402
from cans.data.rawpair import (  # noqa: E402
    FileMeta,
    RawPairDataset,
    XTransPairDataset,
    metadata_ratio,
    parse_pair_list,
    prepare_pairs,
    read_pair_file,
)
from cans.io.dng import write_dng  # noqa: E402

H, W = 64, 96
WHITE = 4095
CODES = {"R": 0, "G": 1, "B": 2}
SITE_BLACK = (250, 260, 270, 280)   # per site of the 2x2 cell, row by row (as stored in the file)


def scene() -> np.ndarray:
    """(H, W, 3) in [0, 1]: grey with a red patch (top left) and a blue patch (bottom right)."""
    img = np.full((H, W, 3), 0.2)
    img[8:28, 8:40] = (0.9, 0.05, 0.05)
    img[36:60, 56:90] = (0.05, 0.05, 0.9)
    return img


def mosaic(img: np.ndarray, pattern: str, gain: float, black=SITE_BLACK) -> np.ndarray:
    """The DN a sensor with this CFA ``pattern`` and per-site ``black`` records (no noise)."""
    cell = np.array([CODES[c] for c in pattern]).reshape(2, 2)
    idx = np.tile(cell, (H // 2, W // 2))
    values = np.take_along_axis(img, idx[..., None], axis=2)[..., 0]
    blk = np.tile(np.asarray(black, dtype=np.float64).reshape(2, 2), (H // 2, W // 2))
    return np.round(blk + values * gain * (WHITE - 300)).astype(np.uint16)


def write_pair(folder, pattern="GRBG", short=0.05, long=5.0, iso_short=100, iso_long=100, line_ratio=None,
               name="pair", **long_kwargs):
    img = scene()
    ratio = (long * iso_long) / (short * iso_short)
    common = dict(cfa=pattern, black=SITE_BLACK, white=WHITE, as_shot_neutral=(0.5, 1.0, 0.7))
    s_rel, l_rel = f"{name}/short.dng", f"{name}/long.dng"
    write_dng(str(folder / s_rel), mosaic(img, pattern, 1.0 / ratio), exposure_time=short, iso=iso_short, **common)
    write_dng(str(folder / l_rel), mosaic(img, pattern, 1.0, long_kwargs.pop("black", SITE_BLACK)),
              exposure_time=long, iso=iso_long, **{**common, **long_kwargs})
    return f"{s_rel} {l_rel}" + (f" {line_ratio}" if line_ratio else "")


def make_set(folder, lines, list_name="list.txt"):
    (folder / list_name).write_text("\n".join(lines) + "\n")
    return list_name


def test_write_dng_metadata_round_trip(tmp_path):
    path = tmp_path / "x.dng"
    write_dng(str(path), mosaic(scene(), "GBRG", 0.5), cfa="GBRG", black=SITE_BLACK, white=WHITE,
              exposure_time=1 / 60, iso=3200)
    with rawpy.imread(str(path)) as rp:
        assert rp.other.shutter_speed == pytest.approx(1 / 60, rel=1e-6)
        assert rp.other.iso_speed == 3200
        assert rp.white_level == WHITE
        # black per site, read back through the CFA layout: site (0,0) is G, (0,1) B, (1,0) R, (1,1) G
        per_site = np.asarray(rp.black_level_per_channel)[rp.raw_pattern]
        assert per_site.reshape(-1).tolist() == list(SITE_BLACK)
    with pytest.raises(ValueError, match="exposure_time"):
        write_dng(str(tmp_path / "y.dng"), np.zeros((32, 32), np.uint16), exposure_time=-1)


def test_metadata_ratio_modes_cap_and_list_ratio(tmp_path):
    lines = [write_pair(tmp_path, short=0.04, long=4.0, iso_short=400, iso_long=100, name="a"),
             write_pair(tmp_path, short=0.01, long=10.0, name="b"),
             write_pair(tmp_path, short=0.04, long=4.0, line_ratio=123.5, name="c")]
    lst = make_set(tmp_path, lines)
    ds = RawPairDataset(str(tmp_path), lst, "test", load_npy=False, ratio_mode="exposure")
    assert [e.ratio for e in ds.entries] == [pytest.approx(100.0), 300.0, 123.5]   # 1000 capped at 300
    ds = RawPairDataset(str(tmp_path), lst, "test", load_npy=False, ratio_mode="exposure_iso", max_ratio=None)
    assert [e.ratio for e in ds.entries] == [pytest.approx(25.0), pytest.approx(1000.0), 123.5]
    assert ds[0]["ratio"] == pytest.approx(25.0)
    assert ds[0]["input_exposure"] == pytest.approx(0.04) and ds[0]["gt_exposure"] == pytest.approx(4.0)


def test_missing_exposure_is_a_clear_error(tmp_path):
    img = scene()
    (tmp_path / "p").mkdir()
    write_dng(str(tmp_path / "p/s.dng"), mosaic(img, "RGGB", 0.01), cfa="RGGB", black=SITE_BLACK, white=WHITE)
    write_dng(str(tmp_path / "p/l.dng"), mosaic(img, "RGGB", 1.0), cfa="RGGB", black=SITE_BLACK, white=WHITE)
    lst = make_set(tmp_path, ["p/s.dng p/l.dng"])
    with pytest.raises(DataError, match=r"s\.dng.*no exposure time.*third column"):
        RawPairDataset(str(tmp_path), lst, "test", load_npy=False)
    (tmp_path / "ok.txt").write_text("p/s.dng p/l.dng 100\n")
    assert RawPairDataset(str(tmp_path), "ok.txt", "test", load_npy=False)[0]["ratio"] == 100.0


def test_bad_list_line_names_file_and_line(tmp_path):
    (tmp_path / "l.txt").write_text("# comment\na.dng b.dng\na.dng b.dng fast\n")
    with pytest.raises(DataError, match=r"l\.txt:3: the third column must be the exposure ratio"):
        parse_pair_list(str(tmp_path / "l.txt"))


@pytest.mark.parametrize("pattern", ["RGGB", "GRBG", "GBRG", "BGGR"])
def test_each_bayer_phase_both_modes(tmp_path, pattern):
    lst = make_set(tmp_path, [write_pair(tmp_path, pattern=pattern)])
    raw_mode = RawPairDataset(str(tmp_path), lst, "test", load_npy=False)[0]
    summary = prepare_pairs(str(tmp_path), [lst], progress=False, log=lambda m: None)
    assert summary["failed"] == {} and summary["bad_pairs"] == []
    cached = RawPairDataset(str(tmp_path), lst, "test", load_npy=True)
    npy_mode = cached[0]
    assert len(cached._mmaps) == 3  # the three caches stay memory-mapped for the next samples, as SID's
    for key in ("noisy_raw", "clean_raw", "clean_rgb"):
        assert np.array_equal(raw_mode[key].numpy(), npy_mode[key].numpy()), key
    noisy, clean, rgb = npy_mode["noisy_raw"].numpy(), npy_mode["clean_raw"].numpy(), npy_mode["clean_rgb"].numpy()
    cy, cx = {"RGGB": (0, 0), "GRBG": (0, 1), "GBRG": (1, 0), "BGGR": (1, 1)}[pattern]
    assert noisy.shape == (4, (H - cy) // 2, (W - cx) // 2)
    assert rgb.shape == (3, noisy.shape[1] * 2, noisy.shape[2] * 2)
    # channels R, G, B, G after the phase crop: the red patch is bright in R only, the blue one in B only
    red = (slice(5, 13), slice(5, 18))       # packed pixels inside the patches for any crop
    blue = (slice(19, 29), slice(29, 44))
    assert noisy[0][red].mean() > 0.5 and noisy[2][red].mean() < 0.1
    assert noisy[2][blue].mean() > 0.5 and noisy[0][blue].mean() < 0.1
    assert noisy[1][red].mean() < 0.1 and noisy[3][blue].mean() < 0.1
    # the RGB target stays aligned with the crop: red where the red patch is
    r_rgb = rgb[:, 12:24, 20:34].mean(axis=(1, 2))
    assert r_rgb[0] > 2 * r_rgb[2]
    # RAW target: the long exposure times the white balance LibRaw reports for the long file
    with rawpy.imread(str(tmp_path / "pair/long.dng")) as rp:
        wb = np.asarray(rp.camera_whitebalance[:3], dtype=np.float64)
    black_r = SITE_BLACK[pattern.index("R")]
    assert clean[0][red].mean() == pytest.approx(wb[0] / wb[1] * 0.9 * (WHITE - 300) / (WHITE - black_r), rel=1e-3)


def test_normalisation_per_site_black_values_below_black_stay_negative(tmp_path):
    line = write_pair(tmp_path, pattern="GRBG", short=0.05, long=5.0)
    lst = make_set(tmp_path, [line])
    # make some short-exposure values fall below their site's black level
    s_path = tmp_path / "pair/short.dng"
    with rawpy.imread(str(s_path)) as rp:
        raw = rp.raw_image_visible.copy()
    raw[0, 1] = 200                  # site (0,1) = R in GRBG, black 260
    write_dng(str(s_path), raw, cfa="GRBG", black=SITE_BLACK, white=WHITE, exposure_time=0.05, iso=100,
              as_shot_neutral=(0.5, 1.0, 0.7))
    ds = RawPairDataset(str(tmp_path), lst, "test", load_npy=False)
    sample = ds[0]
    noisy = sample["noisy_raw"].numpy()
    # the levels are built once per file and reused, read-only, for the next samples
    levels = ds._levels(ds.entries[0])
    assert levels[0][0] is ds._levels(ds.entries[0])[0][0] and not levels[0][0].flags.writeable
    assert np.array_equal(ds[0]["noisy_raw"].numpy(), noisy)
    # independent computation: after dropping column 0 the cell is RGGB = sites (0,1), (0,0), (1,0), (1,1)
    black = {0: 260.0, 1: 250.0, 2: 270.0, 3: 280.0}
    site = {0: (0, 1), 1: (0, 2), 2: (1, 2), 3: (1, 1)}   # first pixel of each channel in the original mosaic
    for c in range(4):
        y, x = site[c]
        expected = np.float32(np.float32(raw[y, x]) - np.float32(black[c])) / np.float32(WHITE - black[c])
        expected = min(expected * np.float32(100.0), 1.0)
        assert noisy[c, 0, 0] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert noisy[0, 0, 0] < 0


@pytest.mark.parametrize("what", ["size", "cfa", "camera"])
def test_mismatched_pair_names_both_files(tmp_path, what):
    img = scene()
    (tmp_path / "m").mkdir()
    common = dict(black=SITE_BLACK, white=WHITE, exposure_time=0.05, iso=100)
    write_dng(str(tmp_path / "m/s.dng"), mosaic(img, "RGGB", 0.01), cfa="RGGB", **common)
    long = mosaic(img, "RGGB", 1.0)
    kwargs = dict(cfa="RGGB", **{**common, "exposure_time": 5.0})
    if what == "size":
        long = long[:, :W - 2]
    elif what == "cfa":
        kwargs["cfa"] = "BGGR"
    else:
        kwargs["color_matrix"] = np.eye(3)
    write_dng(str(tmp_path / "m/l.dng"), long, **kwargs)
    lst = make_set(tmp_path, ["m/s.dng m/l.dng"])
    message = {"size": "same size", "cfa": "same colour filter", "camera": "different cameras"}[what]
    with pytest.raises(DataError, match=rf"m/s\.dng.*m/l\.dng.*{message}") as info:
        RawPairDataset(str(tmp_path), lst, "test", load_npy=False)
    assert "list.txt:1" in str(info.value)


def test_xtrans_needs_its_own_type(tmp_path):
    img = np.tile(scene(), (1, 1, 1))[:60, :90]
    idx = np.tile(XTRANS_PATTERN, (10, 15))
    dn = np.round(1024 + np.take_along_axis(img, idx[..., None].astype(np.intp), axis=2)[..., 0] * 3000)
    (tmp_path / "x").mkdir()
    for name, t, g in (("s", 0.05, 0.01), ("l", 5.0, 1.0)):
        write_dng(str(tmp_path / f"x/{name}.dng"), (1024 + (dn - 1024) * g).astype(np.uint16), cfa=XTRANS_PATTERN,
                  black=1024, white=16383, exposure_time=t, iso=200)
    lst = make_set(tmp_path, ["x/s.dng x/l.dng"])
    with pytest.raises(DataError, match="XTransPairDataset"):
        RawPairDataset(str(tmp_path), lst, "test", load_npy=False)
    meta, packed, _ = read_pair_file(str(tmp_path / "x/s.dng"), 3)
    assert packed.shape == (9, 20, 30) and meta.crop == (0, 0)
    sample = XTransPairDataset(str(tmp_path), lst, "test", load_npy=False)[0]
    assert sample["noisy_raw"].shape == (9, 20, 30) and sample["clean_rgb"].shape == (3, 60, 90)


def test_build_dataset_passes_ratio_options_and_unprepared_cache_is_clear(tmp_path):
    lst = make_set(tmp_path, [write_pair(tmp_path, iso_short=200, iso_long=100)])
    from cans.config import validate
    cfg = validate({"data": {"type": "RawPairDataset", "data_path": str(tmp_path), "load_npy": False,
                             "ratio_mode": "exposure_iso", "max_ratio": None, "process": {"max_clip": 1.0},
                             "test": {"image_list_file": lst}}})
    assert build_dataset(cfg, "test").entries[0].ratio == pytest.approx(50.0)
    cfg["data"]["load_npy"] = True
    with pytest.raises(DataError, match="prepare_pairs.py"):
        build_dataset(cfg, "test")


def test_metadata_ratio_function():
    def meta(t, iso):
        return FileMeta(shape=(4, 4), pattern="RGGB", crop=(0, 0), black=[0.0] * 4, white=1.0, wb=[1.0] * 3,
                        exposure=t, iso=iso, camera="c")
    assert metadata_ratio(meta(0.1, 800), meta(10.0, 100)) == pytest.approx(100.0)
    assert metadata_ratio(meta(0.1, 800), meta(10.0, 100), "exposure_iso") == pytest.approx(12.5)
    assert metadata_ratio(meta(0.001, 100), meta(10.0, 100), max_ratio=300) == 300.0
    with pytest.raises(DataError, match="no ISO"):
        metadata_ratio(meta(0.1, 0), meta(10.0, 100), "exposure_iso")
    with pytest.raises(DataError, match="ratio_mode"):
        metadata_ratio(meta(0.1, 100), meta(10.0, 100), "iso")


def test_real_camera_file_metadata(reference_dir, tmp_path):
    """A real camera RAW (Kodak DC50, G R / B G): exposure from its metadata, GRBG phase cropped."""
    import shutil
    src = reference_dir / "real_raw" / "kodak_dc50.kdc"
    if not src.exists():
        pytest.skip(f"reference file not found: {src}")
    shutil.copy(src, tmp_path / "a.kdc")
    shutil.copy(src, tmp_path / "b.kdc")
    meta, packed, rgb = read_pair_file(str(tmp_path / "a.kdc"), 2, render=True)
    assert meta.pattern == "GRBG" and meta.crop == (0, 1)
    assert meta.exposure > 0 and meta.iso > 0 and meta.white == 16383
    assert packed.shape == (4, 256, 383) and rgb.shape == (3, 512, 766)
    lst = make_set(tmp_path, ["a.kdc b.kdc"])
    sample = RawPairDataset(str(tmp_path), lst, "test", load_npy=False)[0]
    assert sample["ratio"] == pytest.approx(1.0)
    # same file on both sides, ratio 1: the input is the target without its white balance, clipped at 1
    wb = np.asarray(meta.wb, dtype=np.float32)[[0, 1, 2, 1], None, None]
    np.testing.assert_allclose(sample["noisy_raw"].numpy(), np.minimum(sample["clean_raw"].numpy() / wb, 1.0),
                               rtol=1e-6, atol=1e-7)


# ---------------------------------- a truncated RAW file: unreadable, and data.skip_bad_files leaves it out

def test_truncated_own_camera_raw_is_named_unreadable_with_skip_bad_files(tmp_path):
    pytest.importorskip("rawpy")
    from cans.data import DataError
    from cans.data.rawpair import RawPairDataset, prepare_pairs
    from cans.synthetic import make_own_camera_set

    out = tmp_path / "own"
    make_own_camera_set(str(out), scenes=3, height=112, width=112, progress=False, prepare=False,
                        log=lambda m: None)
    short = (out / "train_list.txt").read_text().split()[0]      # scene_01/IMG_0002.DNG
    data = (out / short).read_bytes()
    (out / short).write_bytes(data[: len(data) // 2])
    logged = []
    summary = prepare_pairs(str(out), ["train_list.txt"], progress=False, log=logged.append)
    assert list(summary["failed"]) == [short]
    assert any("unreadable" in m and "data.skip_bad_files: true" in m for m in logged), logged
    for load_npy in (True, False):
        with pytest.raises(DataError) as err:
            RawPairDataset(str(out), "train_list.txt", "train", load_npy=load_npy, log=lambda m: None)
        msg = str(err.value)
        assert "1 of 3 pairs have unreadable files" in msg and f"cannot read RAW file {out / short}" in msg, msg
        assert msg.endswith("set data.skip_bad_files: true to leave these pairs out"), msg
        assert "prepare_pairs.py" not in msg and "not prepared" not in msg, msg
        ds = RawPairDataset(str(out), "train_list.txt", "train", load_npy=load_npy, skip_bad_files=True,
                            log=lambda m: None)
        assert len(ds.entries) == 2 and ds.skipped_pairs()[0][0] == short


def test_truncated_real_camera_file_is_found_without_decoding(reference_dir, tmp_path):
    """The start-up check of a RAW file (cans.io.raw.check_raw_file) compares the file's size with
    the end of the image data its own directory names: a real camera file cut anywhere fails with
    'truncated' (LibRaw itself reads the header of every one of these, and fails only when decoding)."""
    import shutil

    from cans.errors import BadFileError
    from cans.io.raw import check_raw_file, data_end

    src = reference_dir / "real_raw" / "kodak_dc50.kdc"
    if not src.exists():
        pytest.skip(f"reference file not found: {src}")
    whole = tmp_path / "whole.kdc"
    shutil.copy(src, whole)
    check_raw_file(str(whole))
    size = whole.stat().st_size
    assert data_end(str(whole)) == size
    data = whole.read_bytes()
    for keep in (size - 1, size // 2, 2000):
        cut = tmp_path / f"cut_{keep}.kdc"
        cut.write_bytes(data[:keep])
        with rawpy.imread(str(cut)) as rp:     # LibRaw's header read alone does not notice
            assert rp.sizes.raw_width == 768
        with pytest.raises(BadFileError) as info:
            check_raw_file(str(cut))
        assert str(info.value) == (f"cannot read RAW file {cut}: truncated: {keep:,} bytes, its own directory says "
                                   f"at least {size:,} (an interrupted copy or download?)")
    # the own-camera data set names it at construction in both reading modes' start-up checks
    shutil.copy(tmp_path / f"cut_{size // 2}.kdc", tmp_path / "b.kdc")
    lst = make_set(tmp_path, ["whole.kdc b.kdc"])
    with pytest.raises(DataError, match=r"b.kdc: truncated"):
        RawPairDataset(str(tmp_path), lst, "train", load_npy=False, log=lambda m: None)


def test_prepare_pairs_on_a_full_disk_stops_with_one_error_and_a_rerun_goes_on(tmp_path, monkeypatch):
    """The own-camera preparation on a disk that fills: one DiskFullError (not a FAILED line per file);
    raw_pairs.json keeps the files cached before, which the rerun skips."""
    import cans.data.prepare as prepare
    from cans.errors import DiskFullError
    from cans.synthetic import make_own_camera_set

    out = tmp_path / "own"
    make_own_camera_set(str(out), scenes=3, height=112, width=112, progress=False, prepare=False, log=lambda m: None)
    real, calls = np.save, []

    def save(fh, array, *args, **kwargs):
        calls.append(fh.name)
        if len(calls) > 2:     # the first long exposure's two caches, then the disk is full
            raise OSError("25088 requested and 4096 written")
        return real(fh, array, *args, **kwargs)

    monkeypatch.setattr(prepare.np, "save", save)
    with pytest.raises(DiskFullError) as info:
        prepare_pairs(str(out), ["train_list.txt"], progress=False, log=lambda m: None)
    msg = str(info.value)
    assert msg.startswith(f"no space left in {out}/") and "(25088 requested and 4096 written) (disk full): " in msg, msg
    assert "the 1 file(s) cached are complete and valid" in msg and "\n" not in msg, msg
    monkeypatch.undo()
    assert len(json.loads((out / "raw_pairs.json").read_text())["files"]) == 1
    again = prepare_pairs(str(out), ["train_list.txt"], progress=False, log=lambda m: None)
    assert again["skipped"] == 1 and again["written"] == again["files"] - 1 and not again["failed"]


def test_data_end_of_a_fuji_raf_header_and_of_other_containers(tmp_path):
    """A Fuji RAF names its sections in its header (big-endian offset / length pairs at byte 84):
    the check reads them; a container it does not know gives None (only LibRaw's header read)."""
    import struct

    from cans.errors import BadFileError
    from cans.io.raw import check_size, data_end

    header = b"FUJIFILMCCD-RAW 0201FF389501" + b"X-T2".ljust(32, b"\0") + b"\0" * 24
    header += struct.pack(">6I", 200, 100, 300, 50, 400, 1000)
    raf = tmp_path / "x.RAF"
    raf.write_bytes(header.ljust(1400, b"\1"))
    assert data_end(str(raf)) == 1400
    check_size(str(raf))
    raf.write_bytes(header.ljust(900, b"\1"))
    with pytest.raises(BadFileError, match="truncated: 900 bytes, its own directory says at least 1,400"):
        check_size(str(raf))
    other = tmp_path / "x.CR3"
    other.write_bytes(b"\0\0\0\x18ftypcrx " + b"\0" * 100)
    assert data_end(str(other)) is None
    (tmp_path / "empty.ARW").write_bytes(b"")
    with pytest.raises(BadFileError, match="RAW file is empty"):
        check_size(str(tmp_path / "empty.ARW"))


# ------------------------------ a bad CFA description is one line; ratios above data.max_ratio are reported

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

    from cans.data.rawpair import RawPairDataset
    from cans.errors import DataError
    from cans.inference import InferenceError, read_mosaic
    from cans.io import raw as raw_io

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
    script = load_script("scripts/prepare_pairs.py")
    code = script.main(["--data-path", str(tmp_path), "--lists", "list.txt", "--no-progress"])
    out = capsys.readouterr()
    assert code == 1 and "IndexError" not in out.out + out.err
    assert f"FAILED {tmp_path / 'long.ARW'}: " in out.out and told in out.out, out.out
    # scripts/infer.py reads the visible area's colours: one line too
    with pytest.raises(InferenceError) as info:
        read_mosaic(str(tmp_path / "short.ARW"))
    assert str(info.value).startswith(f"{tmp_path / 'short.ARW'}: ") and "\n" not in str(info.value)


def _own_camera_pairs(tmp_path, monkeypatch):
    """Four pairs read through a fake rawpy: metadata ratios 100, 400 and 600, and one written in
    the list (1000 by the metadata, 250 in the list)."""
    from cans.io import raw as raw_io

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

    from cans.data.rawpair import RawPairDataset

    _own_camera_pairs(tmp_path, monkeypatch)
    script = load_script("scripts/prepare_pairs.py")
    assert script.main(["--data-path", str(tmp_path), "--lists", "list.txt", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"warning: {NOTE}" in out, out
    assert f"RATIO ABOVE 300 {tmp_path / 'list.txt'}:2: 400\n" in out and "list.txt:3: 600\n" in out
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


# ----------------------------------------------------------------- the own-camera example recipe end to end

TINY_OVERRIDES = ["model.width=8", "model.enc_blk_nums=[1,1,1,1]", "model.dec_blk_nums=[1,1,1,1]",
                  "model.middle_blk_num=1"]


def test_example_recipe_end_to_end(tmp_path, capsys):
    """configs/example_own_camera.yaml, small: the synthetic own-camera set is created on first use,
    a tiny model trains on it through RawPairDataset, the validation gain is printed, and test.py
    scores it with tiled inference."""
    data = tmp_path / "own_camera"
    out = tmp_path / "run"
    overrides = TINY_OVERRIDES + [f"data.data_path={data}", "data.synthetic.scenes=3", "data.synthetic.height=128",
                        "data.synthetic.width=160", "data.num_workers=0", "data.train.patch_size=128",
                        "data.train.repeat=2", "train.epochs=1", f"output_dir={out}"]
    config = str(REPO / "configs" / "example_own_camera.yaml")
    assert load_script("train.py").main(["-c", config, "--no-progress", "--set", *overrides]) == 0
    text = capsys.readouterr().out
    assert "creating the synthetic own-camera set" in text
    assert "validation PSNR: untrained" in text and "dB ->" in text
    assert (out / "checkpoints" / "best.pth").is_file()
    files = json.loads((data / "raw_pairs.json").read_text())["files"]
    assert all(meta["pattern"] == "GRBG" and meta["crop"] == [0, 1] for meta in files.values())
    assert not any("_00_" in name for name in files)          # no SID names: the ratio is from metadata
    code = load_script("test.py").main(["-c", config, "--checkpoint", str(out / "checkpoints" / "best.pth"),
                                    "--no-progress", "--no-images", "--tile", "64", "--overlap", "16", "--one-pass",
                                    "--device", "cpu", "--set", *overrides])
    assert code == 0
    report = json.loads((out / "test" / "metrics.json").read_text())
    assert report["tiling"] == {"tile": 64, "overlap": 16, "two_pass": False}
    assert report["reconstruction"]["images"] == 3
    assert report["protocol"]["dataset"] == "own camera (RawPairDataset)"
