"""Parameters and FLOPs of a configured model (the command: ``python -m cans.cli.profile``).

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products;
element-wise work such as LayerNorm, GELU and pooling is not counted). MACs = FLOPs / 2.
"""
from __future__ import annotations

from typing import Dict

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..models import build_model


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: torch.nn.Module, height: int, width: int, batch: int = 1) -> Dict[str, int]:
    """FLOPs of one forward pass on a (batch, in_channel, height, width) input, total and per module."""
    x = torch.zeros(batch, model.in_channel, height, width)
    counter = FlopCounterMode(display=False, depth=2)
    with torch.no_grad(), counter:
        model(x)
    per_module = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    return {"total": counter.get_total_flops(), "per_module": per_module}


def profile(cfg, height: int = 512, width: int = 512) -> Dict[str, object]:
    """Parameters and FLOPs of the model of ``cfg`` on a packed (height, width) input, total and
    per top-level module (GFLOPs)."""
    model = build_model(cfg).eval()
    flops = count_flops(model, height, width)
    return {
        "model": cfg["model"]["type"],
        "config_name": cfg.get("name"),
        "input_packed": [model.in_channel, height, width],
        "input_bayer": [height * model.block_size, width * model.block_size],
        "parameters": count_parameters(model),
        "gflops": flops["total"] / 1e9,
        "gmacs": flops["total"] / 2e9,
        "per_module_gflops": {k: v / 1e9 for k, v in flops["per_module"].items() if v and k.count(".") == 1},
    }
