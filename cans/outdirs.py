"""Result folders checked before any work: one line naming the option, never an ``OSError`` later.

``prepare_output_dir(path, what)`` creates ``path`` (and its parents) or raises
:class:`cans.config.ConfigError` naming ``what`` (the config key or command-line option the
folder came from, e.g. ``output_dir`` or ``--out``); ``check_output_file(path, what)`` does
the same for a file that will be written at the end (a JSON summary): its folder must be
creatable and the path must not be a folder.
"""
from __future__ import annotations

import os

from .config import ConfigError


def prepare_output_dir(path: str, what: str) -> str:
    """Create the folder ``path`` when missing; return it. Raise ``ConfigError`` when ``path`` is a
    file, lies under a file, or cannot be created or written in."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{what}: {path} exists and is not a folder; choose another {what}")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot create the folder {path} ({exc.strerror or exc}); "
                          f"choose another {what}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{what}: cannot write in the folder {path} (permission denied); choose another {what}")
    return path


def check_output_file(path: str, what: str) -> str:
    """Check that the file ``path`` can be written later (its folder is created now); return it."""
    if os.path.isdir(path):
        raise ConfigError(f"{what}: {path} is a folder; expected a file name")
    prepare_output_dir(os.path.dirname(os.path.abspath(path)), what)
    return path


__all__ = ["prepare_output_dir", "check_output_file"]
