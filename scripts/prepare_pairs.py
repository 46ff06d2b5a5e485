#!/usr/bin/env python
"""Cache your own camera's RAW pairs.

The command cans/cli/prepare_pairs.py, run from a clone (installed: cans-prepare-pairs);
its options and examples: --help.
"""
import os
import sys

# cans importable from a clone, without pip install -e .
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cans.cli.prepare_pairs import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
