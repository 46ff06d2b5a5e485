"""Result folders checked before any work: one line naming the option, never an ``OSError`` later.

``prepare_output_dir(path, what)`` creates ``path`` (and its parents) or raises
:class:`cans.config.ConfigError` naming ``what`` (the config key or command-line option the
folder came from, e.g. ``output_dir`` or ``--out``); ``check_output_file(path, what)`` does
the same for a file that will be written at the end (a JSON summary): its folder must be
creatable and the path must not be a folder.

A run that fails after making its folder must not leave it behind empty (``runs/<name>/`` of a
config with a bad data path, an empty ``--out``): ``with provisional_output_dir(path, what):``
prepares the folder and, when the block ends, removes the folders it created (``path`` and
missing parents) that are still empty; ``missing_folders`` and ``remove_empty_folders`` do
the same in two steps. A folder that existed before is never removed, nor one with anything in it.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, List, Sequence

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


def missing_folders(path: str) -> List[str]:
    """The folders that creating ``path`` would make: ``path`` and its missing parents, deepest
    first (absolute paths; empty when ``path`` exists)."""
    missing, folder = [], os.path.abspath(path)
    while not os.path.lexists(folder):
        missing.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return missing


def remove_empty_folders(folders: Sequence[str]) -> None:
    """Remove each of ``folders`` (deepest first, as :func:`missing_folders` lists them) that is
    empty (``os.rmdir``: never one with anything in it); stop at the first that is not."""
    for folder in folders:
        try:
            os.rmdir(folder)
        except FileNotFoundError:
            continue
        except OSError:  # not empty (or not ours to remove): its parents hold it
            return


@contextlib.contextmanager
def provisional_output_dir(path: str, what: str) -> Iterator[str]:
    """:func:`prepare_output_dir` for the block; when it ends (failed, or with nothing written),
    the folders it created that are still empty are removed again."""
    made = missing_folders(path)
    try:
        prepare_output_dir(path, what)
        yield path
    finally:
        remove_empty_folders(made)


def check_output_file(path: str, what: str) -> str:
    """Check that the file ``path`` can be written later (its folder is created now); return it."""
    if os.path.isdir(path):
        raise ConfigError(f"{what}: {path} is a folder; expected a file name")
    prepare_output_dir(os.path.dirname(os.path.abspath(path)), what)
    return path


__all__ = ["prepare_output_dir", "check_output_file", "missing_folders", "remove_empty_folders",
           "provisional_output_dir"]
