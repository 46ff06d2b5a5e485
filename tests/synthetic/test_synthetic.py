"""Synthetic SID: DNG files that rawpy reads correctly, sensible renderings, noise, determinism."""
import hashlib
import json
import os

import numpy as np
import pytest

rawpy = pytest.importorskip("rawpy")

from helpers import REPO, load_script  # noqa: E402

from cans.cfa import XTRANS_PATTERN  # noqa: E402
from cans.config import load_config  # noqa: E402
from cans.data.errors import DataError  # noqa: E402
from cans.io.dng import write_dng  # noqa: E402
from cans.io.raw import read_bayer, read_raw  # noqa: E402
from cans.noise.model import NOISE, sample_noise  # noqa: E402
from cans.synthetic import ensure_synthetic, make_synthetic_sid  # noqa: E402
from cans.synthetic.isp import make_scene, srgb_to_linear  # noqa: E402

SMALL = dict(scenes=3, height=192, width=288, progress=False)
QUIET = dict(log=lambda *_: None)


@pytest.fixture(scope="module")
def sony_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn") / "sony"
    make_synthetic_sid(str(out), camera="Sony", seed=0, log=lambda *_: None, **SMALL)
    return out


@pytest.mark.parametrize("cfa", ["RGGB", "GRBG", "GBRG", "BGGR"])
def test_write_dng_bayer_phases(tmp_path, cfa):
    rng = np.random.default_rng(1)
    mosaic = rng.integers(512, 16383, size=(32, 48)).astype(np.uint16)
    path = tmp_path / f"x_{cfa}.ARW"   # LibRaw identifies DNG by content
    write_dng(str(path), mosaic, cfa=cfa, black=512, white=16383, as_shot_neutral=(0.5, 1.0, 0.8))
    with rawpy.imread(str(path)) as rp:
        letters = "".join(rp.color_desc.decode()[i] for i in rp.raw_pattern.reshape(-1))
        assert letters == cfa
        assert list(rp.black_level_per_channel) == [512] * 4
        assert rp.white_level == 16383
        wb = np.array(rp.camera_whitebalance[:3]) / rp.camera_whitebalance[1]
        np.testing.assert_allclose(wb, [2.0, 1.0, 1.25], rtol=1e-4)
        np.testing.assert_array_equal(rp.raw_image_visible, mosaic)
    info = read_bayer(str(path))
    assert info["pattern"] == cfa and info["black"] == 512 and info["white"] == 16383
    np.testing.assert_allclose(info["wb"], [2.0, 1.0, 1.25], rtol=1e-4)
    np.testing.assert_array_equal(info["raw"], mosaic)


def test_write_dng_xtrans_and_read_bayer_rejects_it(tmp_path):
    mosaic = np.full((36, 48), 3000, dtype=np.uint16)
    path = tmp_path / "x.RAF"
    write_dng(str(path), mosaic, cfa=XTRANS_PATTERN, black=1024, white=16383)
    rf = read_raw(str(path))
    np.testing.assert_array_equal(rf.cfa, XTRANS_PATTERN)
    assert float(rf.black.mean()) == 1024
    with pytest.raises(DataError, match="not a Bayer"):
        read_bayer(str(path))


def test_write_dng_rejects_bad_pattern(tmp_path):
    with pytest.raises(ValueError, match="Bayer"):
        write_dng(str(tmp_path / "x.dng"), np.zeros((32, 32), np.uint16), cfa="RGGG")


def test_set_layout_and_rawpy_metadata(sony_set):
    info = json.loads((sony_set / "synthetic_sid.json").read_text())
    assert info["splits"] == {"train": 3, "test": 3, "val": 3}
    names = sorted(os.listdir(sony_set / "Sony" / "short"))
    assert names[0].startswith("00001_00_") and names[-1].startswith("20001_")
    lines = (sony_set / "Sony_train_list.txt").read_text().split("\n")
    short_rel, long_rel, *_rest, r, g, b = lines[0].split()
    with rawpy.imread(str(sony_set / long_rel)) as rp:
        assert rp.raw_pattern.tolist() == [[0, 1], [3, 2]] and rp.color_desc == b"RGBG"
        assert list(rp.black_level_per_channel) == [512] * 4 and rp.white_level == 16383
        wb = np.array(rp.camera_whitebalance[:3]) / rp.camera_whitebalance[1]
    np.testing.assert_allclose(wb, [float(r), float(g), float(b)], rtol=1e-4)
    assert wb[0] > 1.2 and wb[2] > 1.1   # a daylight-like as-shot white balance, green = 1


