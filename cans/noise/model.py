"""The ELD noise model (Wei et al., CVPR 2020) and its one sampler.

A clean signal in digital numbers (DN) above black becomes ``K * Poisson(signal / K)`` (shot noise
through the system gain K) plus read noise (Gaussian, or Tukey lambda of shape ``read_lambda``),
row noise (one value per mosaic row) and uniform quantisation noise in [-0.5, 0.5]. A fit gives
the sigmas against K as ``log(sigma) = slope * log(K) + bias + N(0, jitter)`` and the range of K
(log-uniform). :data:`NOISE` is ELD's Sony A7S2 fit in 14-bit DN; calibrated profiles
(:mod:`cans.noise.profile`) hold a fit of the same keys for another camera.
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

#: ELD's Sony A7S2 fit, DN of the 14-bit raw above black (the built-in profile ``A7S2``)
NOISE = dict(k_min=0.0939, k_max=6.0106,
             read_slope=0.5407, read_bias=1.2182, read_jitter=0.2675,
             row_slope=0.5275, row_bias=-0.5917, row_jitter=0.2943)

#: how rows lie in a signal: ``"mosaic"`` (H, W), one row noise value per row; ``"packed"``
#: (4, h, w) Bayer channels R, G, B, G (0, 1 on even mosaic rows, 2, 3 on odd ones), two rows a packed row
ROW_LAYOUTS = ("mosaic", "packed")


def tukey_noise(rng: np.random.Generator, lam: float, sigma: float, shape) -> np.ndarray:
    """Tukey-lambda samples of shape ``lam`` scaled to standard deviation ``sigma``."""
    from scipy import stats

    u = rng.uniform(1e-12, 1.0 - 1e-12, shape)
    q = np.log(u / (1.0 - u)) if abs(lam) < 1e-9 else (u ** lam - (1.0 - u) ** lam) / lam
    return q * (sigma / float(stats.tukeylambda.std(lam)))


def draw_gain(fit: Mapping[str, float], rng) -> float:
    """A system gain K drawn log-uniformly from the fit's ``[k_min, k_max]``."""
    return float(np.exp(rng.uniform(np.log(fit["k_min"]), np.log(fit["k_max"]))))


def fitted_sigma(fit: Mapping[str, float], name: str, k: float, offset: float = 0.0) -> float:
    """``exp(slope * log(k) + bias + offset)`` of the fit's ``name`` (``"read"`` or ``"row"``): the
    sigma at gain ``k`` in DN; ``offset`` is a draw of N(0, jitter), 0 for the fit's median."""
    return np.exp(fit[f"{name}_slope"] * np.log(k) + fit[f"{name}_bias"] + offset)


def sample_noise(signal: np.ndarray, rng, *, fit: Optional[Mapping[str, float]] = None, k: Optional[float] = None,
                 read_sigma: Optional[float] = None, row_sigma: Optional[float] = None,
                 read_lambda: Optional[float] = None, jitter: bool = True, rows: str = "mosaic",
                 quantise: bool = True) -> np.ndarray:
    """The noisy version (float64, same shape) of ``signal`` (DN above black, negatives taken as 0).

    ``k``, ``read_sigma``, ``row_sigma``: given, or drawn from ``fit`` (K log-uniform, the sigmas at K
    with an N(0, jitter) offset each unless ``jitter=False``). ``read_lambda``: Tukey-lambda read
    noise of that shape, None for Gaussian. ``rows``: one of :data:`ROW_LAYOUTS`. ``quantise``: add
    the uniform rounding noise. ``rng``: a ``numpy.random.Generator`` or the ``numpy.random`` module.
    The draws come in a fixed order (K, shot, the two jitters, read, row, quantisation), so a seed
    gives the same frame.
    """
    if rows not in ROW_LAYOUTS:
        raise ValueError(f"rows must be one of {ROW_LAYOUTS}, got {rows!r}")
    if k is None:
        k = draw_gain(fit, rng)
    noisy = k * rng.poisson(np.maximum(signal, 0.0) / k)
    if read_sigma is None:
        read_sigma = fitted_sigma(fit, "read", k, rng.normal(0, fit["read_jitter"]) if jitter else 0.0)
    if row_sigma is None:
        row_sigma = fitted_sigma(fit, "row", k, rng.normal(0, fit["row_jitter"]) if jitter else 0.0)
    if read_lambda is None:
        noisy = noisy + rng.normal(0.0, read_sigma, signal.shape)
    else:
        noisy = noisy + tukey_noise(rng, read_lambda, read_sigma, signal.shape)
    if rows == "mosaic":
        noisy = noisy + rng.normal(0.0, row_sigma, (signal.shape[0], 1))
    else:
        c, h, _ = signal.shape
        noisy = noisy + rng.normal(0.0, row_sigma, (2, h, 1))[np.arange(c) // 2]
    if quantise:
        noisy = noisy + rng.uniform(-0.5, 0.5, signal.shape)
    return noisy


def to_digital(noisy: np.ndarray, black, white: float) -> np.ndarray:
    """Noisy DN above black -> stored uint16 values (rounded, + black, clipped to [0, white]);
    ``black`` a number or an array that broadcasts against ``noisy`` (a black level per site)."""
    return np.clip(np.round(noisy + black), 0, white).astype(np.uint16)


__all__ = ["NOISE", "ROW_LAYOUTS", "tukey_noise", "draw_gain", "fitted_sigma", "sample_noise", "to_digital"]
