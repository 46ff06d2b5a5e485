#!/usr/bin/env python
"""What infer.py --precision bf16 changes in a photo.

The command cans/cli/precision_table.py, run from a clone (installed: cans-precision-table);
its options and examples: --help.
"""
import os
import sys

# cans importable from a clone, without pip install -e .
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cans.cli.precision_table import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
