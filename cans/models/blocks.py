"""Building blocks of the CANS backbone: LayerNorm2d, RDE, GCP and the CNP block.

All tensors are feature maps of shape (B, C, H, W); values are unbounded floats.
Attribute names follow the authors' implementation so that their ``state_dict``
(the published weights) loads with ``strict=True``; the tests check the key lists.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a (B, C, H, W) map, per pixel, as the reference computes it.

    Mean and *biased* variance over C; ``eps`` 1e-5 for float32 input and 1e-3 for any other dtype
    (the reference's rule); parameters ``g`` and ``b`` of shape (1, C, 1, 1). Under autocast,
    ``amp_float32`` (``model.amp_layernorm: float32``, the default) computes it in float32 with eps
    1e-5, because the reference's half-precision rule takes the output far from the float32 model's
    (docs/performance.md has the figures); ``amp_float32 = False`` keeps the reference's rule.
    """

    amp_float32: bool = True

    def __init__(self, channels: int):
        super().__init__()
        self.g = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.b = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.amp_float32 and x.dtype in (torch.bfloat16, torch.float16)
                and torch.is_autocast_enabled(x.device.type)):
            return self._normalise(x.float(), 1e-5)
        return self._normalise(x, 1e-5 if x.dtype == torch.float32 else 1e-3)

    def _normalise(self, x: torch.Tensor, eps: float) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = (x - mean).pow(2).mean(dim=1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + eps) * self.g + self.b


def channel_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Channel-affinity attention used by GCP and the CANS++ heads.

    query, key: (B, C, h, w) pooled maps (h * w = s * s); value: (B, C, H, W).
    Returns ``softmax(q @ k^T, -1) @ v`` reshaped to (B, C, H, W): a (B, C, C) affinity
    between channels, whatever the spatial size (the reshapes as the authors write them).
    """
    h, w = value.shape[-2:]
    q = rearrange(query, "b c h w -> b c (h w)")
    k = rearrange(key, "b c h w -> b c (h w)")
    attn = torch.softmax(q @ k.transpose(-2, -1), dim=-1)  # (B, C, C)
    return rearrange(attn @ rearrange(value, "b c h w -> b c (h w)"), "b c (h w) -> b c h w", h=h, w=w)


def exporting() -> bool:
    """True while ``torch.export`` traces the model (ONNX export), where the shapes are symbolic."""
    is_exporting = getattr(torch.compiler, "is_exporting", None)
    return bool(is_exporting is not None and is_exporting())


def _pooling_matrix(n, size: int, like: torch.Tensor) -> torch.Tensor:
    """(size, n): row i averages the i-th window of adaptive average pooling over ``n`` samples,
    ``[floor(i n / size), ceil((i + 1) n / size))``, as ``nn.AdaptiveAvgPool2d`` places them."""
    i = torch.arange(size, device=like.device)
    start, end = (i * n) // size, ((i + 1) * n + size - 1) // size
    j = torch.arange(n, device=like.device)
    inside = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return inside.to(like.dtype) / (end - start).to(like.dtype)[:, None]


#: set only inside :func:`pool_tap` (the tile graph of an ONNX export, cans.onnx_model; two-pass tiles,
#: cans.tiling.GlobalPoolStats): every pooling point calls it with (its input, its pooled value) and
#: uses what it returns
POOL_TAP = None


@contextlib.contextmanager
def pool_tap(tap):
    """Route every pooling point through ``tap(feature, pooled) -> pooled`` inside the block (the
    tap set before it, if any, is back afterwards)."""
    global POOL_TAP
    previous, POOL_TAP = POOL_TAP, tap
    try:
        yield
    finally:
        POOL_TAP = previous


def adaptive_pool(x: torch.Tensor, size: int) -> torch.Tensor:
    """Adaptive average pooling of a (B, C, H, W) map to (B, C, size, size).

    While ``torch.export`` traces (ONNX export), the same windows are written as two products
    with pooling matrices built from the traced H and W: the exporter turns the operator itself
    into a pooling whose kernel is fixed by the export size, so the graph would fail at any other
    size. Both forms give the same windows; they differ by float rounding (about 1e-7)."""
    if not exporting():
        pooled = F.adaptive_avg_pool2d(x, size)
    else:
        h, w = x.shape[-2], x.shape[-1]
        pooled = torch.einsum("ih,bchw,jw->bcij", _pooling_matrix(h, size, x), x, _pooling_matrix(w, size, x))
    return pooled if POOL_TAP is None else POOL_TAP(x, pooled)


class AdaptivePool2d(nn.AdaptiveAvgPool2d):
    """``nn.AdaptiveAvgPool2d`` (a square output) that stays shape-generic when exported
    (:func:`adaptive_pool`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.output_size if isinstance(self.output_size, int) else self.output_size[0]
        return adaptive_pool(x, size)


class SGU(nn.Module):
    """Simple gated unit: 1x1 conv C->2C, product of the two halves, 1x1 conv C->C."""

    def __init__(self, channels: int):
        super().__init__()
        self.pconv1 = nn.Conv2d(channels, 2 * channels, 1, bias=True)
        self.pconv2 = nn.Conv2d(channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.pconv1(x).chunk(2, dim=1)
        return self.pconv2(x1 * x2)


class RDE(nn.Module):
    """Refined detail extractor (residual): dwconv 7x7 reflect -> LayerNorm2d -> SGU."""

    def __init__(self, channels: int):
        super().__init__()
        self.dconv = nn.Conv2d(channels, channels, 7, padding=3, padding_mode="reflect",
                               groups=channels, bias=True)
        self.norm = LayerNorm2d(channels)
        self.SGU = SGU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.SGU(self.norm(self.dconv(x))) + x


class GCP(nn.Module):
    """Global chromatic perceptor (residual): channel attention from s x s pooled statistics."""

    def __init__(self, channels: int, adaptive_size: int):
        super().__init__()
        self.norm = LayerNorm2d(channels)
        self.pconv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        self.dconv = nn.Conv2d(3 * channels, 3 * channels, 3, padding=1,
                               groups=3 * channels, bias=False)
        self.pool = AdaptivePool2d(adaptive_size)
        self.out = nn.Conv2d(channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1, c2, c3 = self.dconv(self.pconv(self.norm(x))).chunk(3, dim=1)
        y = channel_attention(self.pool(c1), self.pool(c2), c3)
        return self.out(y) + x


class CNPBlock(nn.Module):
    """Chromaticity and noise perception block: optional GCP, then RDE."""

    def __init__(self, channels: int, adaptive_size: int, global_aware: bool):
        super().__init__()
        self.GCP = GCP(channels, adaptive_size) if global_aware else nn.Identity()
        self.RDE = RDE(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.RDE(self.GCP(x))
