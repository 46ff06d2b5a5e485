"""Ctrl-C (SIGINT) and SIGTERM where work must not be cut anywhere: a graceful stop at the next
step boundary of training (:class:`StopRequest`, installed by ``Trainer.fit``), a section no
signal interrupts (:func:`signals_ignored`: a checkpoint save during a stop) and a section that
takes them when it ends (:func:`signals_deferred`: the swap of a test report)."""
from __future__ import annotations

import contextlib
import signal
from typing import Callable, Iterator, Optional


@contextlib.contextmanager
def stop_signals_to(handler):
    """SIGINT and SIGTERM go to ``handler`` inside, the previous handlers (yielded, by signal) come
    back after (main thread only; elsewhere a no-op)."""
    saved = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            saved[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread
        pass
    try:
        yield saved
    finally:
        for sig, previous in saved.items():
            signal.signal(sig, previous)


def signals_ignored():
    """SIGINT and SIGTERM ignored inside (a save that no signal may cut short)."""
    return stop_signals_to(signal.SIG_IGN)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends, then take effect (the first one, through the
    handler that was in place); main thread only, elsewhere a no-op."""
    caught = []
    with stop_signals_to(lambda num, frame: caught.append(num)) as previous:
        yield
    for num in caught[:1]:
        handler = previous.get(num)
        if callable(handler):
            handler(num, None)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(num)


class StopRequest:
    """Ctrl-C / SIGTERM during training, turned into a request to stop at a safe point.

    Inside :meth:`handling`, while :attr:`graceful` is true (the training steps of an epoch), the
    first signal only sets :attr:`requested`: the loop finishes its step and saves an exact
    mid-epoch state. A second Ctrl-C (SIGINT), or any signal while :attr:`graceful` is false
    (validation, saving), raises ``KeyboardInterrupt`` at once. A repeated SIGTERM is not a
    second request: SLURM sends it to every process of a job step, and torchrun forwards its own
    copy to its ranks, so one pre-emption reaches a rank twice. ``notice`` is called with a line
    on the first signal.
    """

    def __init__(self, notice: Optional[Callable[[str], None]] = None):
        self.requested: Optional[str] = None
        self.graceful = False
        self.notice = notice

    def _handler(self, signum, frame):
        name = signal.Signals(signum).name
        if self.graceful and self.requested is None:
            self.requested = name
            if self.notice is not None:
                self.notice(f"{name}: stopping after this step and saving last.pth (Ctrl-C again to stop at once)")
            return
        if self.graceful and signum == signal.SIGTERM:
            return  # the same stop, delivered again (see the class docstring)
        raise KeyboardInterrupt(name)

    def handling(self):
        """SIGINT and SIGTERM go to this request inside (main thread only; elsewhere a no-op)."""
        return stop_signals_to(self._handler)


__all__ = ["StopRequest", "signals_deferred", "signals_ignored", "stop_signals_to"]
