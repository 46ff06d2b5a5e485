"""Data loader throughput: training crops (patch 1024) from full-size SID caches, mmap vs read-all.

    python scripts/benchmark_data.py [--samples 20] [--pairs 3] [--patch-size 1024]

Prints a table; the last line is JSON with mmap_samples_per_s, full_read_samples_per_s, speedup
(page cache warm) and the same with _cold (files dropped from the page cache before each sample).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from ..tools.loading_benchmark import run_benchmark
from .common import run_cli


def build_parser() -> argparse.ArgumentParser:
    """The command line of benchmark_data.py (also read by tests/test_docs_commands.py)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=20, help="training samples timed (mmap way; read-all does 1/4)")
    p.add_argument("--pairs", type=int, default=3, help="fake full-size pairs written (about 170 MB each)")
    p.add_argument("--patch-size", type=int, default=1024)
    p.add_argument("--folder", default=None, help="where to write the fake caches (default: a temporary folder)")
    p.add_argument("--no-cold", action="store_true", help="skip the cold page-cache measurement")
    return p


def report(args: argparse.Namespace) -> int:
    """Run the benchmark of the parsed ``args`` and print its table, then its JSON line."""
    res = run_benchmark(samples=args.samples, pairs=args.pairs, patch_size=args.patch_size, folder=args.folder,
                        cold=not args.no_cold)
    cold = "mmap_cold_samples_per_s" in res
    print(f"patch {res['patch_size']}, image {res['image']}, samples/s in the main process")
    print("| reading | page cache warm |" + (" page cache cold |" if cold else ""))
    print("|---|---|" + ("---|" if cold else ""))
    print(f"| memory-mapped caches (this project) | {res['mmap_samples_per_s']:.2f} |"
          + (f" {res['mmap_cold_samples_per_s']:.2f} |" if cold else ""))
    print(f"| whole caches read (reference) | {res['full_read_samples_per_s']:.2f} |"
          + (f" {res['full_read_cold_samples_per_s']:.2f} |" if cold else ""))
    print(f"| speedup | {res['speedup']:.1f}x |" + (f" {res['speedup_cold']:.1f}x |" if cold else ""))
    print(json.dumps(res))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: report(args))


if __name__ == "__main__":
    sys.exit(main())
