#!/usr/bin/env python
"""Prepare SID for training: cached packs, RGB targets, white-balance list files.

    python scripts/prepare_sid.py --data-path datasets/SID --camera Sony [--workers 8]

Expects <data-path>/<camera>/short and <data-path>/<camera>/long (the SID download) and the
official lists in datasets/lists/ (or --lists-dir). Resumable: finished files are skipped (also
after a full disk, which stops it with one line).
Details: cans/data/prepare.py and datasets/README.md.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cans.data.prepare import prepare_sid  # noqa: E402
from cans.outdirs import check_output_file  # noqa: E402


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


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.workers is not None and args.workers < 0:
        p.error(f"--workers must be >= 0, got {args.workers}")
    from cans.cli import run_cli
    from cans.config_checks import check_workers
    from cans.io.files import atomic_write_text

    def run() -> int:
        t0 = time.time()
        check_workers(args.workers or 0, "--workers")  # before any process is started
        if args.summary_json:  # checked now, not after the whole preparation
            check_output_file(args.summary_json, "--summary-json")
        summary = prepare_sid(args.data_path, args.camera, lists_dir=args.lists_dir, workers=args.workers)
        print(f"done in {time.time() - t0:.1f} s")
        if args.summary_json:
            atomic_write_text(args.summary_json, json.dumps(summary, indent=2))
        return 1 if summary["failed"] else 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
