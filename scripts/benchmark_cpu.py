#!/usr/bin/env python
"""Inference speed on the CPU per runtime.

The command cans/cli/benchmark_cpu.py, run from a clone (installed: cans-benchmark-cpu);
its options and examples: --help.
"""
import os
import sys

# cans importable from a clone, without pip install -e .
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cans.cli.benchmark_cpu import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
