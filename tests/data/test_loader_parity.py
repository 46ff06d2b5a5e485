"""Loader parity with the authors' SID loader on real DNG files (both reading modes, Sony and Fuji).

The reference samples (``reference/loader_parity``) hold what the authors' loader returned, in test
mode, for two list lines per camera: the full image, no flips, ``max_clip 1.0``, ``min_clip null``.
Ours must agree to float32 rounding, with the negative (below-black) input values kept.
"""
import shutil

import numpy as np
import pytest
import torch

from cans.data import FujiDictSet, SonyDictSet
from cans.data.prepare import prepare_sid

DATASETS = {"Sony": SonyDictSet, "Fuji": FujiDictSet}
TOL = 1e-6


@pytest.fixture(scope="module")
def parity_sets(reference_dir, tmp_path_factory):
    """Per camera: (folder with the DNGs and our caches, list file name, reference samples)."""
    out = {}
    for camera in DATASETS:
        src = reference_dir / "loader_parity" / camera
        dst = tmp_path_factory.mktemp("parity") / camera
        shutil.copytree(src / camera, dst / camera)
        shutil.copy(src / f"{camera}_fixture_list.txt", dst / f"{camera}_fixture_list.txt")
        # the lists carry the white balance already: prepare writes the caches and keeps the list
        prepare_sid(str(dst), camera, lists_dir=str(dst), workers=0, log=lambda *_: None, progress=False)
        samples = torch.load(src / f"{camera}_reference_samples.pt", map_location="cpu", weights_only=False)
        out[camera] = (str(dst), f"{camera}_fixture_list.txt", samples)
    return out


@pytest.mark.parametrize("camera", sorted(DATASETS))
@pytest.mark.parametrize("load_npy", [True, False], ids=["cache", "raw"])
def test_samples_match_the_authors_loader(parity_sets, camera, load_npy):
    folder, list_name, reference = parity_sets[camera]
    ds = DATASETS[camera](folder, list_name, "test", load_npy=load_npy, max_clip=1.0, min_clip=None,
                          log=lambda *_: None)
    assert len(ds) == len(reference) == 2
    for i, ref in enumerate(reference):
        ours = ds[i]
        assert ours["img_file"] == ref["img_file"] and ours["lbl_file"] == ref["lbl_file"]
        assert ours["ratio"] == pytest.approx(float(ref["ratio"]))
        for key in ("noisy_raw", "clean_raw", "clean_rgb"):
            a, b = ours[key], ref[key].float()
            assert a.shape == b.shape, (key, a.shape, b.shape)
            err = float((a - b).abs().max())
            assert err <= TOL, f"{camera} {key} sample {i}: max abs difference {err:.3g}"
        # the input keeps the values below the black level, as many as the reference has
        assert int((ours["noisy_raw"] < 0).sum()) == int((ref["noisy_raw"] < 0).sum()) > 0


def test_caches_are_in_the_authors_format(parity_sets):
    folder, _, _ = parity_sets["Sony"]
    short = np.load(f"{folder}/Sony/short_pack/10001_00_0.04s.ARW.npy")
    long_ = np.load(f"{folder}/Sony/long_pack/10001_00_10s.ARW.npy")
    rgb = np.load(f"{folder}/Sony/long_post_int/10001_00_10s.ARW.npy")
    assert short.dtype == long_.dtype == rgb.dtype == np.uint16
    assert short.shape == long_.shape == (4, 96, 144) and rgb.shape == (3, 192, 288)
    folder, _, _ = parity_sets["Fuji"]
    assert np.load(f"{folder}/Fuji/short_pack/10001_00_0.04s.RAF.npy").shape == (9, 64, 96)


def test_min_clip_is_applied_only_when_configured(parity_sets):
    folder, list_name, reference = parity_sets["Sony"]
    clipped = SonyDictSet(folder, list_name, "test", max_clip=1.0, min_clip=0.0, log=lambda *_: None)[0]
    assert float(clipped["noisy_raw"].min()) == 0.0
    expected = reference[0]["noisy_raw"].clamp(min=0.0)
    assert float((clipped["noisy_raw"] - expected).abs().max()) <= TOL