def test_rendering_matches_the_scene(sony_set):
    """LibRaw's rendering of the long exposure is the source scene up to a global brightness."""
    cached = np.load(sony_set / "Sony" / "long_post_int" / "00001_00_10s.ARW.npy")
    assert cached.dtype == np.uint16 and cached.shape == (3, 192, 288)   # the authors' (3, H, W) layout
    rgb = cached.transpose(1, 2, 0).astype(np.float64) / 65535
    scene = make_scene(0, 192, 288, 0)
    lin_out = np.where(rgb < 0.081, rgb / 4.5, ((rgb + 0.099) / 1.099) ** (1 / 0.45))   # LibRaw's BT.709 curve
    lin_in = srgb_to_linear(scene)
    scale = (lin_out * lin_in).sum() / (lin_out ** 2).sum()
    err = np.mean((np.clip(lin_out * scale, 0, 1) ** (1 / 2.2) - lin_in ** (1 / 2.2)) ** 2)
    assert 10 * np.log10(1 / err) > 25
    # colours right: per-channel means in the same order as the scene's
    assert np.argsort(rgb.mean((0, 1))).tolist() == np.argsort(scene.mean((0, 1))).tolist()


def test_short_exposure_is_darker_by_the_ratio(sony_set):
    """Unbiased: the short exposure's mean (below-black values included) times the ratio."""
    long_dn = read_raw(str(sony_set / "Sony" / "long" / "00001_00_10s.ARW")).mosaic.astype(np.float64) - 512
    for name, ratio in (("00001_00_0.1s", 100), ("00001_01_0.04s", 250)):
        short = read_raw(str(sony_set / "Sony" / "short" / f"{name}.ARW")).mosaic.astype(np.float64) - 512
        assert short.mean() * ratio == pytest.approx(long_dn.mean(), rel=0.1)


def test_noise_statistics():
    rng = np.random.default_rng(0)
    k, signal = 2.0, np.full((400, 400), 50.0)
    noisy = sample_noise(signal, rng, fit=NOISE, k=k, jitter=False)
    read = np.exp(NOISE["read_slope"] * np.log(k) + NOISE["read_bias"])
    row = np.exp(NOISE["row_slope"] * np.log(k) + NOISE["row_bias"])
    assert noisy.mean() == pytest.approx(50, abs=0.5)
    assert noisy.var() == pytest.approx(k * 50 + read ** 2 + row ** 2 + 1 / 12, rel=0.1)
    row_means = (noisy - 50).mean(axis=1)
    assert row_means.var() == pytest.approx(row ** 2 + (k * 50 + read ** 2) / 400, rel=0.35)


