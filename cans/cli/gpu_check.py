"""The GPU check's command line (``scripts/gpu_check.py``, ``bash scripts/gpu_check.sh``); the check
itself, its steps and its verdict: :mod:`cans.tools.gpu_check`, whose docstring is the ``--help`` text.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from ..tools import gpu_check
from ..tools.gpu_check import DEFAULT_DEADLINE, STEPS, UsageError, run_check


def _part(text: str):
    """``--part``: a number (checked against the parts by run_check) or ``all``."""
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a part number (--plan lists them) or all") from None


def build_parser() -> argparse.ArgumentParser:
    """The command line of gpu_check.py (also read by tests/test_docs_commands.py)."""
    parser = argparse.ArgumentParser(prog="scripts/gpu_check.py", description=gpu_check.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir", metavar="OUTDIR", nargs="?", help="where every log, JSON and the summary go")
    parser.add_argument("--part", type=_part, metavar="N",
                        help="run part N of the check (default 1; --plan lists the parts), or all: everything")
    parser.add_argument("--steps", nargs="+", choices=STEPS, metavar="STEP",
                        help="run these steps (and those they need) only, instead of a part; STEP: " + ", ".join(STEPS))
    parser.add_argument("--modes", nargs="+", metavar="MODE",
                        help="the benchmark's modes to check, instead of a part's (default: every mode the device "
                             "runs)")
    parser.add_argument("--deadline", type=float, metavar="SECONDS",
                        default=os.environ.get("GPU_CHECK_DEADLINE") or str(DEFAULT_DEADLINE),
                        help="start nothing after this many seconds, end what runs and write the report before it "
                             f"(default {DEFAULT_DEADLINE:.0f}: one command of 600 s; env GPU_CHECK_DEADLINE)")
    parser.add_argument("--plan", action="store_true",
                        help="print the parts, their steps and time limits, and exit (no OUTDIR, no GPU needed)")
    parser.add_argument("--rehearsal", action="store_true", default=os.environ.get("GPU_CHECK_REHEARSAL") == "1",
                        help="the steps on the CPU with tiny sizes, to check this tool (env GPU_CHECK_REHEARSAL=1)")
    parser.add_argument("--budget-scale", type=float, default=os.environ.get("GPU_CHECK_BUDGET_SCALE") or "1",
                        metavar="X", help="multiply every step's time limit by X (env GPU_CHECK_BUDGET_SCALE)")
    parser.add_argument("--data", default=os.environ.get("GPU_CHECK_DATA")
                        or os.path.join(os.environ.get("TMPDIR") or "/tmp", "cans_gpu_check_sid"),
                        help="where the demo's synthetic SID is made and kept (env GPU_CHECK_DATA)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)   # a GPU_CHECK_* default goes through type= too: a bad one is a one-line error
    if args.plan:
        print(gpu_check.describe_parts(), end="")
        return 0
    if args.outdir is None:
        parser.error("the following arguments are required: OUTDIR")
    if not args.budget_scale > 0:
        parser.error("--budget-scale must be > 0")
    try:
        return run_check(args.outdir, steps=args.steps, modes=args.modes, part=args.part, rehearsal=args.rehearsal,
                         budget_scale=args.budget_scale, deadline=args.deadline, data=args.data)
    except UsageError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    sys.exit(main())
