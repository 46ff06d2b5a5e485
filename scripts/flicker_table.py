#!/usr/bin/env python
"""How much infer.py --steady steadies a video's colour.

The command cans/cli/flicker_table.py, run from a clone (installed: cans-flicker-table);
its options and examples: --help.
"""
import os
import sys

# cans importable from a clone, without pip install -e .
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cans.cli.flicker_table import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
