"""Noise calibration of a Bayer camera from dark and flat frames (ELD, Wei et al. CVPR 2020).

What ``scripts/calibrate_noise.py`` runs; the noise model, the shooting guide and the profile format
are in docs/noise_calibration.md. All values are digital numbers (DN) of the camera's own raw scale,
after the metadata black level is subtracted. Per ISO, :func:`dark_statistics` gives black bias, row
and read noise (Tukey-lambda shape and scale) from dark frames and :func:`photon_transfer` the
system gain K from pairs of flats; :func:`fit_across_isos` fits ``log(sigma) = slope * log(K) +
bias`` with the keys of :data:`cans.noise.model.NOISE`, so a profile's ``fit`` is a noise model of
the same form as the built-in one. The plots: :mod:`cans.noise.plots`.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import DataError
from ..io.raw import _raw_from_handle, open_raw, raw_files_in, shot_metadata
from .profile import PROFILE_VERSION

MIN_DARK_FRAMES = 2        # per ISO: the row means' fixed pattern needs two frames to be told from noise
MIN_FLAT_LEVELS = 2        # per ISO: a line needs two brightness levels (unclipped)
CLIP_FRACTION = 1e-4       # a site of a flat pair is clipped when more of its pixels than this reach white
LAMBDA_SAMPLES = 100_000   # dark residuals used for the Tukey-lambda shape (a random subset)
QUANT_VAR = 1.0 / 12.0     # variance of rounding to whole DN


# ---------------------------------------------------------------------------------------
# Reading and grouping
# ---------------------------------------------------------------------------------------

@dataclass
class FrameInfo:
    """Metadata of one calibration frame: shape (H, W), CFA letters ('RGGB'), per-site black
    (2, 2), white level, ISO, exposure time in s (0 = unknown) and a camera key (colour matrix,
    CFA, white) that tells cameras apart."""
    path: str
    shape: Tuple[int, int]
    pattern: str
    black: np.ndarray
    white: float
    iso: int
    exposure: float
    camera: str


def read_frame(path: str, pixels: bool = True) -> Tuple[FrameInfo, Optional[np.ndarray]]:
    """(metadata, (H, W) float64 mosaic minus the per-site black of the metadata, or None).

    DataError naming the file for an unreadable file, a non-Bayer sensor (X-Trans, ...) or no ISO."""
    with open_raw(path) as rp:
        rf = _raw_from_handle(rp, path)
        exposure, iso, cm = shot_metadata(rp)
    matrix = np.round(cm, 4).tolist()
    if rf.cfa.shape != (2, 2) or sorted(rf.cfa.reshape(-1).tolist()) != [0, 1, 1, 2]:
        raise DataError(f"{path}: a {rf.cfa.shape[0]}x{rf.cfa.shape[1]} colour filter ('{rf.pattern[:8]}'); "
                        f"noise calibration reads Bayer files only (2x2 cell, RGGB/GRBG/GBRG/BGGR), "
                        f"X-Trans is not supported")
    if not (math.isfinite(iso) and iso > 0):
        raise DataError(f"{path}: no ISO in the file's metadata; calibration groups frames by ISO "
                        f"(use the camera's original RAW files, not converted copies)")
    if rf.mosaic.shape[0] < 8 or rf.mosaic.shape[1] < 8:
        raise DataError(f"{path}: image of {rf.mosaic.shape[0]}x{rf.mosaic.shape[1]} is too small")
    info = FrameInfo(path=path, shape=tuple(rf.mosaic.shape), pattern=rf.pattern,
                     black=rf.black.astype(np.float64), white=float(rf.white), iso=int(round(iso)),
                     exposure=exposure if math.isfinite(exposure) and exposure > 0 else 0.0,
                     camera=json.dumps({"matrix": matrix, "cfa": rf.pattern, "white": rf.white}))
    mosaic = None
    if pixels:
        h, w = rf.mosaic.shape
        mosaic = rf.mosaic.astype(np.float64) - np.tile(info.black, (h // 2 + 1, w // 2 + 1))[:h, :w]
    return info, mosaic


def list_raw_files(folder: str, what: str) -> List[str]:
    """The RAW files (by extension, hidden files left out) directly in ``folder``, sorted by name."""

    if not os.path.isdir(folder):
        raise DataError(f"{what}: {folder} is not a folder")
    paths = raw_files_in(folder)
    if not paths:
        raise DataError(f"{what}: no RAW files in {folder} (expected extensions such as .dng, .arw, .nef, .cr2)")
    return paths


def scan(paths: Sequence[str]) -> List[FrameInfo]:
    """Metadata of every file; DataError when they come from several cameras or have several sizes."""
    infos = [read_frame(p, pixels=False)[0] for p in paths]
    first = infos[0]
    for info in infos[1:]:
        if info.camera != first.camera:
            a, b = json.loads(info.camera), json.loads(first.camera)
            what = [f"{name} {a[key]!r} vs {b[key]!r}" if key != "matrix" else "the colour matrix"
                    for key, name in (("cfa", "CFA"), ("white", "white level"), ("matrix", "")) if a[key] != b[key]]
            raise DataError(f"{info.path}: another camera than {first.path} ({' and '.join(what)} "
                            f"{'differ' if len(what) > 1 else 'differs'}); calibrate one camera at a time")
        if info.shape != first.shape:
            raise DataError(f"{info.path}: {info.shape[0]}x{info.shape[1]} pixels, but {first.path} has "
                            f"{first.shape[0]}x{first.shape[1]}; all frames must have one size (same camera, "
                            f"same RAW size setting)")
    return infos


def group_by_iso(infos: Sequence[FrameInfo]) -> Dict[int, List[FrameInfo]]:
    """ISO -> its frames (sorted by path), ISOs ascending."""
    groups: Dict[int, List[FrameInfo]] = {}
    for info in infos:
        groups.setdefault(info.iso, []).append(info)
    return {iso: sorted(groups[iso], key=lambda i: i.path) for iso in sorted(groups)}


def _site_view(mosaic: np.ndarray, site: int) -> np.ndarray:
    """Pixels of cell site ``site`` (0..3, row by row) of an (H, W) mosaic (even-cropped)."""
    return mosaic[site // 2::2, site % 2::2]


# ---------------------------------------------------------------------------------------
# Per-ISO estimates
# ---------------------------------------------------------------------------------------

@dataclass
class DarkStats:
    """What the dark frames of one ISO give (DN): ``black_bias`` per site (2x2 row by row) and
    mean, ``read_sigma``, ``row_sigma``, ``read_lambda`` and ``read_scale`` (Tukey-lambda)."""
    black_bias_sites: List[float]
    black_bias: float
    read_sigma: float
    row_sigma: float
    read_lambda: float
    read_scale: float
    frames: int
    residuals: np.ndarray = field(repr=False, default=None)


def tukey_fit(samples: np.ndarray) -> Tuple[float, float]:
    """(shape lambda, scale) of a Tukey-lambda fitted to zero-mean ``samples``: the shape maximises the
    probability-plot correlation coefficient, the scale is the probability plot's slope."""
    from scipy import stats

    x = np.asarray(samples, dtype=np.float64)
    lam = float(stats.ppcc_max(x, brack=(-0.3, 0.2), dist="tukeylambda"))
    lam = float(np.clip(lam, -1.0, 1.0))
    (_, _), (slope, _, _) = stats.probplot(x, sparams=(lam,), dist="tukeylambda", fit=True)
    return lam, float(slope)


