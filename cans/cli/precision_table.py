r"""What --precision bf16 changes: an export run in float32 and in bfloat16 (OpenVINO) on your RAW
files, compared on the 8-bit output.

    python scripts/precision_table.py --onnx runs/CANS_Plus_demo/checkpoints/best.onnx \
        datasets/synthetic_sid/Sony/short/ --out results/precision.md

Prints a Markdown table (8-bit PSNR of bfloat16 against float32, the largest difference in levels
of 255, the share of values that differ, seconds per file in each) and writes it with its JSON.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from ..inference import find_inputs
from ..outdirs import check_output_file
from ..tools.precision import compare_precisions, format_precision_table
from .common import run_cli, write_table


def build_parser() -> argparse.ArgumentParser:
    """The command line of precision_table.py (also read by tests/test_docs_commands.py)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="RAW files and/or folders of RAW files")
    p.add_argument("--onnx", required=True, metavar="MODEL.onnx", help="the export (scripts/export_onnx.py)")
    p.add_argument("--ratio", default="auto", help="a number, or auto (default) as infer.py picks it")
    p.add_argument("--threads", type=int, default=None, help="OpenVINO's CPU threads (default: its own)")
    p.add_argument("--out", default="results/precision.md", help="the table (and its .json beside it)")
    return p


def run(args: argparse.Namespace) -> int:
    files = find_inputs(args.inputs)
    check_output_file(args.out, "--out")
    ratio = args.ratio if args.ratio == "auto" else float(args.ratio)
    rows = compare_precisions(args.onnx, files, ratio, args.threads)
    table = format_precision_table(rows)
    print(table)
    write_table(args.out, table, rows)
    print(f"written: {args.out}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
