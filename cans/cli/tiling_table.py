r"""Measure what tiled inference changes: PSNR of tiled against whole-frame output.

    python scripts/tiling_table.py -c configs/demo.yaml \
        --checkpoint runs/CANS_Plus_demo/checkpoints/best.pth --tiles 64 96 128 --overlaps 16 32

Runs every image of the config's test split whole and in tiles (with and without the two-pass
global statistics) and prints a Markdown table (also written to --out, default
<output_dir>/test/tiling.md). Sizes are packed pixels. See cans/tiling.py and docs/tiling.md.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from ..config import load_config
from ..data import build_dataset
from ..engine.loading import load_model, pick_device
from ..tiling import compare_tiling, format_tiling_table
from .common import add_set_argument, add_trust_argument, run_cli, write_table


def build_parser() -> argparse.ArgumentParser:
    """The command line of tiling_table.py (also read by tests/test_docs_commands.py)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", required=True, help="config whose test split is used")
    p.add_argument("--checkpoint", required=True, help="weights (.pth)")
    p.add_argument("--tiles", type=int, nargs="+", default=[64, 96, 128], help="tile sizes, packed pixels")
    p.add_argument("--overlaps", type=int, nargs="+", default=[16, 32], help="overlaps, packed pixels")
    p.add_argument("--no-two-pass", action="store_true", help="skip the two-pass rows")
    p.add_argument("--max-images", type=int, default=None, help="only the first N test images")
    p.add_argument("--device", default=None, help="cpu, cuda (default: cuda when available)")
    p.add_argument("--out", default=None, help="Markdown file (default <output_dir>/test/tiling.md)")
    add_set_argument(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_trust_argument(p)
    return p


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def run(args: argparse.Namespace) -> int:
    """Measure the settings of the parsed ``args``; print the table and write it (and its JSON)."""
    cfg = load_config(args.config, args.set)
    device = pick_device(args.device)
    model = load_model(cfg, args.checkpoint, device)
    dataset = build_dataset(cfg, "test")
    n = len(dataset) if args.max_images is None else min(args.max_images, len(dataset))
    settings = [(t, o, tp) for t in args.tiles for o in args.overlaps if o < t
                for tp in ((False,) if args.no_two_pass else (False, True))]
    rows = compare_tiling(model, (dataset[i] for i in range(n)), settings, device, not args.no_progress, total=n)
    table = format_tiling_table(rows)
    print(table)
    out = args.out or os.path.join(cfg["output_dir"], "test", "tiling.md")
    write_table(out, table, rows)
    print(f"written: {out}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    return run_cli(lambda: run(args), trust_checkpoint=args.trust_checkpoint)


if __name__ == "__main__":
    sys.exit(main())
