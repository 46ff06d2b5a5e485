"""Run logging: a text log, TensorBoard scalars and images; only rank 0 writes.

Files in the run folder: ``train.log`` (the text log, appended across resumes) and
``tensorboard/`` (event files: ``tensorboard --logdir <output_dir>/tensorboard``).
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Mapping, Optional

import torch

_FMT = "%(asctime)s %(levelname)s %(message)s"


class _ConsoleFormatter(logging.Formatter):
    """``HH:MM:SS message``; warnings and errors get their level once (``WARNING: ...``)."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            stamp, _, rest = text.partition(" ")
            text = f"{stamp} {record.levelname}: {rest}"
        return text


class TqdmHandler(logging.StreamHandler):
    """Console handler that writes through ``tqdm.write``, so that a log line printed while a
    progress bar is open goes on its own line (also when the output is captured to a file)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm
            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except Exception:  # never let logging break training
            self.handleError(record)


class _KeepGoingFileHandler(logging.FileHandler):
    """``train.log``: a failing write (full disk, lost mount) is said once on stderr, in one line,
    and training goes on (logging's default prints a traceback for every record)."""

    failed = False

    def handleError(self, record: logging.LogRecord) -> None:
        if not self.failed:
            self.failed = True
            exc = sys.exc_info()[1]
            print(f"warning: cannot write {self.baseFilename} ({exc}); training goes on, the console still logs",
                  file=sys.stderr, flush=True)


class RunLogger:
    """Text + TensorBoard logger. On ranks other than 0 every method is a no-op.

    ``info(msg)`` / ``warning(msg)`` / ``error(msg)``: to the console (through ``tqdm.write``,
    so lines never land on a progress bar) and ``train.log`` (``time LEVEL message``).
    ``scalars(values, step, prefix)``: TensorBoard scalars ``prefix/name``.
    ``image(tag, img, step)``: an image tensor (3, H, W) in [0, 1].
    """

    def __init__(self, output_dir: Optional[str], enabled: bool = True, tensorboard: bool = True,
                 name: str = "cans.train"):
        self.enabled = enabled
        self.output_dir = output_dir
        self.writer = None
        self.log = logging.getLogger(f"{name}.{id(self)}")
        self.log.setLevel(logging.INFO)
        self.log.propagate = False
        if not enabled:
            self.log.addHandler(logging.NullHandler())
            return
        console = TqdmHandler(sys.stdout)
        console.setFormatter(_ConsoleFormatter("%(asctime)s %(message)s", "%H:%M:%S"))
        self.log.addHandler(console)
        if output_dir:
            os.makedirs(output_dir, exist_ok=True)
            fh = _KeepGoingFileHandler(os.path.join(output_dir, "train.log"), encoding="utf-8")
            fh.setFormatter(logging.Formatter(_FMT))
            self.log.addHandler(fh)
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                    self.writer = SummaryWriter(os.path.join(output_dir, "tensorboard"))
                except Exception as exc:  # tensorboard missing or broken: keep training
                    self.log.warning(f"TensorBoard disabled ({exc})")

    def info(self, msg: str) -> None:
        if self.enabled:
            self.log.info(msg)

    def warning(self, msg: str) -> None:
        if self.enabled:
            self.log.warning(msg)

    def error(self, msg: str) -> None:
        """An error that ends the run: to the console (stderr is the caller's) and ``train.log``."""
        if self.enabled:
            self.log.error(msg)

    def _tensorboard(self, write) -> None:
        """Run ``write(writer)``; a failure (full disk, ...) is one warning and TensorBoard goes off."""
        if self.writer is None:
            return
        try:
            write(self.writer)
        except Exception as exc:
            self.writer = None
            self.warning(f"TensorBoard off for the rest of the run: writing its events failed ({exc}); "
                         "training goes on")

    def scalars(self, values: Mapping[str, float], step: int, prefix: str = "") -> None:
        def write(writer):
            for key, value in values.items():
                if value is not None:
                    writer.add_scalar(f"{prefix}/{key}" if prefix else key, float(value), step)
        self._tensorboard(write)

    def image(self, tag: str, img: torch.Tensor, step: int) -> None:
        self._tensorboard(lambda writer: writer.add_image(tag, img.detach().float().clamp(0, 1).cpu(), step))

    def flush(self) -> None:
        self._tensorboard(lambda writer: writer.flush())

    def close(self) -> None:
        self._tensorboard(lambda writer: writer.close())
        self.writer = None
        for h in list(self.log.handlers):
            h.close()
            self.log.removeHandler(h)


__all__ = ["RunLogger"]
