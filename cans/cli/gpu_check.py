"""The GPU check's command line (``scripts/gpu_check.py``, ``bash scripts/gpu_check.sh``); the check
itself, its steps and its verdict: :mod:`cans.tools.gpu_check`, whose docstring is the ``--help`` text.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from ..tools import gpu_check
from ..tools.gpu_check import STEPS, UsageError, run_check


def build_parser() -> argparse.ArgumentParser:
    """The command line of gpu_check.py (also read by tests/test_docs_commands.py)."""
    parser = argparse.ArgumentParser(prog="scripts/gpu_check.py", description=gpu_check.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir", metavar="OUTDIR", help="where every log, JSON and the summary go")
    parser.add_argument("--steps", nargs="+", choices=STEPS, metavar="STEP",
                        help="run these steps (and those they need) only; STEP: " + ", ".join(STEPS))
    parser.add_argument("--modes", nargs="+", metavar="MODE",
                        help="the benchmark's modes to check (default: every mode the device runs)")
    parser.add_argument("--rehearsal", action="store_true", default=os.environ.get("GPU_CHECK_REHEARSAL") == "1",
                        help="every step on the CPU with tiny sizes, to check this tool (env GPU_CHECK_REHEARSAL=1)")
    parser.add_argument("--budget-scale", type=float, default=float(os.environ.get("GPU_CHECK_BUDGET_SCALE") or 1),
                        metavar="X", help="multiply every step's time limit by X (env GPU_CHECK_BUDGET_SCALE)")
    parser.add_argument("--data", default=os.environ.get("GPU_CHECK_DATA")
                        or os.path.join(os.environ.get("TMPDIR") or "/tmp", "cans_gpu_check_sid"),
                        help="where the demo's synthetic SID is made and kept (env GPU_CHECK_DATA)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.budget_scale > 0:
        parser.error("--budget-scale must be > 0")
    try:
        return run_check(args.outdir, steps=args.steps, modes=args.modes, rehearsal=args.rehearsal,
                         budget_scale=args.budget_scale, data=args.data)
    except UsageError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    sys.exit(main())
