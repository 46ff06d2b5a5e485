"""CleanFrameDataset: the short exposure synthesised from clean frames and a noise profile."""
import os

import numpy as np
import pytest
import torch

from cans.config import ConfigError, load_config
from cans.data import DATASETS, DataError, build_dataset
from cans.data.cleanframes import CleanFrameDataset
from cans.data.rawpair import RawPairDataset
from cans.io.dng import write_dng
from cans.synthetic import OWN_CAMERA, make_own_camera_set

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "configs", "example_calibrated_noise.yaml")
QUIET = dict(log=lambda m: None)
WHITE, BLACK = OWN_CAMERA["white"], 256
#: a noise model of known numbers: K fixed at 2 DN/e-, read sigma e^0 = 1 DN, row sigma e^-3, no jitter
FIXED = {"fit": {"k_min": 2.0, "k_max": 2.0, "read_slope": 0.0, "read_bias": 0.0, "read_jitter": 0.0,
                 "row_slope": 0.0, "row_bias": -3.0, "row_jitter": 0.0}}


@pytest.fixture(scope="module")
def own_set(tmp_path_factory):
    """A tiny own-camera set (3 scenes, 64x96 GRBG DNG, prepared): pairs and their clean long files."""
    out = str(tmp_path_factory.mktemp("clean") / "own")
    make_own_camera_set(out, scenes=3, height=64, width=96, progress=False, min_packed=16, **QUIET)
    return out


def _flat_list(folder, levels):
    """Clean flat GRBG frames at ``levels`` DN above black (no noise), one per line of clean.txt."""
    names = []
    for i, level in enumerate(levels):
        name = f"flat_{i}.dng"
        write_dng(os.path.join(folder, name), np.full((128, 192), BLACK + level, dtype=np.uint16), cfa="GRBG",
                  black=BLACK, white=WHITE, exposure_time=1.0, iso=100)
        names.append(name)
    with open(os.path.join(folder, "clean.txt"), "w") as fh:
        fh.write("\n".join(names) + "\n")
    return "clean.txt"


def test_registered_with_the_facts_of_a_bayer_own_camera():
    cls = DATASETS.get("CleanFrameDataset")
    assert cls is CleanFrameDataset and issubclass(cls, RawPairDataset)
    assert (cls.packed_channels, cls.block_size, cls.own_camera, cls.synthetic, cls.paper_camera) == \
        (4, 2, True, "bayer", None)
    assert os.path.isfile(os.path.join(ROOT, cls.base_config))


def test_flat_frame_noise_follows_the_profile(tmp_path):
    """On a flat clean frame: mean L / ratio, variance K * mean + read^2 + quantisation (slope K)."""
    levels = [0, 500, 3500]
    lst = _flat_list(str(tmp_path), levels)
    ds = CleanFrameDataset(str(tmp_path), lst, "train", noise_profile=FIXED, noise_ratios=[10], load_npy=False,
                           max_clip=None, h_flip=False, v_flip=False, **QUIET)
    np.random.seed(0)
    stats = []
    for i, level in enumerate(levels):
        s = ds[i]
        assert s["ratio"] == 10.0 and s["noisy_raw"].shape == (4, 64, 95)   # GRBG: one column dropped
        dn = s["noisy_raw"].double().numpy() * (WHITE - BLACK) / 10.0       # back to DN of the short exposure
        stats.append((dn.mean(), dn.var()))
        np.testing.assert_allclose(s["clean_raw"][1].numpy(), level / (WHITE - BLACK), rtol=1e-6)
    (m0, v0), (m1, v1), (m2, v2) = stats
    assert abs(m0) < 0.05 and m1 == pytest.approx(50, rel=0.01) and m2 == pytest.approx(350, rel=0.01)
    assert v0 == pytest.approx(1.0 + np.exp(-6) + 2 / 12, rel=0.1)      # read^2 + row^2 + quantisation + rounding
    assert (v2 - v1) / (m2 - m1) == pytest.approx(2.0, rel=0.05)        # K


