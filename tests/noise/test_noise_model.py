"""The one sampler of the noise model (cans/noise/model.py): row layouts, draws, the digital store."""
import numpy as np
import pytest

from cans.noise.model import NOISE, draw_gain, fitted_sigma, sample_noise, to_digital, tukey_noise


def test_packed_rows_share_the_row_noise_of_their_mosaic_row():
    """Packed RGGB (4, h, w): channels 0, 1 lie on even mosaic rows, 2, 3 on odd ones, so each pair
    gets the same row value and the two pairs different ones."""
    rng = np.random.default_rng(0)
    x = sample_noise(np.zeros((4, 6, 8)), rng, k=1.0, read_sigma=1e-9, row_sigma=5.0, rows="packed",
                     quantise=False)
    assert np.allclose(x[0], x[1]) and np.allclose(x[2], x[3]) and not np.allclose(x[0], x[2])
    assert np.allclose(x[0], x[0][:, :1])  # constant along each row
    mosaic = sample_noise(np.zeros((6, 8)), rng, k=1.0, read_sigma=1e-9, row_sigma=5.0, quantise=False)
    assert np.allclose(mosaic, mosaic[:, :1]) and not np.allclose(mosaic[0], mosaic[1])
    with pytest.raises(ValueError, match="rows must be one of"):
        sample_noise(np.zeros((4, 4)), rng, k=1.0, read_sigma=1.0, row_sigma=1.0, rows="columns")


def test_given_levels_draw_nothing_and_a_seed_repeats():
    """Without jitter the fitted sigmas are the given ones: the two calls draw the same numbers."""
    signal = np.full((16, 16), 40.0)
    k = 2.0
    a = sample_noise(signal, np.random.default_rng(3), fit=NOISE, k=k, jitter=False)
    b = sample_noise(signal, np.random.default_rng(3), k=k, read_sigma=fitted_sigma(NOISE, "read", k),
                     row_sigma=fitted_sigma(NOISE, "row", k))
    assert np.array_equal(a, b)
    c = sample_noise(signal, np.random.default_rng(4), fit=NOISE)
    assert np.array_equal(c, sample_noise(signal, np.random.default_rng(4), fit=NOISE)) and not np.array_equal(a, c)


def test_gain_range_statistics_and_storage():
    rng = np.random.default_rng(1)
    ks = [draw_gain(NOISE, rng) for _ in range(500)]
    assert NOISE["k_min"] <= min(ks) and max(ks) <= NOISE["k_max"]
    assert np.median(np.log(ks)) == pytest.approx(np.log(NOISE["k_min"] * NOISE["k_max"]) / 2, abs=0.3)
    t = tukey_noise(rng, 0.14, 3.0, (200_000,))
    assert t.std() == pytest.approx(3.0, rel=0.02)
    x = sample_noise(np.full((300, 300), 20.0), rng, k=0.5, read_sigma=2.0, row_sigma=0.0, read_lambda=-0.1)
    assert x.var() == pytest.approx(0.5 * 20 + 4.0 + 1 / 12, rel=0.05)
    assert to_digital(np.array([-600.0, 0.4, 20000.0]), 512, 16383).tolist() == [0, 512, 16383]
