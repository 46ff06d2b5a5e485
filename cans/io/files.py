"""Writing files whole or not at all: the project's one way to write a result, cache or checkpoint.

A file is written to a uniquely named temporary file beside it (two writers never share one),
then renamed onto its name, so a reader sees the old file or the complete new one, never a part.
``durable`` writes (checkpoints, run records) are also flushed to disk with the folder, so a
power loss cannot undo the rename; a full disk is one :class:`cans.errors.DiskFullError` line.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import uuid
from typing import IO, Iterator

from ..errors import DiskFullError


def unique_temp_name(path: str) -> str:
    """``<path>.<pid>.<random>.tmp``: two writers of ``path`` never share a temporary file."""
    return f"{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"


_TEMP_NAME = re.compile(r"\.(\d+)\.[0-9a-f]{8}\.tmp$")


def remove_orphaned_temps(folder: str) -> int:
    """Remove the temporary files (:func:`unique_temp_name`) in ``folder`` whose writing process is
    gone: left by a writer killed mid-write (the workers of a terminated pool), they only take space;
    the files they were to replace are untouched. POSIX only (elsewhere nothing); returns how many."""
    if os.name != "posix":
        return 0
    removed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        match = _TEMP_NAME.search(name)
        if not match:
            continue
        try:
            os.kill(int(match.group(1)), 0)   # signal 0: only asks whether the process exists
            continue
        except ProcessLookupError:
            pass
        except OSError:   # another user's process: alive
            continue
        with contextlib.suppress(OSError):
            os.remove(os.path.join(folder, name))
            removed += 1
    return removed


def fsync_folder(folder: str) -> None:
    """Flush ``folder``'s entries (a rename into it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_free_space(folder: str, needed: int, what: str) -> None:
    """Raise :class:`DiskFullError` when ``folder`` has less than ``needed`` bytes (plus 1 %) free."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < needed * 1.01:
        raise DiskFullError(f"no space left in {folder} for {what}: {needed / 2 ** 20:,.1f} MiB needed, "
                            f"{free / 2 ** 20:,.1f} MiB free")


@contextlib.contextmanager
def atomic_writer(path: str, mode: str = "wb", durable: bool = False, what: str = "") -> Iterator[IO]:
    """``with atomic_writer(path) as fh:`` writes ``fh`` to a temporary file that replaces ``path``
    when the block ends without an error (and is removed otherwise). Text modes write UTF-8."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = unique_temp_name(path)
    text = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    try:
        with open(tmp, mode, **text) as fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(f"no space left in {directory} while writing {what or os.path.basename(path)}") \
                from None
        raise
    if durable:
        fsync_folder(directory)


def atomic_write_bytes(data, path: str, what: str = "", durable: bool = True) -> str:
    """Write ``data`` (bytes-like) to ``path`` atomically; the free space is checked first."""
    check_free_space(os.path.dirname(os.path.abspath(path)) or ".", len(data), what or os.path.basename(path))
    with atomic_writer(path, "wb", durable=durable, what=what) as fh:
        fh.write(data)
    return path


def atomic_write_text(path: str, text: str, durable: bool = False) -> str:
    """Write ``text`` to ``path`` atomically (UTF-8); returns ``path``."""
    with atomic_writer(path, "w", durable=durable) as fh:
        fh.write(text)
    return path


__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_writer", "check_free_space", "fsync_folder",
           "remove_orphaned_temps", "unique_temp_name"]
