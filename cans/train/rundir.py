"""One run folder, one writer: the lock, what a new run may do with a folder that holds a run,
and the clean-up of temporary files that killed writers left behind.

- :class:`RunLock`: the lock on ``<output_dir>/.lock`` (``cans.io.locks``), held while a training
  run writes the folder; a second writer is refused with one line naming the holder (pid, host,
  start time). A dead holder's lock is gone with it, so a stale one is simply taken over, with a
  line naming the dead holder.
- :func:`resume_point`: a folder that already holds a run (a checkpoint or
  ``train_summary.json``) is resumed when asked (``--resume``, ``train.auto_resume``), and
  otherwise refused with one line naming both ways out; a run's results are never replaced.
- :func:`resume_folder`: a resume writes the run folder its checkpoint belongs to, never another
  run's.
- :func:`remove_leftovers`: ``*.tmp`` files of interrupted atomic writes.
"""
from __future__ import annotations

import glob
import os
import socket
import time
from typing import List, Optional

from ..config import ConfigError
from ..io.locks import FileLock

LOCK_FILE = ".lock"


class RunLock:
    """``with RunLock(folder) as lock:`` holds the folder's lock (``cans.io.locks.FileLock`` on
    ``<folder>/.lock``, which names its holder); ``lock.notice`` is a line to log (a stale lock
    taken over, or no locking on this system), or ``None``."""

    def __init__(self, folder: str):
        self.folder = folder
        self.lock = FileLock(os.path.join(folder, LOCK_FILE))
        self.notice: Optional[str] = None

    def acquire(self) -> "RunLock":
        if not FileLock.supported:
            self.notice = "this system has no fcntl: the run folder is not locked against a second writer"
            return self
        if not self.lock.acquire():
            holder = self.lock.read() or "another process"
            raise ConfigError(f"output_dir {self.folder} is in use by {holder}: one run writes a folder at a time; "
                              f"wait for it to end, or choose another output_dir (--set output_dir=...)")
        fh = self.lock.fh
        fh.seek(0)
        previous = fh.read().strip()
        if previous:  # its holder ended without releasing it: killed, or its machine went down
            self.notice = f"took over the run folder's lock from {previous}, which is no longer running"
        fh.seek(0)
        fh.truncate()
        fh.write(f"process {os.getpid()} on {socket.gethostname()} (started {time.strftime('%Y-%m-%d %H:%M:%S')})")
        fh.flush()
        return self

    def release(self) -> None:
        """Clear the holder's line and unlock."""
        fh = self.lock.fh
        if fh is not None:
            try:
                fh.seek(0)
                fh.truncate()
                fh.flush()
            except OSError:
                pass
        self.lock.release()

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def run_files(output_dir: str) -> List[str]:
    """The files that make ``output_dir`` hold a run: its checkpoints and its summary."""
    found = sorted(glob.glob(os.path.join(output_dir, "checkpoints", "*.pth")))
    summary = os.path.join(output_dir, "train_summary.json")
    return found + ([summary] if os.path.isfile(summary) else [])


def _same_folder(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def checkpoint_run_folder(checkpoint: str) -> Optional[str]:
    """The run folder ``checkpoint`` belongs to: the folder above its ``checkpoints/`` folder, or
    None for a file kept elsewhere (a copy, a download)."""
    parent = os.path.dirname(os.path.abspath(checkpoint))
    return os.path.dirname(parent) if os.path.basename(parent) == "checkpoints" else None


def resume_folder(resume: str, output_dir: str, default_dir: Optional[str] = None) -> str:
    """The folder a run resumed from ``resume`` writes: the run folder the checkpoint belongs to
    (:func:`checkpoint_run_folder`), so that ``--resume`` works as typed whatever ``output_dir``
    the config would give a new run, when that is the default (``default_dir``, ``runs/<name>``).
    A checkpoint kept outside a run folder writes ``output_dir``.

    Refused (:class:`ConfigError`, one line): a config that names another ``output_dir`` than the
    checkpoint's run folder, and a checkpoint from elsewhere resumed into a folder that holds a
    run: a checkpoint from another run never writes into a run's folder."""
    owner = checkpoint_run_folder(resume)
    if owner is not None:
        if _same_folder(owner, output_dir):
            return output_dir
        if default_dir is not None and _same_folder(output_dir, default_dir):
            return owner
        raise ConfigError(f"--resume {resume} belongs to the run folder {owner}, but output_dir is {output_dir}: a "
                          f"resume continues in its own run's folder; leave output_dir out or --set "
                          f"output_dir={owner} (to start a new run from its weights: --set train.pretrained={resume} "
                          f"output_dir=<new folder>, without --resume)")
    held = run_files(output_dir)
    if held:
        raise ConfigError(f"--resume {resume} is not one of the checkpoints of output_dir {output_dir}, which holds "
                          f"another run ({os.path.relpath(held[0], output_dir)}, ...): a checkpoint from another run "
                          f"never writes into a run's folder; choose a new folder with --set output_dir=<new folder>")
    return output_dir


def resume_point(output_dir: str, resume: Optional[str], auto_resume: bool) -> Optional[str]:
    """The checkpoint a run into ``output_dir`` starts from: ``resume`` when given (it must belong
    to ``output_dir``, :func:`resume_folder`); with ``auto_resume``, ``checkpoints/last.pth`` when
    present. A folder that holds a run and no resume asked for: :class:`ConfigError` naming
    ``--resume``, ``train.auto_resume`` and a new ``output_dir``."""
    if resume:
        resume_folder(resume, output_dir)
        return resume
    last = os.path.join(output_dir, "checkpoints", "last.pth")
    if auto_resume and os.path.isfile(last):
        return last
    held = run_files(output_dir)
    if held:
        names = ", ".join(os.path.relpath(p, output_dir) for p in held[:3]) + (", ..." if len(held) > 3 else "")
        how = (f"continue it with --resume {last} (or --set train.auto_resume=true)" if os.path.isfile(last)
               else "start from its weights with --set train.pretrained=<one of them>")
        raise ConfigError(f"output_dir {output_dir} already holds a run ({names}); {how}, or start a new run in "
                          f"another folder with --set output_dir=<new folder>: a run never replaces another's results")
    return None


def remove_leftovers(output_dir: str) -> List[str]:
    """Delete the ``*.tmp`` files of interrupted writes in ``output_dir`` and its ``checkpoints/``;
    return their names (call it only while holding the folder's lock)."""
    removed = []
    found = glob.glob(os.path.join(output_dir, "*.tmp")) + glob.glob(os.path.join(output_dir, "checkpoints", "*.tmp"))
    for path in found:
        try:
            os.remove(path)
            removed.append(os.path.relpath(path, output_dir))
        except OSError:
            pass
    return removed


__all__ = ["LOCK_FILE", "RunLock", "checkpoint_run_folder", "remove_leftovers", "resume_folder", "resume_point",
           "run_files"]
