"""The shared U-shaped backbone of CANS and CANS++.

Input: packed RAW (B, in_channel, H, W) with H and W multiples of 2**len(enc_blk_nums).
Output: features (B, width, H, W).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from .blocks import CNPBlock, upsample


class Backbone(nn.Module):
    def __init__(self, in_channel: int, width: int, middle_blk_num: int,
                 enc_blk_nums: Sequence[int], dec_blk_nums: Sequence[int], adaptive_size: int):
        super().__init__()
        if len(enc_blk_nums) != len(dec_blk_nums):
            raise ValueError(f"model.enc_blk_nums {list(enc_blk_nums)} and model.dec_blk_nums "
                             f"{list(dec_blk_nums)} must have the same length")
        # Creation order is deliberate (the authors' order): with train.manual_seed 3407 the
        # initial weights equal the authors'. Do not reorder modules or their creation.
        self.intro = nn.Conv2d(in_channel, width, 5, padding=2, bias=True)
        self.ending = nn.Conv2d(width, width, 3, padding=1, bias=True)
        self.encoders = nn.ModuleList()
        self.decoders = nn.ModuleList()
        self.middle_blks = nn.ModuleList()  # placeholder: state_dict order as the authors'; built below
        self.ups = nn.ModuleList()
        self.downs = nn.ModuleList()
        chan = width
        for n in enc_blk_nums:
            self.encoders.append(nn.Sequential(*[CNPBlock(chan, adaptive_size, False) for _ in range(n)]))
            self.downs.append(nn.Conv2d(chan, 2 * chan, 2, stride=2, bias=True))
            chan *= 2
        self.middle_blks = nn.Sequential(*[CNPBlock(chan, adaptive_size, False) for _ in range(middle_blk_num)])
        for n in dec_blk_nums:
            self.ups.append(nn.Sequential(nn.Conv2d(chan, 2 * chan, 1, bias=False), nn.PixelShuffle(2)))
            chan //= 2
            self.decoders.append(nn.Sequential(*[CNPBlock(chan, adaptive_size, True) for _ in range(n)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.intro(x)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle_blks(x)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            x = decoder(upsample(up, x) + skip)
        return self.ending(x)
