"""Simulated dark and flat frames of a camera of known noise (the calibrated-noise example,
docs/noise_calibration.md): the input ``scripts/calibrate_noise.py`` calibrates, and the test that
the calibration recovers the noise it was given.
"""
from __future__ import annotations

import os
from typing import Dict, Mapping, Sequence, Tuple

import numpy as np

from ..io.dng import write_dng
from ..noise.model import NOISE, fitted_sigma, sample_noise, to_digital
from .own_camera import OWN_CAMERA

#: ISO -> system gain K in :data:`NOISE`'s 14-bit DN of the own camera's simulated calibration
#: frames: four gains over the upper part of NOISE's K range (below 0.3 the 12-bit camera's read
#: noise is under one DN, too coarse to measure).
OWN_CALIBRATION_K = {400: 0.375, 800: 0.75, 1600: 1.5, 6400: 6.0}


def own_camera_noise_params(k14: float) -> Dict[str, float]:
    """The noise of :data:`OWN_CAMERA` at system gain ``k14`` (14-bit DN per electron), in the
    camera's own 12-bit DN as :func:`simulate_frame` takes it: the median of :data:`NOISE`'s model
    (no jitter), scaled by ``white / 16383`` as :func:`cans.synthetic.own_camera.write_own_camera_scene`
    scales it; the read noise is Tukey lambda 0.14 instead of Gaussian."""
    back = OWN_CAMERA["white"] / 16383.0
    return {"K": k14 * back, "read_sigma": float(fitted_sigma(NOISE, "read", k14)) * back,
            "row_sigma": float(fitted_sigma(NOISE, "row", k14)) * back, "read_lambda": 0.14, "black_bias": 0.0}


def make_own_camera_calibration(out: str, height: int = 64, width: int = 96, seed: int = 0):
    """Simulated dark and flat DNG frames of :data:`OWN_CAMERA` at the ISOs of
    :data:`OWN_CALIBRATION_K` (:func:`simulate_calibration_set`): returns the
    (dark, flat) folders under ``out``, the input of ``scripts/calibrate_noise.py``."""
    cam = OWN_CAMERA
    params = {iso: own_camera_noise_params(k) for iso, k in OWN_CALIBRATION_K.items()}
    return simulate_calibration_set(out, params, height=height, width=width, cfa=cam["cfa"], black=cam["black"],
                                    white=cam["white"], seed=seed, make=cam["make"], model=cam["model"],
                                    color_matrix=np.array(cam["matrix"]) / 10000.0)


def simulate_frame(rng: np.random.Generator, signal: np.ndarray, params: Mapping[str, float],
                   black, white: int) -> np.ndarray:
    """One frame as a camera stores it: uint16 (H, W) of the clean ``signal`` (DN above black,
    (H, W) float) under the noise model (:func:`cans.noise.model.sample_noise`) with ``params``
    (K, read_sigma, read_lambda, row_sigma, black_bias), plus the per-site ``black`` (a number or
    (2, 2)), rounded and clipped; no quantisation noise (the rounding is the real one)."""
    h, w = signal.shape
    x = sample_noise(signal, rng, k=float(params["K"]), read_sigma=float(params["read_sigma"]),
                     row_sigma=float(params["row_sigma"]), read_lambda=float(params["read_lambda"]), quantise=False)
    x = x + float(params.get("black_bias", 0.0))
    blk = np.asarray(black, dtype=np.float64)
    if blk.size == 4:
        blk = np.tile(blk.reshape(2, 2), (h // 2 + 1, w // 2 + 1))[:h, :w]
    return to_digital(x, blk, white)


def simulate_calibration_set(out: str, params: Mapping[int, Mapping[str, float]], height: int = 64,
                             width: int = 96, dark_frames: int = 8, flat_times: Sequence[float] = (
                                 0.01, 0.02, 0.04, 0.08, 0.16, 0.32), flat_frames: int = 2,
                             full_time: float = 0.25, cfa: str = "RGGB", black=(510, 512, 514, 512),
                             white: int = 16383, site_gain: Sequence[float] = (0.55, 1.0, 1.0, 0.7),
                             seed: int = 0, **dng) -> Tuple[str, str]:
    """Write simulated dark and flat DNG frames of a camera with known noise ``params`` (ISO ->
    K, read_sigma, read_lambda, row_sigma, black_bias) to ``out/dark`` and ``out/flat``; returns
    the two folders.

    Flats: a uniform field with a gentle illumination gradient (+-5 %) and a fixed 1 % per-pixel
    response pattern, brightness per CFA site ``site_gain`` times ``t / full_time`` of
    ``white - black`` (so times above ``full_time`` clip the brightest site). ``dng``: extra
    arguments of :func:`write_dng` (e.g. ``make``, ``color_matrix``)."""
    dark_dir, flat_dir = os.path.join(out, "dark"), os.path.join(out, "flat")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    field_ = 1.0 + 0.05 * (xx / width - 0.5) + 0.03 * (yy / height - 0.5)
    prnu = 1.0 + 0.01 * rng.standard_normal((height, width))
    gains = np.tile(np.asarray(site_gain, dtype=np.float64).reshape(2, 2), (height // 2 + 1, width // 2 + 1))
    base = field_ * prnu * gains[:height, :width] * (white - max(np.asarray(black).reshape(-1)))
    for iso, p in sorted(params.items()):
        for i in range(dark_frames):
            frame = simulate_frame(rng, np.zeros((height, width)), p, black, white)
            write_dng(os.path.join(dark_dir, f"dark_iso{iso}_{i:02d}.dng"), frame, cfa=cfa, black=black,
                      white=white, iso=iso, exposure_time=1 / 125, **dng)
        for t in flat_times:
            for i in range(flat_frames):
                frame = simulate_frame(rng, base * (t / full_time), p, black, white)
                write_dng(os.path.join(flat_dir, f"flat_iso{iso}_{t:g}s_{i:02d}.dng"), frame, cfa=cfa,
                          black=black, white=white, iso=iso, exposure_time=t, **dng)
    return dark_dir, flat_dir


__all__ = ["OWN_CALIBRATION_K", "own_camera_noise_params", "make_own_camera_calibration", "simulate_frame",
           "simulate_calibration_set"]