def dark_statistics(paths: Sequence[str], seed: int = 0) -> DarkStats:
    """Estimates from the dark frames of one ISO; frames read one at a time.

    ``row_sigma``: variance of the row means, each row's mean over frames removed (a fixed row
    pattern is not noise); ``read_sigma``: variance of the pixels minus their row mean, without the
    1/12 DN^2 of rounding; Tukey-lambda shape by probability-plot correlation (``scipy.stats.ppcc_max``)
    and scale by the plot's slope (docs/noise_calibration.md).
    """
    rng = np.random.default_rng(seed)
    n = len(paths)
    per_frame = max(1, LAMBDA_SAMPLES // n)
    site_means, row_means, samples = [], [], []
    sq, count = 0.0, 0
    width = None
    for path in paths:
        _, x = read_frame(path)
        h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
        x = x[:h, :w]
        width = w
        sites = [float(_site_view(x, s).mean()) for s in range(4)]
        site_means.append(sites)
        flat = x - np.tile(np.array(sites).reshape(2, 2), (h // 2, w // 2))  # per-site offsets removed
        rows = flat.mean(axis=1)
        row_means.append(rows)
        resid = flat - rows[:, None]
        sq += float(np.square(resid).sum())
        count += resid.size
        samples.append(rng.choice(resid.reshape(-1), size=min(per_frame, resid.size), replace=False))
    pixel_var = sq / count * width / (width - 1)                    # the row mean took one degree of freedom
    read_var = max(pixel_var - QUANT_VAR, 0.0)
    rm = np.asarray(row_means)
    dev = rm - rm.mean(axis=0, keepdims=True)                          # a fixed row pattern is not noise
    # n - 1: each row's mean over frames removed; H / (H - 2): each frame's site means removed, a mean over
    # the H / 2 rows of one parity (even rows hold sites 0 and 1, odd rows 2 and 3)
    h_rows = rm.shape[1]
    row_total = float(np.square(dev).sum()) / (h_rows * (n - 1)) * h_rows / (h_rows - 2)
    row_var = max(row_total - pixel_var / width, 0.0)
    residuals = np.concatenate(samples)
    lam, scale = tukey_fit(residuals)
    bias_sites = np.asarray(site_means).mean(axis=0)
    return DarkStats(black_bias_sites=[float(v) for v in bias_sites], black_bias=float(bias_sites.mean()),
                     read_sigma=math.sqrt(read_var), row_sigma=math.sqrt(row_var), read_lambda=lam,
                     read_scale=scale, frames=n, residuals=residuals)


@dataclass
class PhotonTransfer:
    """The photon transfer of one ISO: points (mean DN above black, half the variance of a pair's
    difference) with their site, the fitted line ``var = K * mean + intercept``, and what was left out."""
    means: np.ndarray
    variances: np.ndarray
    sites: np.ndarray
    K: float
    intercept: float
    levels: int
    clipped: List[str]


def photon_transfer(levels: Mapping[float, Sequence[FrameInfo]], black_bias_sites: Sequence[float],
                    white: float, iso: int) -> PhotonTransfer:
    """K of one ISO from its flat frames, grouped by exposure time (``levels``: time -> >= 2 frames).

    Each level's frames are taken in disjoint pairs; per pair and CFA site a point (mean of the
    pair, var(a - b) / 2), left out when more than :data:`CLIP_FRACTION` of either frame's pixels of
    that site reach the white level. The line is fitted by least squares weighted by the expected
    variance of each point's variance (1 / var^2), twice (the second time with the first fit's
    variances). DataError when fewer than :data:`MIN_FLAT_LEVELS` levels keep an unclipped point."""
    means, variances, sites, clipped = [], [], [], []
    used_levels = set()
    bias = np.asarray(black_bias_sites, dtype=np.float64)
    for t, frames in sorted(levels.items()):
        for a_info, b_info in zip(frames[0::2], frames[1::2]):
            a_meta, a = read_frame(a_info.path)
            _, b = read_frame(b_info.path)
            h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
            for s in range(4):
                limit = white - float(a_meta.black[s // 2, s % 2]) - 0.5   # DN above black that is white
                sa, sb = _site_view(a[:h, :w], s), _site_view(b[:h, :w], s)
                if (np.count_nonzero(sa >= limit) > CLIP_FRACTION * sa.size
                        or np.count_nonzero(sb >= limit) > CLIP_FRACTION * sb.size):
                    clipped.append(f"{os.path.basename(a_info.path)}+{os.path.basename(b_info.path)} "
                                   f"site {s} ({a_meta.pattern[s]})")
                    continue
                diff = sa - sb
                means.append(float((sa.mean() + sb.mean()) / 2.0 - bias[s]))
                variances.append(float(diff.var() / 2.0))
                sites.append(s)
                used_levels.add(t)
    if len(used_levels) < MIN_FLAT_LEVELS:
        if clipped:
            raise DataError(f"flat frames of ISO {iso}: only {len(used_levels)} brightness level(s) left "
                            f"unclipped ({len(clipped)} clipped, e.g. {clipped[0]}); expected at least "
                            f"{MIN_FLAT_LEVELS}: shoot shorter exposures so that no channel reaches white")
        raise DataError(f"flat frames of ISO {iso}: {len(used_levels)} brightness level(s); expected at "
                        f"least {MIN_FLAT_LEVELS} exposure times with two frames each")
    mu, var = np.asarray(means), np.asarray(variances)
    design = np.stack([mu, np.ones_like(mu)], axis=1)
    weight = 1.0 / np.maximum(var, 1e-6) ** 2
    for _ in range(2):
        coef = np.linalg.lstsq(design * np.sqrt(weight)[:, None], var * np.sqrt(weight), rcond=None)[0]
        weight = 1.0 / np.maximum(design @ coef, 1e-6) ** 2
    if not coef[0] > 0:
        raise DataError(f"flat frames of ISO {iso}: the variance does not grow with the brightness "
                        f"(fitted K = {coef[0]:.4g}); are these flat frames of several exposure times?")
    return PhotonTransfer(means=mu, variances=var, sites=np.asarray(sites), K=float(coef[0]),
                          intercept=float(coef[1]), levels=len(used_levels), clipped=clipped)


def flat_levels(frames: Sequence[FrameInfo], iso: int) -> Dict[float, List[FrameInfo]]:
    """Exposure time -> the flat frames of one ISO; DataError for a missing exposure time or a
    level with a single frame (a pair is what cancels the fixed pattern)."""
    levels: Dict[float, List[FrameInfo]] = {}
    for info in frames:
        if info.exposure <= 0:
            raise DataError(f"{info.path}: no exposure time in the file's metadata; flat frames are grouped "
                            f"into brightness levels by exposure time")
        levels.setdefault(round(info.exposure, 9), []).append(info)
    for t, group in sorted(levels.items()):
        if len(group) < 2:
            raise DataError(f"{group[0].path}: the only flat frame of ISO {iso} at {t:g} s; expected at "
                            f"least 2 frames per exposure time (their difference cancels the fixed pattern)")
    return levels


# ---------------------------------------------------------------------------------------
# Across ISOs
# ---------------------------------------------------------------------------------------

def log_linear(log_k: np.ndarray, values: np.ndarray) -> Tuple[float, float, float]:
    """(slope, bias, residual standard deviation) of ``log(values) = slope * log_k + bias``;
    the residual sigma uses n - 2 degrees of freedom (0 for two ISOs)."""
    y = np.log(np.maximum(np.asarray(values, dtype=np.float64), 1e-12))
    slope, bias = np.polyfit(log_k, y, 1)
    resid = y - (slope * log_k + bias)
    jitter = math.sqrt(float(np.square(resid).sum()) / (len(y) - 2)) if len(y) > 2 else 0.0
    return float(slope), float(bias), jitter


def fit_across_isos(per_iso: Mapping[int, Mapping[str, float]]) -> Dict[str, float]:
    """ELD's log-linear fits against log K: ``read_*``, ``row_*``, ``scale_*`` (Tukey scale) as
    slope / bias / jitter, the K range ``k_min`` / ``k_max``, and the mean and spread of the shape
    ``read_lambda`` / ``read_lambda_std``. Needs two ISOs of different K."""
    isos = sorted(per_iso)
    ks = np.array([per_iso[i]["K"] for i in isos])
    if len(isos) < 2 or np.ptp(np.log(ks)) < 1e-6:
        raise DataError(f"the fits against log K need at least two ISOs of different gain; got ISO "
                        f"{', '.join(str(i) for i in isos)} (shoot dark and flat frames at several ISOs)")
    log_k = np.log(ks)
    out: Dict[str, float] = {"k_min": float(ks.min()), "k_max": float(ks.max())}
    for name, key in (("read", "read_sigma"), ("row", "row_sigma"), ("scale", "read_scale")):
        slope, bias, jitter = log_linear(log_k, np.array([per_iso[i][key] for i in isos]))
        out.update({f"{name}_slope": slope, f"{name}_bias": bias, f"{name}_jitter": jitter})
    lams = np.array([per_iso[i]["read_lambda"] for i in isos])
    out["read_lambda"] = float(lams.mean())
    out["read_lambda_std"] = float(lams.std())
    return out


# ---------------------------------------------------------------------------------------
# The whole calibration and the profile
# ---------------------------------------------------------------------------------------

def calibrate(dark_dir: str, flat_dir: str, log: Callable[[str], None] = print) -> Tuple[Dict[str, object], Dict]:
    """Calibrate from the RAW files in ``dark_dir`` and ``flat_dir``: (profile dict as written by
    :func:`cans.noise.profile.write_profile`, {ISO: (DarkStats, PhotonTransfer)} for the plots)."""
    dark_paths = list_raw_files(dark_dir, "--dark")
    flat_paths = list_raw_files(flat_dir, "--flat")
    infos = scan(dark_paths + flat_paths)
    darks = group_by_iso(infos[:len(dark_paths)])
    flats = group_by_iso(infos[len(dark_paths):])
    only_dark, only_flat = sorted(set(darks) - set(flats)), sorted(set(flats) - set(darks))
    if only_dark or only_flat:
        side = (f"ISO {', '.join(map(str, only_dark))} has dark frames but no flat frames" if only_dark else
                f"ISO {', '.join(map(str, only_flat))} has flat frames but no dark frames")
        raise DataError(f"{side}; every ISO needs both (dark frames: {dark_dir}, flat frames: {flat_dir})")
    first = infos[0]
    per_iso: Dict[int, Dict[str, object]] = {}
    details = {}
    for iso, frames in darks.items():
        if len(frames) < MIN_DARK_FRAMES:
            raise DataError(f"{frames[0].path}: ISO {iso} has {len(frames)} dark frame(s); expected at least "
                            f"{MIN_DARK_FRAMES} (more give better row and read noise estimates)")
        dark = dark_statistics([f.path for f in frames], seed=iso)
        ptc = photon_transfer(flat_levels(flats[iso], iso), dark.black_bias_sites, first.white, iso)
        per_iso[iso] = {"K": ptc.K, "read_sigma": dark.read_sigma, "row_sigma": dark.row_sigma,
                        "read_lambda": dark.read_lambda, "read_scale": dark.read_scale,
                        "black_bias": dark.black_bias, "black_bias_sites": dark.black_bias_sites,
                        "dark_frames": dark.frames, "flat_frames": len(flats[iso]), "flat_levels": ptc.levels,
                        "clipped_points": len(ptc.clipped)}
        details[iso] = (dark, ptc)
        log(f"ISO {iso}: K {ptc.K:.4g} DN/e-, read sigma {dark.read_sigma:.4g} DN (Tukey lambda "
            f"{dark.read_lambda:.3f}), row sigma {dark.row_sigma:.4g} DN, black bias {dark.black_bias:+.3f} DN "
            f"({dark.frames} dark, {len(flats[iso])} flat frames, {ptc.levels} levels"
            + (f", {len(ptc.clipped)} clipped site(s) left out)" if ptc.clipped else ")"))
    profile = {"version": PROFILE_VERSION,
               "camera": {"cfa": first.pattern, "white": float(first.white),
                          "black": [float(v) for v in first.black.reshape(-1)],
                          "height": int(first.shape[0]), "width": int(first.shape[1])},
               "per_iso": per_iso, "fit": fit_across_isos(per_iso)}
    return profile, details


__all__ = ["FrameInfo", "DarkStats", "PhotonTransfer", "read_frame", "list_raw_files", "scan", "group_by_iso",
           "dark_statistics", "photon_transfer", "flat_levels", "tukey_fit", "log_linear", "fit_across_isos",
           "calibrate"]
