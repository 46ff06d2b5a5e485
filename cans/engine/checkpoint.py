"""Training checkpoints: atomic writes, RNG states, loading for resume.

A checkpoint is a ``dict`` saved with ``torch.save``:

``model`` (state_dict, no ``module.`` prefix), ``optimizer``, ``scheduler``, ``scaler``
(fp16 grad scaler or None), ``epoch`` (number of *completed* epochs), ``step`` (optimiser
steps done), ``best_metric`` / ``best_epoch`` (validation PSNR, dB), ``rng`` (python,
numpy, torch CPU, torch CUDA states), ``config`` (the resolved config), ``prior``
(the adaptive prior's gamma), ``nonfinite`` (count of skipped non-finite steps),
``history`` (initial / last validation metrics).

``cans.models.load_weights`` reads the ``model`` entry, so a checkpoint is also a
weights file for ``test.py`` and ``train.pretrained``.
"""
from __future__ import annotations

import os
import random
from typing import Any, Dict, Mapping

import numpy as np
import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or that does not fit the model / optimiser of the config.

    The message names the file and says what to do; the command-line entry points print it
    as one line (``cans.cli``)."""


def error_text(exc: BaseException) -> str:
    """The message of ``exc`` (a ``KeyError``'s without the quotes and escaped newlines of its str())."""
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)


def _flatten(d: Any, prefix: str = "") -> Dict[str, Any]:
    if not isinstance(d, Mapping):
        return {prefix: d}
    out: Dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def model_config_hint(obj: Any, cfg: Mapping[str, Any]) -> str:
    """When ``obj`` (a loaded checkpoint) records the config it was trained with, the ``model.*``
    keys whose values differ from ``cfg``'s, as ``--set`` overrides; else an empty string."""
    saved = obj.get("config") if isinstance(obj, Mapping) else None
    if not isinstance(saved, Mapping) or not isinstance(saved.get("model"), Mapping) or "model" not in cfg:
        return ""
    old, new = _flatten(saved["model"], "model"), _flatten(cfg["model"], "model")
    diff = [k for k in sorted(old) if k in new and old[k] != new[k]]
    if not diff:
        return ""
    fmt = lambda v: str(v).replace(" ", "")
    return ("the checkpoint was trained with " + ", ".join(f"{k}={fmt(old[k])}" for k in diff)
            + " (this config: " + ", ".join(f"{fmt(new[k])}" for k in diff) + "); add --set "
            + " ".join(f"{k}={fmt(old[k])}" for k in diff))


def capture_rng_state() -> Dict[str, Any]:
    """States of python's, numpy's and torch's (CPU and every CUDA device) generators."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of ``capture_rng_state``; a missing entry is left alone."""
    if not state:
        return
    if "python" in state:
        random.setstate(_as_python_state(state["python"]))
    if "numpy" in state:
        np.random.set_state(state["numpy"])
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        cuda_states = list(state["cuda"])[: torch.cuda.device_count()]
        for i, s in enumerate(cuda_states):
            torch.cuda.set_rng_state(s.cpu(), i)


def _as_python_state(obj):
    # torch.load(weights_only=False) keeps tuples; be lenient with lists too
    if isinstance(obj, list):
        return tuple(tuple(x) if isinstance(x, list) else x for x in obj)
    return obj


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save`` to ``path + '.tmp'``, flush it to disk, then ``os.replace`` onto ``path``.

    A write interrupted half-way (crash, Ctrl-C, full disk) leaves the previous ``path``
    untouched; the stale temporary file is removed when possible.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def load_checkpoint(path: str, map_location="cpu") -> Dict[str, Any]:
    """Read a training checkpoint written by ``atomic_torch_save``; clear errors for bad files."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        # our checkpoints hold RNG states (numpy arrays, tuples): not a weights-only file
        obj = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path} (truncated or not a torch file?): {exc}") from None
    if not isinstance(obj, dict) or "model" not in obj:
        raise CheckpointError(f"{path} is not a training checkpoint (no 'model' entry); "
                         "use train.pretrained to start from bare weights")
    missing = [k for k in ("optimizer", "epoch", "step") if k not in obj]
    if missing:
        raise CheckpointError(f"{path}: cannot resume from it, it lacks {missing}; "
                         "use train.pretrained to load its weights only")
    return obj


__all__ = ["CheckpointError", "atomic_torch_save", "capture_rng_state", "error_text", "load_checkpoint",
           "model_config_hint", "restore_rng_state"]
