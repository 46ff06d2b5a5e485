#!/usr/bin/env python
"""Make a small synthetic SID.

The command cans/cli/make_synthetic_sid.py, run from a clone (installed: cans-make-synthetic-sid);
its options and examples: --help.
"""
import os
import sys

# cans importable from a clone, without pip install -e .
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cans.cli.make_synthetic_sid import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
