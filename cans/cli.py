"""Shared handling for the command-line entry points: user errors become one line and exit 2."""
from __future__ import annotations

import sys
from typing import Callable

from .config import ConfigError
from .data import DataError
from .engine.checkpoint import CheckpointError
from .engine.tester import TestSetupError
from .inference import InferenceError

# Errors caused by the user's input (config, data, files): print the message, no traceback.
USER_ERRORS = (ConfigError, DataError, CheckpointError, TestSetupError, InferenceError, FileNotFoundError)


def user_message(exc: BaseException) -> str:
    """The message of a user error; for one re-raised from a DataLoader worker (whose message
    carries the worker's traceback), only the original error's last line."""
    text = str(exc)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if ": " in last and "Error" in last.split(": ", 1)[0] else last
    return text


def run_cli(main: Callable[[], int]) -> int:
    """Run ``main()``; a user error prints ``error: <message>`` and returns 2, Ctrl-C returns 130."""
    try:
        return int(main() or 0)
    except USER_ERRORS as exc:
        print(f"error: {user_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
