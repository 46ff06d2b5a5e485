"""Parameters and FLOPs of a configured model.

    python -m cans.tools.profile -c configs/CANS_Plus/Sony.yaml [--size 512 512] [--set key=value ...]

``--size`` is the *packed* input size (H, W); the default 512 x 512 is a 1024 x 1024 Bayer
patch. FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and
matrix products; element-wise work such as LayerNorm, GELU and pooling is not counted).
MACs = FLOPs / 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..cli import add_set_argument
from ..config import ConfigError, load_config
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


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m cans.tools.profile``."""
    parser = argparse.ArgumentParser(prog="python -m cans.tools.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", required=True, help="YAML config")
    parser.add_argument("--size", type=int, nargs=2, default=[512, 512], metavar=("H", "W"),
                        help="packed input size (default 512 512 = a 1024x1024 Bayer patch)")
    add_set_argument(parser)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    return parser


def main(argv: Sequence[str] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config, args.set)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = profile(cfg, *args.size)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    h, w = args.size
    print(f"{result['config_name']} ({result['model']}), packed input {result['input_packed']} "
          f"(Bayer {result['input_bayer'][0]}x{result['input_bayer'][1]})")
    print(f"  parameters : {result['parameters']:,}")
    print(f"  FLOPs      : {result['gflops']:.2f} G  ({result['gmacs']:.2f} GMAC)")
    for name, g in result["per_module_gflops"].items():
        print(f"    {name:<28s} {g:8.2f} GFLOPs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
