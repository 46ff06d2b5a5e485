"""The two networks: ``CANS`` and ``CANS_Plus`` (CANS++).

``forward(x)`` takes a packed, ratio-amplified RAW image ``x`` of shape
(B, in_channel, H, W), values nominally in [0, 1], and returns ``(rgb, raw)``:
``rgb`` (B, 3, H*b, W*b), an sRGB image nominally in [0, 1], and ``raw``
(B, b*b, H, W), the denoised packed RAW, where b = ``block_size``. Outputs are not
clamped (as the reference); clamp before saving or scoring.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import MODELS
from .backbone import Backbone
from .blocks import MIN_DEEPEST_SIZE, exporting
from .heads import InteractiveRawHead, InteractiveRGBHead, RawHead, RGBHead, SharedKV


class _CANSBase(nn.Module):
    def __init__(self, in_channel: int = 4, width: int = 32, middle_blk_num: int = 2,
                 enc_blk_nums: Sequence[int] = (2, 2, 2, 2), dec_blk_nums: Sequence[int] = (2, 2, 2, 2),
                 adaptive_size: int = 2, block_size: int = 2):
        super().__init__()
        self.in_channel = in_channel
        self.block_size = block_size
        self.depth = len(enc_blk_nums)
        self.backbone = Backbone(in_channel, width, middle_blk_num, enc_blk_nums, dec_blk_nums, adaptive_size)

    @property
    def multiple(self) -> int:
        """Height and width are padded to a multiple of this (2 ** depth)."""
        return 2 ** self.depth

    @property
    def min_input_size(self) -> int:
        """The smallest height/width accepted: the padded deepest map must be >= 4 pixels."""
        return self.multiple * (MIN_DEEPEST_SIZE - 1) + 1

    def padding(self, h: int, w: int) -> Tuple[int, int, int, int]:
        """(left, right, top, bottom) reflect padding that makes h and w multiples of 2**depth."""
        m = self.multiple
        dh, dw = (-h) % m, (-w) % m
        return dw // 2, dw - dw // 2, dh // 2, dh - dh // 2

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channel:
            raise ValueError(f"{type(self).__name__} expects a packed RAW tensor of shape "
                             f"(B, {self.in_channel}, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if min(h, w) < self.min_input_size:
            raise ValueError(f"input of {h}x{w} (packed) is too small for a model with "
                             f"{self.depth} levels: the smallest size accepted is "
                             f"{self.min_input_size}x{self.min_input_size}")

    def heads(self, features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward_padded(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(rgb, raw)`` of an input already padded to multiples of :attr:`multiple`, not cropped."""
        return self.heads(self.backbone(x))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.pad_run_crop(x, self.forward_padded)

    def pad_run_crop(self, x: torch.Tensor, run) -> Tuple[torch.Tensor, torch.Tensor]:
        """The forward around ``run``: check ``x``, reflect-pad it to multiples of :attr:`multiple`,
        ``run`` (:meth:`forward_padded`, or a compiled one) the padded frame, crop ``(rgb, raw)`` back.

        Compiled evaluation passes its compiled :meth:`forward_padded`
        (:func:`cans.engine.fastpath.compile_eval_model`): the pad and the crop then run eagerly, so
        the compiled graph sees padded sizes only and never which pads are zero."""
        self.check_input(x)
        h, w = x.shape[-2:]
        left, right, top, bottom = self.padding(h, w)
        # traced for export, the pads are symbolic: pad always (a zero pad is a copy), so the
        # graph is not specialised to whether the export size needed padding
        if exporting() or left or right or top or bottom:
            x = F.pad(x, (left, right, top, bottom), mode="reflect")
        rgb, raw = run(x)
        b = self.block_size
        raw = raw[..., top:top + h, left:left + w]
        rgb = rgb[..., top * b:(top + h) * b, left * b:(left + w) * b]
        return rgb, raw


@MODELS.register
class CANS(_CANSBase):
    """CANS: shared backbone, a convolutional RAW head and an RGB head."""

    def __init__(self, in_channel: int = 4, width: int = 32, middle_blk_num: int = 2,
                 enc_blk_nums: Sequence[int] = (2, 2, 2, 2), dec_blk_nums: Sequence[int] = (2, 2, 2, 2),
                 adaptive_size: int = 2, block_size: int = 2):
        super().__init__(in_channel, width, middle_blk_num, enc_blk_nums, dec_blk_nums, adaptive_size, block_size)
        # rgb_head before raw_head: creation order is deliberate (the authors', for the seeded init)
        self.rgb_head = RGBHead(width, block_size)
        self.raw_head = RawHead(width, block_size)

    def heads(self, features):
        return self.rgb_head(features), self.raw_head(features)


@MODELS.register
class CANS_Plus(_CANSBase):
    """CANS++: CANS with the dual-head interaction module (shared pooled key and value)."""

    def __init__(self, in_channel: int = 4, width: int = 32, middle_blk_num: int = 2,
                 enc_blk_nums: Sequence[int] = (2, 2, 2, 2), dec_blk_nums: Sequence[int] = (2, 2, 2, 2),
                 adaptive_size: int = 2, block_size: int = 2):
        super().__init__(in_channel, width, middle_blk_num, enc_blk_nums, dec_blk_nums, adaptive_size, block_size)
        # rgb_head, raw_head, then get_kv: creation order is deliberate (the authors', for the seeded init)
        self.rgb_head = InteractiveRGBHead(width, block_size, adaptive_size)
        self.raw_head = InteractiveRawHead(width, block_size, adaptive_size)
        self.get_kv = SharedKV(width, adaptive_size)

    def heads(self, features):
        k, v = self.get_kv(features)
        return self.rgb_head(features, k, v), self.raw_head(features, k, v)
