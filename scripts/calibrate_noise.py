#!/usr/bin/env python
"""Calibrate a camera's noise.

The command cans/cli/calibrate_noise.py, run from a clone (installed: cans-calibrate-noise);
its options and examples: --help.
"""
import os
import sys

# cans importable from a clone, without pip install -e .
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cans.cli.calibrate_noise import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
