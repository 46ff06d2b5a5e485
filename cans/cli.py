"""Shared handling for the command-line entry points: user errors become one line and exit 2."""
from __future__ import annotations

import sys
from typing import Callable

from .engine.checkpoint import trusted_checkpoints
from .engine.failures import compiler_failure, compiler_message
from .errors import USER_ERRORS, user_message


def add_trust_argument(parser) -> None:
    """``--trust-checkpoint``: the explicit opt-in for a weights file that PyTorch's weights-only
    loader refuses (``cans.engine.checkpoint.read_torch_file``); pass its value to :func:`run_cli`."""
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="load a checkpoint that holds Python objects besides weights (its loading can run "
                             "code from the file): only for files from a source you trust")


def add_set_argument(parser, help: str = "config overrides", groups: bool = False) -> None:
    """``--set KEY=VALUE ...``: config overrides, applied in order. Given more than once, every group
    counts (``args.set``: all the words, in order); ``groups``: a list per ``--set`` instead, for a
    caller that splits each group's trailing words off (scripts/infer.py's inputs)."""
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
