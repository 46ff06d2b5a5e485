"""Exclusive file locks, one rule for every folder the project guards: a training run's folder
(``cans.train.rundir.RunLock``) and a test report's stage and swap (``cans.evaluate.tester``).

A :class:`FileLock` is a POSIX record lock (``lockf``) on a lock file. The operating system drops
it when its process dies (``kill -9`` included), and, unlike ``flock``, DataLoader workers forked
from the holder do not inherit it, so an orphaned worker cannot keep a dead run's lock. POSIX
record locks do not exclude their own process, and closing *any* descriptor of the file drops
them, so this process's locks are kept in one table: a second lock of the same file from this
process is refused without opening the file again. Without ``fcntl`` (Windows) nothing is locked
and :attr:`FileLock.supported` is False.
"""
from __future__ import annotations

import os
from typing import IO, Dict, Optional

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

_HELD: Dict[str, "FileLock"] = {}  # real path of the lock file -> the lock this process holds on it


class FileLock:
    """An exclusive lock on the file ``path`` (created if missing, its contents left to the holder:
    :attr:`fh` is open for reading and writing)."""

    supported = fcntl is not None

    def __init__(self, path: str):
        self.path = path
        self.fh: Optional[IO[str]] = None

    @property
    def held(self) -> bool:
        return self.fh is not None

    def acquire(self, blocking: bool = False) -> bool:
        """Take the lock; False when another process (or another lock of this process) holds it,
        or the file system refuses. Without ``fcntl``: True, nothing locked."""
        if not self.supported:
            return True
        key = os.path.realpath(self.path)
        if key in _HELD:  # checked before opening: closing a descriptor of the file would drop that lock
            return False
        fh = open(self.path, "a+", encoding="utf-8")
        if not _lock(fh, blocking):
            fh.close()
            return False
        self.fh, self.key = fh, key
        _HELD[key] = self
        return True

    def acquire_new(self) -> None:
        """Create the lock file :attr:`path` already locked: it is made and locked under a temporary
        name, then renamed, so nobody ever sees it unlocked (a stage another process could take
        for a dead one's). Without ``fcntl`` the file is made, unlocked."""
        final = self.path
        self.path = final + ".new"
        open(self.path, "a").close()
        locked = self.acquire() and self.fh is not None
        os.replace(self.path, final)
        self.path = final
        if locked:
            del _HELD[self.key]
            self.key = os.path.realpath(final)
            _HELD[self.key] = self

    def read(self) -> str:
        """What the holder wrote in the lock file (the other process's, when :meth:`acquire` failed)."""
        held = _HELD.get(os.path.realpath(self.path))
        if held is not None:  # ours: read through its own descriptor (closing another drops the lock)
            held.fh.seek(0)
            return held.fh.read().strip()
        try:
            with open(self.path, encoding="utf-8") as fh:
                return fh.read().strip()
        except OSError:
            return ""

    def release(self) -> None:
        """Unlock and close (safe to call twice; the file stays: removing it would race with a
        process waiting for it)."""
        if self.fh is None:
            return
        try:
            fcntl.lockf(self.fh.fileno(), fcntl.LOCK_UN)
        except OSError:
            pass
        self.fh.close()
        self.fh = None
        _HELD.pop(self.key, None)


def held_by_someone(path: str) -> bool:
    """Whether the lock file ``path`` is locked now (by this process or another one); False for a
    missing file; True everywhere without ``fcntl`` (nothing can be known, so nothing is taken
    for dead). A free lock is taken and released at once to find out."""
    if not FileLock.supported:
        return True
    if not os.path.isfile(path):
        return False
    if os.path.realpath(path) in _HELD:
        return True
    probe = FileLock(path)
    if probe.acquire():
        probe.release()
        return False
    return True


def _lock(fh: IO[str], blocking: bool) -> bool:
    try:
        fcntl.lockf(fh.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        return True
    except OSError:
        return False


__all__ = ["FileLock", "held_by_someone"]
