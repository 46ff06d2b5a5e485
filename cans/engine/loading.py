"""Loading a trained model for evaluation, inference and export: the device, the checkpoint's
path (checked before any work), the network with its weights. Below ``cans.evaluate``,
``cans.inference`` and ``cans.onnx_model``, which all load models the same way."""
from __future__ import annotations

import os
from typing import Any, Mapping, Optional

import torch

from ..data import dataset_class
from ..errors import TestSetupError
from ..models import build_model
from .checkpoint import CheckpointError, check_checkpoint_file, load_model_weights


def camera_name(cfg: Mapping[str, Any]) -> str:
    """``data.camera``, else the data set class's paper camera (Sony for one without)."""
    return cfg["data"].get("camera") or getattr(dataset_class(cfg), "paper_camera", None) or "Sony"


def default_checkpoint(cfg: Mapping[str, Any]) -> str:
    """``test.checkpoint``, else where the README puts the authors' weights:
    ``pretrained_weights/<model.type>/<camera>.pth``."""
    return cfg["test"].get("checkpoint") or os.path.join("pretrained_weights", cfg["model"]["type"],
                                                         f"{camera_name(cfg)}.pth")


def pick_device(name: Optional[str] = None) -> torch.device:
    """``name`` ('cpu', 'cuda', 'cuda:1', ...), else CUDA when available; a clear error for a bad name."""
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TestSetupError(f"--device {name}: not a device name; use cpu, cuda, cuda:N or mps") from None
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise TestSetupError(f"--device {name}: PyTorch's MPS backend is not available here (Apple silicon, "
                                 f"macOS 12.3 or later); use cpu")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise TestSetupError(f"--device {name}: {count} CUDA device(s) visible; use "
                                 + ("cpu" if count == 0 else f"cuda:0..cuda:{count - 1} or cpu"))
    return device


def check_amp(amp: Optional[str], device: torch.device) -> None:
    """fp16 autocast needs CUDA: one line otherwise."""
    if amp == "fp16" and device.type != "cuda":
        raise TestSetupError(f"test.amp: fp16 needs a CUDA device (this run uses {device}); use bf16 or off")


def check_checkpoint_path(checkpoint: str) -> None:
    """TestSetupError, one line, when ``checkpoint`` is a folder or no file (before any work)."""
    try:
        check_checkpoint_file(os.path.abspath(checkpoint), example="best.pth")
    except FileNotFoundError as exc:
        raise TestSetupError(f"{exc}. Pass --checkpoint PATH (a run's checkpoints/best.pth), or put the authors' "
                             "published weights there (see docs/testing.md).") from None
    except CheckpointError as exc:
        raise TestSetupError(str(exc)) from None


def load_model(cfg: Mapping[str, Any], checkpoint: str, device: torch.device, channels_last: bool = False):
    """The configured network with the weights of ``checkpoint`` (weights-only read, checksums
    checked), on ``device`` in eval mode; every failure one :class:`TestSetupError` line."""
    check_checkpoint_path(checkpoint)
    model = build_model(cfg)
    try:
        load_model_weights(model, checkpoint, cfg)
    except CheckpointError as exc:
        raise TestSetupError(str(exc)) from None
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


__all__ = ["camera_name", "check_amp", "check_checkpoint_path", "default_checkpoint", "load_model", "pick_device"]
