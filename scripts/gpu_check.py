#!/usr/bin/env python
"""The GPU check.

The command cans/cli/gpu_check.py, run from a clone (installed: cans-gpu-check);
its options and examples: --help.
"""
import os
import sys

# cans importable from a clone, without pip install -e .
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cans.cli.gpu_check import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