def test_train_samples_draw_ratios_from_the_set_and_reproduce_from_the_seed(own_set):
    ds = CleanFrameDataset(own_set, "train_list.txt", "train", noise_profile="A7S2", noise_ratios=[100, 300],
                           patch_size=32, **QUIET)
    ratios = set()
    for seed in range(6):
        np.random.seed(seed)
        torch.manual_seed(seed)
        s = ds[seed % len(ds)]
        ratios.add(s["ratio"])
        assert set(s) >= {"noisy_raw", "clean_raw", "clean_rgb", "ratio", "input_exposure", "gt_exposure"}
        assert s["noisy_raw"].shape == (4, 16, 16) and s["clean_rgb"].shape == (3, 32, 32)
        assert s["input_exposure"] == pytest.approx(s["gt_exposure"] / s["ratio"])
    assert ratios == {100.0, 300.0}
    again = []
    for _ in range(2):
        np.random.seed(7)
        torch.manual_seed(7)
        again.append(ds[1])
    assert torch.equal(again[0]["noisy_raw"], again[1]["noisy_raw"])
    # the targets are RawPairDataset's, exactly; the input is not the real short file
    torch.manual_seed(7)
    real = RawPairDataset(own_set, "train_list.txt", "train", patch_size=32, ratio_mode="exposure_iso", **QUIET)[1]
    assert torch.equal(again[0]["clean_raw"], real["clean_raw"])
    assert torch.equal(again[0]["clean_rgb"], real["clean_rgb"])
    assert not torch.equal(again[0]["noisy_raw"], real["noisy_raw"])


def test_valid_and_fraction_zero_read_the_real_pairs(own_set):
    for split, fraction in (("valid", 1.0), ("train", 0.0)):
        kwargs = dict(patch_size=32, ratio_mode="exposure_iso", **QUIET)
        ds = CleanFrameDataset(own_set, "val_list.txt", split, noise_profile="A7S2", noise_fraction=fraction,
                               **kwargs)
        torch.manual_seed(3)
        np.random.seed(3)
        s = ds[0]
        torch.manual_seed(3)
        real = RawPairDataset(own_set, "val_list.txt", split, **kwargs)[0]
        assert torch.equal(s["noisy_raw"], real["noisy_raw"]) and s["ratio"] == real["ratio"]


def _cfg(own_set, *sets):
    return load_config(EXAMPLE, [f"data.data_path={own_set}", "data.synthetic.auto_create=false", *sets])


def test_config_builds_it_and_bad_profiles_are_one_line(own_set, tmp_path):
    ds = build_dataset(_cfg(own_set, "data.noise.profile=A7S2", "data.noise.ratios=[50]"), "train", **QUIET)
    assert isinstance(ds, CleanFrameDataset) and ds.noise_ratios == [50.0]
    for value, expected in (("A7S3", "data.noise.profile: unknown built-in profile 'A7S3'; expected one of A7S2"),
                            (str(tmp_path / "none.yaml"), "data.noise.profile: noise profile "
                                                          f"{tmp_path / 'none.yaml'} not found")):
        with pytest.raises(DataError) as exc:
            build_dataset(_cfg(own_set, f"data.noise.profile={value}"), "train", **QUIET)
        assert str(exc.value).startswith(expected) and "\n" not in str(exc.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text("per_iso: {800: {K: 1.0}}\n")
    with pytest.raises(DataError, match=r"^data.noise.profile: .*bad.yaml: per_iso.800.read_sigma must be a number"):
        build_dataset(_cfg(own_set, f"data.noise.profile={bad}"), "train", **QUIET)
    with pytest.raises(ConfigError, match="data.noise.fraction"):
        _cfg(own_set, "data.noise.fraction=1.5")
    with pytest.raises(ConfigError, match="data.noise.ratios"):
        _cfg(own_set, "data.noise.ratios=[0.5]")


def test_a_pair_line_in_a_clean_list_names_the_line(tmp_path):
    lst = _flat_list(str(tmp_path), [1000])
    with open(tmp_path / lst, "a") as fh:
        fh.write("flat_0.dng flat_0.dng\n")
    with pytest.raises(DataError, match=r"clean.txt:2: a pair line in a list of clean files"):
        CleanFrameDataset(str(tmp_path), lst, "train", noise_profile="A7S2", load_npy=False, **QUIET)


def test_a_clean_list_is_prepared_and_both_reading_modes_give_the_same_samples(tmp_path):
    """scripts/prepare_pairs.py caches a list of clean files too; the cached samples are the RAW ones."""
    from cans.data.rawpair import prepare_pairs
    levels = [0, 500, 3500]
    lst = _flat_list(str(tmp_path), levels)
    summary = prepare_pairs(str(tmp_path), [lst], block_size=2, progress=False, **QUIET)
    assert not summary["failed"] and not summary["bad_pairs"]
    kw = dict(noise_profile=FIXED, noise_ratios=[10, 100], max_clip=None, h_flip=False, v_flip=False, **QUIET)
    samples = {}
    for load_npy in (False, True):
        ds = CleanFrameDataset(str(tmp_path), lst, "train", load_npy=load_npy, **kw)
        np.random.seed(3)
        samples[load_npy] = [ds[i] for i in range(len(levels))]
    for a, b in zip(samples[False], samples[True]):
        assert a["ratio"] == b["ratio"]
        for key in ("noisy_raw", "clean_raw", "clean_rgb"):
            assert torch.equal(a[key], b[key]), key
