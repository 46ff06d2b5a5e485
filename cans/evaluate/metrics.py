"""Image-quality metrics as the paper computes them (docs/testing.md, "Metrics"), in torch.

:func:`psnr` and :func:`ssim` take ``output`` and ``target`` (B, C, H, W) in ``[0, data_range]``
and return a float64 tensor (B,) on the inputs' device. Both images are clamped and put on the
0..255 scale; SSIM uses an 11-tap Gaussian window (sigma 1.5), population statistics and "valid"
filtering (the map is (H - 10) x (W - 10)). Scores equal scikit-image's to 1e-4 (tested). Statistics
are float64 because the float32 E[x^2] - E[x]^2 variances lose about 1e-3 of SSIM on 0..255 images.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence, Tuple

import torch

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SCALE = 255.0


def _prepare(output: torch.Tensor, target: torch.Tensor, data_range: float, name: str):
    if not isinstance(output, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(f"{name}: expected torch tensors, got {type(output).__name__} and {type(target).__name__}")
    if output.dim() != 4 or output.shape != target.shape:
        raise ValueError(f"{name}: expected output and target of the same shape (B, C, H, W), "
                         f"got {tuple(output.shape)} and {tuple(target.shape)}")
    if not data_range > 0:
        raise ValueError(f"{name}: data_range must be positive, got {data_range}")
    dev = output.device
    if dev.type == "mps":  # no float64 there
        dev = torch.device("cpu")
    scale = SCALE / float(data_range)
    x = output.detach().to(dev, torch.float64).clamp(0.0, float(data_range)) * scale
    y = target.detach().to(dev, torch.float64).clamp(0.0, float(data_range)) * scale
    return x, y, output.device


def psnr(output: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB per image: (B, C, H, W) x2 in [0, data_range] -> float64 (B,)."""
    x, y, dev = _prepare(output, target, data_range, "psnr")
    mse = (x - y).pow(2).flatten(1).mean(dim=1)
    return (10.0 * torch.log10(SCALE * SCALE / mse)).to(dev)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, dtype=torch.float64,
                    device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian taps (size,), centred (as scipy.ndimage.gaussian_filter)."""
    half = (size - 1) / 2.0
    coords = torch.arange(size, dtype=dtype, device=device) - half
    taps = torch.exp(-0.5 * coords * coords / (sigma * sigma))
    return taps / taps.sum()


@functools.lru_cache(maxsize=None)
def window_taps(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> Tuple[float, ...]:
    """:func:`gaussian_window`'s taps as Python floats (float64 values), computed on the CPU once
    per (size, sigma). The filter multiplies by these numbers: taps read back from a window
    built on the GPU cost a host synchronisation each (11 per channel, about 77 per image)."""
    return tuple(gaussian_window(size, sigma).tolist())


def _filter_valid(stack: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """Separable Gaussian filtering without padding: (B, K, H, W) -> (B, K, H-10, W-10) with the
    taps ``weights`` (Python floats, :func:`window_taps`).

    Written as shifted multiply-adds (11 per direction): exact like a convolution, and in
    float64 on the CPU about ten times faster than ``conv2d`` (a full-resolution SID image
    takes seconds, not a minute).
    """
    n = len(weights)
    h, w = stack.shape[-2:]
    wo, ho = w - n + 1, h - n + 1
    rows = stack[..., :, 0:wo] * weights[0]
    for k in range(1, n):
        rows.add_(stack[..., :, k:k + wo], alpha=weights[k])
    out = rows[..., 0:ho, :] * weights[0]
    for k in range(1, n):
        out.add_(rows[..., k:k + ho, :], alpha=weights[k])
    return out


def ssim(output: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM per image: (B, C, H, W) x2 in [0, data_range] -> float64 (B,).

    Images smaller than 11 x 11 have no valid window and raise ``ValueError``.
    """
    x, y, dev = _prepare(output, target, data_range, "ssim")
    b, c, h, w = x.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"ssim: images of {h}x{w} are smaller than the {SSIM_WINDOW}x{SSIM_WINDOW} window")
    taps = window_taps()
    c1 = (SSIM_K1 * SCALE) ** 2
    c2 = (SSIM_K2 * SCALE) ** 2
    # One channel at a time keeps the float64 working set at 5 maps of one channel.
    per_channel = []
    for ch in range(c):
        xc, yc = x[:, ch:ch + 1], y[:, ch:ch + 1]
        stats = _filter_valid(torch.cat([xc, yc, xc * xc, yc * yc, xc * yc], dim=1), taps)
        mx, my, mxx, myy, mxy = stats.unbind(dim=1)
        vx = mxx - mx * mx
        vy = myy - my * my
        vxy = mxy - mx * my
        num = (2.0 * mx * my + c1) * (2.0 * vxy + c2)
        den = (mx * mx + my * my + c1) * (vx + vy + c2)
        per_channel.append((num / den).flatten(1).mean(dim=1))
    return torch.stack(per_channel, dim=1).mean(dim=1).to(dev)


def psnr_ssim(output: torch.Tensor, target: torch.Tensor, data_range: float = 1.0):
    """Both metrics at once: ``(psnr (B,), ssim (B,))``."""
    return psnr(output, target, data_range), ssim(output, target, data_range)


def fidelity_psnr(out: torch.Tensor, ref: torch.Tensor) -> "float | None":
    """How close ``out`` is to a reference output ``ref`` of the same model (another precision, runtime
    or kernel): PSNR in dB with peak 1 (the sRGB range) on the outputs as they are, not clamped
    (clamping would hide differences outside [0, 1]), in float64; None when identical."""
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    mse = torch.mean((out - ref) ** 2).item()
    if mse == 0:
        return None
    return -10.0 * math.log10(mse)


def finite_mean(values) -> float:
    """Mean of a list of floats, ``inf`` kept (identical images), ``nan`` when empty."""
    values = [float(v) for v in values]
    if not values:
        return math.nan
    return sum(values) / len(values)


__all__ = ["psnr", "ssim", "psnr_ssim", "gaussian_window", "window_taps", "finite_mean"]
