#!/usr/bin/env python
"""Regenerate docs/figures.md.

The command cans/cli/docs_figures.py, run from a clone (installed: cans-docs-figures);
its options and examples: --help.
"""
import os
import sys

# cans importable from a clone, without pip install -e .
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cans.cli.docs_figures import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