def _digest(folder):
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(folder)):
        for f in sorted(files):
            h.update(f.encode())
            with open(os.path.join(root, f), "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


def test_deterministic_for_a_seed(tmp_path, sony_set):
    again = tmp_path / "again"
    other = tmp_path / "other"
    make_synthetic_sid(str(again), camera="Sony", seed=0, log=lambda *_: None, **SMALL)
    make_synthetic_sid(str(other), camera="Sony", seed=1, log=lambda *_: None, **SMALL)
    assert _digest(again) == _digest(sony_set)
    assert _digest(other) != _digest(sony_set)


def test_refuses_non_empty_and_tiny(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(DataError, match="not empty"):
        make_synthetic_sid(str(tmp_path / "full"), **SMALL)
    with pytest.raises(DataError, match="49"):
        make_synthetic_sid(str(tmp_path / "tiny"), scenes=3, height=64, width=64, progress=False)
    with pytest.raises(DataError, match="at least 3 scenes"):
        make_synthetic_sid(str(tmp_path / "few"), scenes=2, progress=False)
    assert not (tmp_path / "tiny").exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]


def test_command_line_scripts(tmp_path):
    """make_synthetic_sid.py then prepare_sid.py on its output (resume: everything skipped)."""
    import subprocess
    import sys
    repo = str(REPO)
    out = tmp_path / "cli"
    run = subprocess.run([sys.executable, os.path.join(repo, "scripts", "make_synthetic_sid.py"), "--out", str(out),
                          "--scenes", "3", "--height", "112", "--width", "128"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "synthetic Sony SID" in run.stdout and (out / "Sony_test_list.txt").is_file()
    run = subprocess.run([sys.executable, os.path.join(repo, "scripts", "prepare_sid.py"), "--data-path", str(out),
                          "--camera", "Sony", "--lists-dir", str(out), "--workers", "0"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "0 cached, 12 already cached (skipped), 0 failed" in run.stdout


@pytest.mark.parametrize("list_name", ["Sony_test_list.txt", "Sony_new_test_list.txt"])
def test_prepare_cli_with_a_single_list(sony_set, tmp_path, list_name):
    """``--lists-dir`` holding one ``<camera>_*_list.txt`` prepares just that list's files, in the
    authors' cache layout, and writes that list (with white balance) into the data folder."""
    import shutil
    import subprocess
    import sys
    repo = str(REPO)
    data = tmp_path / "data"
    shutil.copytree(sony_set / "Sony" / "short", data / "Sony" / "short")
    shutil.copytree(sony_set / "Sony" / "long", data / "Sony" / "long")
    lists = tmp_path / "lists"
    lists.mkdir()
    lines = [" ".join(line.split()[:4]) for line in (sony_set / "Sony_test_list.txt").read_text().splitlines()]
    (lists / list_name).write_text("\n".join(lines) + "\n")
    run = subprocess.run([sys.executable, os.path.join(repo, "scripts", "prepare_sid.py"), "--data-path", str(data),
                          "--camera", "Sony", "--lists-dir", str(lists), "--workers", "0"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    shorts = sorted(p.name for p in (data / "Sony" / "short_pack").iterdir())
    assert shorts == sorted(line.split()[0].split("/")[-1] + ".npy" for line in lines)
    written = (data / list_name).read_text().splitlines()
    assert len(written) == len(lines) and all(len(line.split()) == 7 for line in written)   # + R G B
    assert not (data / "Sony_train_list.txt").exists()


# ------------------------------------------------ where the synthetic set may be auto-created, and replaced

def _fuji_demo(path, *extra):
    return load_config(str(REPO / "configs" / "demo_fuji.yaml"),
                       [f"data.data_path={path}", "data.synthetic.scenes=3", "data.synthetic.height=150",
                        "data.synthetic.width=156", "data.train.patch_size=147", *extra])


def test_auto_create_refuses_a_missing_parent_and_a_misspelt_name(tmp_path):
    far = tmp_path / "elsewhere" / "datasets" / "synthetic_sid_fuji"
    with pytest.raises(DataError) as info:
        ensure_synthetic(_fuji_demo(far), **QUIET)
    assert f"{far} does not exist, nor does its folder {far.parent}" in str(info.value)
    assert not (tmp_path / "elsewhere").exists()
    typo = tmp_path / "synthetc_sid_fuji"
    with pytest.raises(DataError) as info:
        ensure_synthetic(_fuji_demo(typo), **QUIET)
    assert f"did you mean {tmp_path / 'synthetic_sid_fuji'}?" in str(info.value) and "make_synthetic_sid.py" in \
        str(info.value)
    assert not typo.exists()


def test_auto_create_replaces_a_set_made_for_the_other_camera(tmp_path):
    path = tmp_path / "synthetic_sid_fuji"
    make_synthetic_sid(str(path), camera="Sony", scenes=3, height=128, width=128, progress=False, **QUIET)
    messages = []
    assert ensure_synthetic(_fuji_demo(path), log=messages.append) is True
    assert json.loads((path / "synthetic_sid.json").read_text())["camera"] == "Fuji"
    assert any(f"{path} holds a synthetic Sony set" in m and "replacing it" in m for m in messages), messages
    assert ensure_synthetic(_fuji_demo(path), **QUIET) is False  # now the right camera: kept
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_make_synthetic_sid_script_overwrite(tmp_path, capsys):
    out = tmp_path / "set"
    args = ["--out", str(out), "--scenes", "3", "--height", "128", "--width", "128"]
    script = load_script("scripts/make_synthetic_sid.py")
    assert script.main(args) == 0
    assert script.main(args + ["--camera", "Fuji", "--height", "150", "--width", "156"]) == 2
    assert "add --overwrite to replace this synthetic set" in capsys.readouterr().err
    assert script.main(args + ["--camera", "Fuji", "--height", "150", "--width", "156", "--overwrite"]) == 0
    assert json.loads((out / "synthetic_sid.json").read_text())["camera"] == "Fuji"
    assert str(out.resolve()) in capsys.readouterr().out
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "photo.txt").write_text("x")
    assert script.main(["--out", str(mine), "--overwrite"]) == 2
    assert "remove it or choose another --out" in capsys.readouterr().err and (mine / "photo.txt").is_file()
