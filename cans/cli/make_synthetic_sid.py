"""Make a small synthetic SID (real DNG files under SID's names, lists and caches); no download.

    python scripts/make_synthetic_sid.py --out datasets/synthetic_sid [--camera Sony] [--scenes 8] [--seed 0]
    python scripts/make_synthetic_sid.py --out datasets/synthetic_sid_fuji --camera Fuji
    python scripts/make_synthetic_sid.py --out datasets/synthetic_sid_fuji --camera Fuji --overwrite   # replace a set

See cans/synthetic/ for the inverse ISP and cans/noise/model.py for the noise model.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional, Sequence


def build_parser() -> argparse.ArgumentParser:
    """The command line of make_synthetic_sid.py (also read by tests/test_docs_commands.py)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder to create (must not exist or be empty, see --overwrite)")
    p.add_argument("--camera", default="Sony", choices=["Sony", "Fuji"],
                   help="Bayer (Sony) or X-Trans (Fuji) look-alike")
    p.add_argument("--scenes", type=int, default=8,
                   help="number of scenes (>= 3): 1/4 test, 1/8 validation, rest train")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--height", type=int, default=384, help="mosaic height in pixels")
    p.add_argument("--width", type=int, default=576, help="mosaic width in pixels")
    p.add_argument("--workers", type=int, default=0, help="processes for the caches (0 = in-process)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the synthetic set already at --out (only a folder this script made)")
    return p


def run(args: argparse.Namespace) -> int:
    """Make the set and print a line about it."""
    # imported here, not at the top: torch takes about 1.5 s to load, and --help needs none of it
    from ..config_checks import check_workers
    from ..synthetic import make_synthetic_sid

    check_workers(args.workers, "--workers")  # before any process starts
    t0 = time.time()
    info = make_synthetic_sid(args.out, camera=args.camera, scenes=args.scenes, seed=args.seed,
                              height=args.height, width=args.width, workers=args.workers,
                              overwrite=args.overwrite)
    splits = ", ".join(f"{k} {v} pairs" for k, v in info["splits"].items())
    print(f"synthetic {args.camera} SID at {os.path.abspath(args.out)}: {args.scenes} scenes "
          f"({info['height']}x{info['width']}), {splits}; {time.time() - t0:.1f} s")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.workers < 0:
        p.error(f"--workers must be >= 0, got {args.workers}")
    from .common import run_cli  # here, not at the top: see run

    return run_cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
