#!/usr/bin/env python
"""Export a trained model to ONNX for the CPU runtimes.

The command cans/cli/export_onnx.py, run from a clone (installed: cans-export-onnx);
its options and examples: --help.
"""
import os
import sys

# cans importable from a clone, without pip install -e .
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cans.cli.export_onnx import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
