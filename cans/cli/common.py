"""What the commands share: user errors become one line and exit 2 (:func:`run_cli`), and the
options several commands take (``--set``, ``--trust-checkpoint``, ``--tile`` / ``--overlap`` /
``--one-pass``)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable

from ..engine.checkpoint import trusted_checkpoints
from ..engine.failures import compiler_failure, compiler_message
from ..errors import USER_ERRORS, user_message
from ..io.files import atomic_write_text
from ..tiling import DEFAULT_OVERLAP


def write_table(path: str, table: str, data: Any) -> str:
    """A measuring command's results: ``table`` (Markdown) at ``path`` and ``data`` as JSON beside it
    (``.json`` for ``.md``), each whole or not at all; returns the JSON's path."""
    json_path = os.path.splitext(path)[0] + ".json"
    atomic_write_text(path, table)
    atomic_write_text(json_path, json.dumps(data, indent=1))
    return json_path


def add_trust_argument(parser) -> None:
    """``--trust-checkpoint``: the explicit opt-in for a weights file that PyTorch's weights-only
    loader refuses (``cans.engine.checkpoint.read_torch_file``); pass its value to :func:`run_cli`."""
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="load a checkpoint that holds Python objects besides weights (its loading can run "
                             "code from the file): only for files from a source you trust")


def add_set_argument(parser, help: str = "config overrides", groups: bool = False) -> None:
    """``--set KEY=VALUE ...``: config overrides, applied in order. Given more than once, every group
    counts (``args.set``: all the words, in order); ``groups``: a list per ``--set`` instead, for a
    caller that splits each group's trailing words off (infer's inputs)."""
    parser.add_argument("--set", nargs="*", action="append" if groups else "extend", default=[],
                        metavar="KEY=VALUE", help=help + " (--set may be given more than once: all apply, in order)")


def run_cli(main: Callable[[], int], trust_checkpoint: bool = False) -> int:
    """Run ``main()``; a user error prints ``error: <message>`` and returns 2, a failing
    ``torch.compile`` prints one line naming the switch that avoids it and returns 1, Ctrl-C
    returns 130. ``trust_checkpoint`` (``--trust-checkpoint``) lets checkpoint reads inside
    ``main`` use the full unpickler when the weights-only one refuses a file."""
    try:
        with trusted_checkpoints(trust_checkpoint):
            return int(main() or 0)
    except USER_ERRORS as exc:
        print(f"error: {user_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if not compiler_failure(exc):
            raise
        why = compiler_message(exc)
        print(f"error: torch.compile failed on this machine ({why}); rerun with --set train.fast=false "
              f"test.fast=false to run without compiling (docs/performance.md)", file=sys.stderr)
        return 1


def tile_size(value: str):
    """``--tile``'s value: ``'auto'`` or a positive number of packed pixels (an argparse ``type``)."""
    if value == "auto":
        return value
    try:
        tile = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of packed pixels or 'auto', got {value!r}") from None
    if tile <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of packed pixels, got {tile}")
    return tile


def positive_gb(value: str) -> float:
    """A positive number of gigabytes (an argparse ``type``: ``--max-memory``)."""
    try:
        gb = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of gigabytes, got {value!r}") from None
    if not gb > 0 or gb == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of gigabytes, got {value}")
    return gb


def overlap_size(value: str) -> int:
    """``--overlap``'s value: packed pixels >= 0 (an argparse ``type``)."""
    try:
        overlap = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of packed pixels, got {value!r}") from None
    if overlap < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 packed pixels, got {overlap}")
    return overlap


def add_tile_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tile SIZE|auto``, ``--overlap PIXELS`` and ``--one-pass``, as test and infer take them
    (:mod:`cans.tiling`)."""
    parser.add_argument("--tile", default=None, type=tile_size, metavar="SIZE|auto",
                        help="run the network on tiles of SIZE x SIZE packed pixels (a Bayer tile of 512 covers "
                             "1024x1024 sensor pixels), or 'auto': the largest tile that fits the free GPU memory "
                             "(on the CPU: the memory bound, infer.py's --max-memory). Default: whole frames, retried "
                             "in tiles if the GPU runs out of memory; infer.py on the CPU: 'auto'")
    parser.add_argument("--overlap", type=overlap_size, default=DEFAULT_OVERLAP, metavar="PIXELS",
                        help="packed pixels shared by neighbouring tiles, blended linearly "
                             f"(default {DEFAULT_OVERLAP})")
    parser.add_argument("--one-pass", action="store_true",
                        help="tiles use their own colour statistics instead of the whole frame's (collected by a "
                             "first pass): half the time, further from the whole-frame result (docs/tiling.md)")
