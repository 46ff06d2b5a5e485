"""Output heads. RAW heads return (B, b*b, H, W); RGB heads return (B, 3, H*b, W*b).

CANS uses plain convolutional heads; CANS++ adds the dual-head interaction module:
both heads query the same pooled key and full-resolution value (``SharedKV``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import (
    AdaptivePool2d,
    LayerNorm2d,
    adaptive_pool,
    conv_chunk,
    conv_chunks,
    pooled_conv,
    pooled_form_applies,
    projected_attention,
)


def _reflect_conv3x3(cin: int, cout: int, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect", groups=groups, bias=True)


class RawHead(nn.Module):
    """features (B, w, H, W) -> packed RAW (B, b*b, H, W)."""

    def __init__(self, width: int, block_size: int):
        super().__init__()
        self._build_final(width, block_size)

    def _build_final(self, width: int, block_size: int) -> None:
        self.final = _reflect_conv3x3(width, block_size * block_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final(x)


class RGBHead(nn.Module):
    """features (B, w, H, W) -> sRGB (B, 3, H*b, W*b): conv3x3 -> GELU -> conv1x1 -> PixelShuffle."""

    def __init__(self, width: int, block_size: int):
        super().__init__()
        self._build_final(width, block_size)

    def _build_final(self, width: int, block_size: int) -> None:
        self.final_conv1 = _reflect_conv3x3(width, width)
        self.final_conv2 = nn.Conv2d(width, 3 * block_size * block_size, 1, bias=True)
        self.shuffle = nn.PixelShuffle(block_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.final_conv2(F.gelu(self.final_conv1(x))))


class SharedKV(nn.Sequential):
    """Shared key/value of CANS++: LayerNorm2d -> 1x1 conv w->2w -> dwconv 3x3 reflect.

    Returns k pooled to (B, w, s, s) and v at full resolution (B, w, H, W).
    """

    def __init__(self, width: int, adaptive_size: int):
        super().__init__(LayerNorm2d(width), nn.Conv2d(width, 2 * width, 1, bias=True),
                         _reflect_conv3x3(2 * width, 2 * width, groups=2 * width))
        self.adaptive_size = adaptive_size

    def forward(self, x: torch.Tensor):
        norm, pointwise, depthwise = self
        if pooled_form_applies(self.adaptive_size, pointwise, depthwise):
            # exported: k is only pooled, and the LayerNorm's affine goes into k's pooled sums and
            # v's 1x1 convolution, so the features' standardised map is the one the queries use too
            std, affine = norm.standardised(x), (norm.g, norm.b)
            return (pooled_conv(std, self.adaptive_size, depthwise, pointwise, 0, 2, affine),
                    conv_chunk(std, 1, 2, pointwise, depthwise, affine))
        x = norm(x)
        k, v = conv_chunks(x, 2, pointwise, depthwise)
        return adaptive_pool(k, self.adaptive_size), v


class ComputeAttn(nn.Module):
    """y = out(softmax(q k^T) v) + features."""

    def __init__(self, width: int):
        super().__init__()
        self.out = nn.Conv2d(width, width, 1, bias=True)

    def forward(self, q, k, v, features):
        return projected_attention(q, k, v, self.out) + features


class Query(nn.Sequential):
    """A CANS++ head's query: LayerNorm2d -> dwconv 3x3 reflect -> adaptive pool -> 1x1 conv,
    (B, w, H, W) -> (B, w, s, s). Exported, the pooled map is made without the full-resolution
    one (:func:`cans.models.blocks.pooled_conv`)."""

    def __init__(self, width: int, adaptive_size: int):
        super().__init__(LayerNorm2d(width), _reflect_conv3x3(width, width, groups=width),
                         AdaptivePool2d(adaptive_size), nn.Conv2d(width, width, 1, bias=True))
        self.adaptive_size = adaptive_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm, depthwise, _, project = self   # the pool module: pooled_conv pools as it does
        if pooled_form_applies(self.adaptive_size, None, depthwise):
            # exported: the LayerNorm's affine applied to the pooled sums of the standardised map
            # that the shared key/value and the other head's query compute alike (one map for all)
            return project(pooled_conv(norm.standardised(x), self.adaptive_size, depthwise,
                                       affine=(norm.g, norm.b)))
        return project(pooled_conv(norm(x), self.adaptive_size, depthwise))


class _InteractiveHead:
    """The dual-head interaction of a CANS++ head, mixed in before the plain head (RawHead or
    RGBHead): the per-head query and attention, then the head's own final layers.

    The query and attention are created before the final layers: the authors' creation order,
    which fixes the seeded initial weights (do not reorder).
    """

    def __init__(self, width: int, block_size: int, adaptive_size: int):
        nn.Module.__init__(self)
        self.get_q = Query(width, adaptive_size)
        self.compute_attn = ComputeAttn(width)
        self._build_final(width, block_size)

    def forward(self, x, k, v):
        """x (B, w, H, W), k (B, w, s, s), v (B, w, H, W) -> the plain head's output of the attended x."""
        return super().forward(self.compute_attn(self.get_q(x), k, v, x))


class InteractiveRawHead(_InteractiveHead, RawHead):
    """CANS++ RAW head: query the shared (k, v), then the RAW head's conv."""


class InteractiveRGBHead(_InteractiveHead, RGBHead):
    """CANS++ RGB head: query the shared (k, v), then the RGB head's layers."""
