"""scripts/calibrate_noise.py on simulated dark and flat DNG frames of known noise (cans/noise/calibration.py).

The frames are written by ``cans.synthetic.calibration_set.simulate_calibration_set``: shot noise through K,
Tukey-lambda read noise, Gaussian row noise, a black-level bias, rounding; flats with an illumination
gradient, a fixed 1 % pixel response pattern and one exposure time that clips the green sites.
"""
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import load_script

from cans.cfa import XTRANS_PATTERN
from cans.errors import DataError
from cans.io.dng import write_dng
from cans.noise.plots import fit_figure, signed
from cans.noise.profile import load_profile, write_profile
from cans.synthetic.calibration_set import simulate_calibration_set

REPO = Path(__file__).resolve().parents[2]

#: the camera to recover: ISO -> noise parameters (DN above black)
TRUTH = {800: dict(K=0.6, read_sigma=4.0, row_sigma=1.0, read_lambda=0.05, black_bias=0.4),
         3200: dict(K=2.4, read_sigma=8.5, row_sigma=2.2, read_lambda=-0.05, black_bias=-0.3),
         12800: dict(K=9.6, read_sigma=19.0, row_sigma=5.0, read_lambda=-0.12, black_bias=1.2)}
#: relative tolerances (lambda: absolute)
TOLERANCE = {"K": 0.03, "read_sigma": 0.05, "row_sigma": 0.10, "read_lambda": 0.05}


def _script():
    return load_script("scripts/calibrate_noise.py")


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    root = tmp_path_factory.mktemp("calib")
    dark, flat = simulate_calibration_set(str(root), TRUTH, height=96, width=64, dark_frames=16, flat_frames=4,
                                          seed=3)
    out, plots = root / "profile.yaml", root / "plots"
    rc = _script().main(["--dark", dark, "--flat", flat, "--out", str(out), "--plots", str(plots)])
    assert rc == 0
    return load_profile(str(out)), out, plots


def test_calibration_recovers_known_noise(calibrated, capsys):
    profile, _, _ = calibrated
    assert sorted(profile["per_iso"]) == sorted(TRUTH)
    rows, failures = [], []
    for iso, truth in TRUTH.items():
        got = profile["per_iso"][iso]
        for key, tol in TOLERANCE.items():
            err = got[key] - truth[key] if key == "read_lambda" else got[key] / truth[key] - 1.0
            rows.append(f"| {iso} | {key} | {truth[key]:g} | {got[key]:.4f} | "
                        + (f"{err:+.4f} |" if key == "read_lambda" else f"{100 * err:+.2f} % |"))
            if abs(err) > tol:
                failures.append(f"ISO {iso} {key}: true {truth[key]}, recovered {got[key]:.4f}")
        assert abs(got["black_bias"] - truth["black_bias"]) < 0.3
    with capsys.disabled():
        print("\n| ISO | quantity | true | recovered | error |\n|---|---|---|---|---|\n" + "\n".join(rows))
    assert not failures, failures


def test_fit_and_profile_format(calibrated):
    profile, path, _ = calibrated
    fit = profile["fit"]
    ks = [TRUTH[i]["K"] for i in sorted(TRUTH)]
    assert fit["k_min"] == pytest.approx(min(ks), rel=0.03) and fit["k_max"] == pytest.approx(max(ks), rel=0.03)
    true_slope = np.polyfit(np.log(ks), np.log([TRUTH[i]["read_sigma"] for i in sorted(TRUTH)]), 1)[0]
    assert fit["read_slope"] == pytest.approx(true_slope, abs=0.05)
    text = path.read_text()
    assert "\n  800:\n" in text  # ISO keys are integers in the YAML, not strings
    # every flat level of ISO 800 at 0.32 s clips the green sites: those points are left out
    assert profile["per_iso"][800]["clipped_points"] > 0


def test_plots_are_written(calibrated):
    _, _, plots = calibrated
    names = sorted(os.listdir(plots))
    assert names == ["fit_read.png", "fit_row.png", "ptc_iso12800.png", "ptc_iso3200.png", "ptc_iso800.png"]
    Image = pytest.importorskip("PIL.Image")  # Pillow comes with scikit-image
    with Image.open(plots / "ptc_iso800.png") as im:
        px = np.asarray(im.convert("RGB"))
    assert px.shape == (480, 640, 3)
    assert (px < 50).all(axis=2).sum() > 2000        # text, axes and the fitted line (black)
    assert ((px[..., 1] > 120) & (px[..., 0] < 80) & (px[..., 2] < 80)).sum() > 20  # green points


