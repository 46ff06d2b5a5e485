"""Prepare SID for training: cached packs, RGB targets, white-balance list files.

    python scripts/prepare_sid.py --data-path datasets/SID --camera Sony [--workers 8]

Expects <data-path>/<camera>/short and <data-path>/<camera>/long (the SID download) and the
official lists in datasets/lists/ (or --lists-dir). Resumable: finished files are skipped (also
after a full disk, which stops it with one line).
Details: cans/data/prepare.py and datasets/README.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Optional, Sequence

from ..config_checks import check_workers
from ..data.prepare import prepare_sid
from ..io.files import atomic_write_text
from ..outdirs import check_output_file
from .common import run_cli


def build_parser() -> argparse.ArgumentParser:
    """The command line of prepare_sid.py (also read by tests/test_docs_commands.py)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-path", required=True, help="SID folder holding <camera>/short and <camera>/long")
    p.add_argument("--camera", required=True, choices=["Sony", "Fuji"])
    p.add_argument("--lists-dir", default=None,
                   help="folder with the official <camera>_*_list.txt (default: datasets/lists of this repository)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all CPU cores)")
    p.add_argument("--summary-json", default=None, help="also write the summary to this JSON file")
    return p


def run(args: argparse.Namespace) -> int:
    """Prepare the set; 1 when some files failed."""
    t0 = time.time()
    check_workers(args.workers or 0, "--workers")  # before any process is started
    if args.summary_json:  # checked now, not after the whole preparation
        check_output_file(args.summary_json, "--summary-json")
    summary = prepare_sid(args.data_path, args.camera, lists_dir=args.lists_dir, workers=args.workers)
    print(f"done in {time.time() - t0:.1f} s")
    if args.summary_json:
        atomic_write_text(args.summary_json, json.dumps(summary, indent=2))
    return 1 if summary["failed"] else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.workers is not None and args.workers < 0:
        p.error(f"--workers must be >= 0, got {args.workers}")
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
