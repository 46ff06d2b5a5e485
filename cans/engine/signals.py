"""Signals during training: SIGTERM handled like Ctrl-C, and a section no signal interrupts."""
from __future__ import annotations

import contextlib
import signal


@contextlib.contextmanager
def signals_ignored():
    """SIGINT and SIGTERM ignored inside (main thread only; elsewhere a no-op)."""
    saved = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            saved[sig] = signal.signal(sig, signal.SIG_IGN)
    except ValueError:  # not the main thread
        pass
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Inside, SIGTERM (torchrun stopping its workers, a cluster pre-empting a job) raises
    KeyboardInterrupt, so that training saves ``last.pth`` as on Ctrl-C (main thread only)."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


__all__ = ["signals_ignored", "sigterm_as_interrupt"]
