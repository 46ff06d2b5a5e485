#!/usr/bin/env python
"""Train CANS / CANS++.

The command cans/cli/train.py, run from a clone (installed: cans-train);
its options and examples: --help.
"""
import os
import sys

# cans importable from a clone, without pip install -e .
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cans.cli.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
