r"""Cache your own camera's RAW pairs for RawPairDataset / XTransPairDataset (data.load_npy: true).

    python scripts/prepare_pairs.py --data-path datasets/my_camera --lists train_list.txt val_list.txt

Bayer files (data.type RawPairDataset) and Fuji X-Trans files (XTransPairDataset) alike: the kind
is that of an existing raw_pairs.json, else read from the first file (--sensor bayer / xtrans sets
it). Each list line is
`short_file long_file [ratio]`, paths relative to --data-path. Writes, next to
the files, `<folder>_pack/<file>.npy` (packed uint16 RAW) and `<folder>_post_int/<file>.npy`
(LibRaw's 16-bit rendering of the long files), plus `<data-path>/raw_pairs.json` with every file's
black / white levels, CFA, white balance, exposure and ISO. Files already cached are skipped; pairs
whose sizes, CFA or camera differ, or without a ratio in the list nor exposure times in the
metadata, are reported, and so are metadata ratios above --max-ratio (data.max_ratio, 300), which
the loader caps. See docs/own_camera.md and cans/data/rawpair.py.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def build_parser() -> argparse.ArgumentParser:
    """The command line of prepare_pairs.py (also read by tests/test_docs_commands.py)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-path", required=True, help="folder the list paths are relative to")
    p.add_argument("--lists", nargs="+", required=True, help="list files (relative to --data-path or absolute)")
    p.add_argument("--sensor", choices=["auto", "bayer", "xtrans"], default="auto",
                   help="bayer: 4-channel packing (data.type RawPairDataset); xtrans: 9-channel packing "
                        "(XTransPairDataset); auto (default): as an existing raw_pairs.json, else the colour "
                        "filter of the first file")
    p.add_argument("--xtrans", action="store_true", help="the same as --sensor xtrans")
    p.add_argument("--ratio-mode", choices=["exposure", "exposure_iso"], default="exposure",
                   help="as data.ratio_mode: the metadata ratio from exposure times (default), or times ISO")
    p.add_argument("--max-ratio", default=None, metavar="R",
                   help="as data.max_ratio (default 300; 'none': no cap): metadata ratios above it are reported, "
                        "since the loader amplifies those pairs by R only")
    p.add_argument("--workers", type=int, default=0, help="processes (default 0: in this process)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The parsed command line, checked beyond argparse; ``--max-ratio`` a number, 'none' or None."""
    p = build_parser()
    args = p.parse_args(argv)
    if args.workers < 0:
        p.error(f"--workers must be >= 0, got {args.workers}")
    if args.max_ratio is not None:
        if args.max_ratio.lower() in ("none", "null"):
            args.max_ratio = "none"
        else:
            try:
                args.max_ratio = float(args.max_ratio)
            except ValueError:
                p.error(f"--max-ratio: expected a number or 'none', got {args.max_ratio!r}")
            if not 1 <= args.max_ratio < float("inf"):
                p.error(f"--max-ratio must be at least 1 (or 'none'), got {args.max_ratio}")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    # imported here, not at the top: torch takes about 1.5 s to load, and --help needs none of it
    from ..config_checks import check_workers
    from ..data.rawpair import DEFAULT_MAX_RATIO, prepare_pairs
    from .common import run_cli

    def run() -> int:
        check_workers(args.workers, "--workers")  # before any process is started
        sensor = "xtrans" if args.xtrans else args.sensor
        max_ratio = {None: DEFAULT_MAX_RATIO, "none": None}.get(args.max_ratio, args.max_ratio)
        summary = prepare_pairs(args.data_path, args.lists, block_size={"auto": None, "bayer": 2, "xtrans": 3}[sensor],
                                workers=args.workers, progress=not args.no_progress, ratio_mode=args.ratio_mode,
                                max_ratio=max_ratio)
        return 1 if summary["failed"] or summary["bad_pairs"] else 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
