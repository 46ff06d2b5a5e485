"""Parameters and FLOPs of a configured model.

    python -m cans.cli.profile -c configs/CANS_Plus/Sony.yaml [--size 512 512] [--set key=value ...]

``--size`` is the *packed* input size (H, W); the default 512 x 512 is a 1024 x 1024 Bayer
patch. FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and
matrix products; element-wise work such as LayerNorm, GELU and pooling is not counted).
MACs = FLOPs / 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from ..config import ConfigError, load_config
from ..tools.profile import profile
from .common import add_set_argument


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m cans.cli.profile`` (also read by tests/test_docs_commands.py)."""
    parser = argparse.ArgumentParser(prog="python -m cans.cli.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", required=True, help="YAML config")
    parser.add_argument("--size", type=int, nargs=2, default=[512, 512], metavar=("H", "W"),
                        help="packed input size (default 512 512 = a 1024x1024 Bayer patch)")
    add_set_argument(parser)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
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
    print(f"{result['config_name']} ({result['model']}), packed input {result['input_packed']} "
          f"(Bayer {result['input_bayer'][0]}x{result['input_bayer'][1]})")
    print(f"  parameters : {result['parameters']:,}")
    print(f"  FLOPs      : {result['gflops']:.2f} G  ({result['gmacs']:.2f} GMAC)")
    for name, g in result["per_module_gflops"].items():
        print(f"    {name:<28s} {g:8.2f} GFLOPs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
