"""The command layer: one module per command (``build_parser()`` and ``main(argv=None) -> int``),
behind ``train.py``, ``test.py`` and ``scripts/*.py`` and the ``cans-*`` entry points.

Every command line of the project is parsed here; the library below takes explicit parameters.
Shared pieces (one-line user errors, ``--set``, ``--trust-checkpoint``, the tile options) are in
:mod:`cans.cli.common`. This file imports nothing, so a command whose ``--help`` needs no torch
stays fast.
"""
