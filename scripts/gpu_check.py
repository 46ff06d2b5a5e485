"""The GPU check: prove the CUDA path on one GPU; a verdict that can fail (cans/tools/gpu_check.py).

    python scripts/gpu_check.py OUTDIR                       # every step
    python scripts/gpu_check.py OUTDIR --steps pytest demo   # some (and what they need)
    python scripts/gpu_check.py OUTDIR --rehearsal           # every step on the CPU, tiny sizes
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cans.tools.gpu_check import build_parser, main  # noqa: E402

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
