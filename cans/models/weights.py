"""Weights: the state_dict inside a checkpoint (published ones, ours, DDP- or compile-saved), loaded strictly."""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn

WRAPPER_KEYS = ("model", "state_dict", "params", "params_ema")


def extract_state_dict(obj, source: str = "checkpoint") -> Mapping[str, torch.Tensor]:
    """Return the bare state_dict from a checkpoint object.

    Accepts a bare state_dict or one wrapped under ``model``, ``state_dict`` or
    ``params`` (nested wrappers too), and strips a ``module.`` prefix (DDP) or an
    ``_orig_mod.`` prefix (torch.compile).
    """
    depth = 0
    while isinstance(obj, Mapping) and depth < 4:
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        for key in WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
        else:
            raise ValueError(f"{source}: no state_dict found; expected a mapping of tensors or one "
                             f"wrapped under one of {list(WRAPPER_KEYS)}, got keys {sorted(obj)[:10]}")
        depth += 1
    if not isinstance(obj, Mapping):
        raise ValueError(f"{source}: expected a state_dict (mapping), got {type(obj).__name__}")
    out = {}
    for key, value in obj.items():
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare network under DistributedDataParallel and/or torch.compile wrappers (the ``module.``
    and ``_orig_mod.`` prefixes :func:`extract_state_dict` strips)."""
    for _ in range(4):
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            break
    return model


def load_state_dict_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "state_dict") -> None:
    target = model.state_dict()
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    if missing or unexpected:
        lines = [f"{source} does not match {type(model).__name__}:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        raise KeyError("\n".join(lines))
    for key, value in state.items():
        if tuple(value.shape) != tuple(target[key].shape):
            raise ValueError(f"{source}: parameter {key} has shape {tuple(value.shape)}, "
                             f"the model expects {tuple(target[key].shape)}")
    model.load_state_dict(state, strict=True)
