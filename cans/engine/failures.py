"""Telling the failures of the machine from the user's: an error of ``torch.compile`` (the CUDA
fast path compiles by default; a broken compiler gets one line naming the switch that avoids it)
and a CUDA error (sticky: the device is unusable for the rest of the process)."""
from __future__ import annotations

import os

import torch

# where an exception raised inside the compiler (or the code it generated) comes from
_COMPILER_FILES = ("/torch/_dynamo/", "/torch/_inductor/", "/torch/_functorch/", "/triton/", "torchinductor_")


def compiler_failure(exc: BaseException) -> bool:
    """True for a failure of ``torch.compile``: a dynamo / inductor error (``TorchDynamoException``,
    which ``InductorError`` is) or a RuntimeError raised inside the compiler or the code it
    generated (the innermost frame of its traceback is there)."""
    from torch._dynamo.exc import TorchDynamoException  # here: importing dynamo costs every command 1 s

    if isinstance(exc, TorchDynamoException):
        return True
    if not isinstance(exc, RuntimeError) or isinstance(exc, torch.OutOfMemoryError):
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = tb.tb_frame.f_code.co_filename.replace(os.sep, "/") if tb is not None else ""
    return any(part in where for part in _COMPILER_FILES)


def cuda_failure(exc: BaseException) -> bool:
    """True for a CUDA error (``torch.AcceleratorError``; before PyTorch 2.8 a RuntimeError whose
    message starts with "CUDA error"), not for running out of memory, which the tiles handle."""
    if isinstance(exc, torch.OutOfMemoryError) or not isinstance(exc, RuntimeError):
        return False
    accelerator = getattr(torch, "AcceleratorError", None)
    if accelerator is not None and isinstance(exc, accelerator):
        return True
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return first.startswith(("CUDA error", "CUBLAS_STATUS", "cuDNN error", "CUDNN_STATUS"))


def compiler_message(exc: BaseException) -> str:
    """The compiler's own first line of ``exc`` (a :func:`compiler_failure`), without the backend's
    preamble ("backend='inductor' raised:")."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith("raised:"):
        lines = lines[1:]
    return lines[0] if lines else type(exc).__name__


__all__ = ["compiler_failure", "compiler_message", "cuda_failure"]
