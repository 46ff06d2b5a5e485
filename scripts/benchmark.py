#!/usr/bin/env python
"""Train-step and inference speed per mode.

The command cans/cli/benchmark.py, run from a clone (installed: cans-benchmark);
its options and examples: --help.
"""
import os
import sys

# cans importable from a clone, without pip install -e .
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cans.cli.benchmark import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
