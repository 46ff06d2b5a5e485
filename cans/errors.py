"""Every exception a user can cause, in one place.

Each one's message is one line naming the file, list line or config key and what was expected;
``cans.cli.common.run_cli`` prints it as ``error: <message>`` and exits 2 (the :data:`USER_ERRORS`).
``NonFiniteLossError`` and ``CompileFailure``-like errors are the run's, not the input's: exit 1.
"""
from __future__ import annotations


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file and dotted key."""


class DataError(ValueError):
    """Data that cannot be used: the message names the file (and line) and what was expected."""


class BadFileError(DataError):
    """A data file that exists but cannot be used (truncated, corrupt, not a RAW format LibRaw
    reads): preparing the data again fails on it again, so the advice is to replace it or to
    leave its pair out with ``data.skip_bad_files: true``."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or that does not fit the model / optimiser of the config."""


class DiskFullError(CheckpointError):
    """No space left for a file being written; the previous version of that file is untouched."""


class TestSetupError(RuntimeError):
    """A test run that cannot start (no weights, no test list, ...)."""

    __test__ = False  # not a pytest test class


class InferenceError(ValueError):
    """A photo that infer.py cannot enhance (unreadable, not a mosaic, ...)."""


class NonFiniteLossError(RuntimeError):
    """Too many non-finite losses in a row, non-finite weights, or a non-finite validation; the
    message names the epoch / step, the checkpoint kept and the likely key to change."""


#: errors caused by the user's input: one line, exit 2
USER_ERRORS = (ConfigError, DataError, CheckpointError, TestSetupError, InferenceError, FileNotFoundError)


def user_message(exc: BaseException) -> str:
    """The message of a user error; for one re-raised from a DataLoader worker (whose message
    carries the worker's traceback), only the original error's last line."""
    text = str(exc)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if ": " in last and "Error" in last.split(": ", 1)[0] else last
    return text


__all__ = ["BadFileError", "CheckpointError", "ConfigError", "DataError", "DiskFullError", "InferenceError",
           "NonFiniteLossError",
           "TestSetupError", "USER_ERRORS", "user_message"]
