#!/usr/bin/env python
"""Enhance your own dark RAW photos.

The command cans/cli/infer.py, run from a clone (installed: cans-infer);
its options and examples: --help.
"""
import os
import sys

# cans importable from a clone, without pip install -e .
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cans.cli.infer import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