def test_plot_labels_units_and_legend(calibrated):
    """The fit plot names its axes with units and writes the fit as an equation, signs and all."""
    profile = calibrated[0]
    fit = dict(profile["fit"], read_slope=0.5407, read_bias=-1.26384, read_jitter=0.0123)
    ax = fit_figure(profile["per_iso"], fit, "read").axes[0]
    assert ax.get_xlabel() == "log K (K in DN/e⁻)" and ax.get_ylabel() == "log σ of the read noise (σ in DN)"
    assert ax.get_title() == "Read noise against system gain"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["measured (one point per ISO)", "fit: log σ = 0.54·log K − 1.26  (residual σ 0.012)"]
    assert len(ax.get_xticks()) > 2 and len(ax.get_yticks()) > 2
    assert signed(1.2638) == "+ 1.26" and signed(-0.5, 3) == "− 0.500"


# ---------------------------------------------------------------------------------------
# bad input: one line each
# ---------------------------------------------------------------------------------------

SMALL = dict(height=32, width=32, dark_frames=2, flat_times=(0.02, 0.08), flat_frames=2)
ONE = {800: TRUTH[800]}
TWO = {800: TRUTH[800], 3200: TRUTH[3200]}


def _other_dng(path, **kw):
    args = dict(cfa="RGGB", black=(510, 512, 514, 512), white=16383, iso=800, exposure_time=0.01)
    args.update(kw)
    shape = args.pop("shape", (32, 32))
    write_dng(str(path), np.full(shape, 600, np.uint16), **args)


def _case(name, root):
    if name == "too few dark frames":
        return simulate_calibration_set(root, TWO, **{**SMALL, "dark_frames": 1})
    if name == "one flat frame per level":
        return simulate_calibration_set(root, TWO, **{**SMALL, "flat_frames": 1})
    if name == "clipped flats":
        return simulate_calibration_set(root, TWO, **{**SMALL, "flat_times": (0.02, 0.5, 1.0)})
    if name == "single ISO":
        return simulate_calibration_set(root, ONE, **SMALL)
    dark, flat = simulate_calibration_set(root, TWO, **SMALL)
    odd = os.path.join(dark, "odd.dng")
    if name == "mixed cameras":
        _other_dng(odd, color_matrix=np.eye(3))
    elif name == "another white level":
        _other_dng(odd, white=4095)
    elif name == "no RAW files":
        for n in os.listdir(flat):
            os.rename(os.path.join(flat, n), os.path.join(flat, n + ".txt"))
    elif name == "mixed sizes":
        _other_dng(odd, shape=(32, 48))
    elif name == "missing ISO":
        _other_dng(odd, iso=None)
    elif name == "X-Trans":
        _other_dng(odd, cfa=XTRANS_PATTERN, black=1024, shape=(36, 36))
    elif name == "flat ISO without darks":
        _other_dng(os.path.join(flat, "odd_a.dng"), iso=100)
        _other_dng(os.path.join(flat, "odd_b.dng"), iso=100)
    return dark, flat


BAD = {
    "too few dark frames": "ISO 800 has 1 dark frame(s); expected at least 2",
    "one flat frame per level": "the only flat frame of ISO 800 at 0.02 s",
    "clipped flats": "only 1 brightness level(s) left unclipped",
    "single ISO": "need at least two ISOs",
    "mixed cameras": "(the colour matrix differs)",
    "another white level": "(white level 4095.0 vs 16383.0 differs)",
    "no RAW files": "--flat: no RAW files in",
    "mixed sizes": "32x48 pixels, but",
    "missing ISO": "no ISO in the file's metadata",
    "X-Trans": "X-Trans is not supported",
    "flat ISO without darks": "ISO 100 has flat frames but no dark frames",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_is_one_line(name, tmp_path, capsys):
    dark, flat = _case(name, str(tmp_path))
    rc = _script().main(["--dark", dark, "--flat", flat, "--out", str(tmp_path / "p.yaml")])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert BAD[name] in err, err
    assert not (tmp_path / "p.yaml").exists()


@pytest.mark.parametrize("edit, message", [
    (lambda p: p.pop("fit"), "fit must be a mapping"),
    (lambda p: p["per_iso"][800].pop("K"), "per_iso.800.K must be a number"),
    (lambda p: p["per_iso"].update({"high": p["per_iso"][800]}), "per_iso key 'high' is not an ISO"),
    (lambda p: p["fit"].update(k_min=-1.0), "fit.k_min (-1.0) and fit.k_max"),
])
def test_profile_validation(calibrated, tmp_path, edit, message):
    profile = {**calibrated[0], "per_iso": {k: dict(v) for k, v in calibrated[0]["per_iso"].items()},
               "fit": dict(calibrated[0]["fit"])}
    edit(profile)
    path = tmp_path / "bad.yaml"
    with pytest.raises(DataError) as info:
        write_profile(profile, str(path))
    assert message in str(info.value) and str(path) in str(info.value)
    assert not path.exists()
    path.write_text("per_iso: [1, 2]\n")
    with pytest.raises(DataError, match="per_iso must map each ISO"):
        load_profile(str(path))
