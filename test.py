#!/usr/bin/env python
"""Test a CANS / CANS++ checkpoint.

The command cans/cli/test.py, run from a clone (installed: cans-test);
its options and examples: --help.
"""
import os
import sys

# cans importable from a clone, without pip install -e .
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cans.cli.test import main, parse_args  # noqa: E402, F401  (parse_args: tests/evaluate/test_tester.py)

if __name__ == "__main__":
    sys.exit(main())
