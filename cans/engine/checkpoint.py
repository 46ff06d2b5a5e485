"""Checkpoint files: atomic writes, safe reading with clear errors, RNG states, loading weights.

A training checkpoint is a ``dict`` saved with ``torch.save``; what it holds and how a resume
restores it is ``cans.train.state``. This module does the file work: write atomically,
fsynced, through a unique temporary name, with a one-line error on a full disk
(:func:`atomic_torch_save`); read a checkpoint or weights file with PyTorch's weights-only
unpickler, checking the archive's CRCs, and never run code from it unless the user opted in
(:func:`read_torch_file`, :func:`load_checkpoint`, :func:`load_model_weights`); capture and
restore the RNG states (python, numpy, torch CPU, torch CUDA).

:func:`load_model_weights` reads the ``model`` entry, so a checkpoint is also a
weights file for ``test.py`` and ``train.pretrained``.
"""
from __future__ import annotations

import contextlib
import contextvars
import io
import os
import random
import re
import sys
import warnings
import zipfile
from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch

from ..errors import CheckpointError, DiskFullError
from ..io.files import atomic_write_bytes
from ..models import extract_state_dict, load_state_dict_strict


def error_text(exc: BaseException) -> str:
    """The message of ``exc`` (a ``KeyError``'s without the quotes and escaped newlines of its str())."""
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)


def mismatch_text(exc: BaseException, obj: Any, cfg: Mapping[str, Any] = None) -> str:
    """The error of weights that do not fit the model. When the loaded checkpoint ``obj`` records
    its config, one line: the error's first line (the lists of missing / unexpected parameter
    names left out) and the ``--set model.*=...`` to add (:func:`model_config_hint`)."""
    hint = model_config_hint(obj, cfg) if cfg is not None else ""
    if not hint:
        return error_text(exc)
    return error_text(exc).splitlines()[0].rstrip(":") + "; " + hint


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
    saved_type = (saved.get("data") or {}).get("type") if isinstance(saved.get("data"), Mapping) else None
    this_type = (cfg.get("data") or {}).get("type")
    if saved_type and this_type and saved_type != this_type:
        # another camera: --set model.* alone would not fit the data (cans.config_checks)
        return (f"the checkpoint was trained on data.type {saved_type} (run {saved.get('name')}); this config "
                f"reads {this_type}: use a config for {saved_type} data")
    old, new = _flatten(saved["model"], "model"), _flatten(cfg["model"], "model")
    diff = [k for k in sorted(old) if k in new and old[k] != new[k]]
    if not diff:
        return ""
    def fmt(v):
        return str(v).replace(" ", "")
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


def atomic_torch_save(obj: Any, path: str, what: str = "") -> None:
    """``torch.save`` ``obj`` to memory, then :func:`atomic_write_bytes` onto ``path``.

    Serialising first makes a full disk a plain ``OSError`` (one line, :class:`DiskFullError`)
    rather than an error deep in torch's zip writer, and lets the free space be checked against
    the exact size before anything is written.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(buffer.getbuffer(), path, what)


def check_checkpoint_file(path: str, example: str = "last.pth") -> None:
    """Raise :class:`CheckpointError` when ``path`` is a folder (the message suggests
    ``<path>/checkpoints/<example>``) and ``FileNotFoundError`` when it is no file; cheap, so
    callers run it before any work."""
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint {path} is a folder; expected a .pth file (a run folder keeps them in "
                              f"checkpoints/, e.g. {os.path.join(path, 'checkpoints', example)})")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")


# ---------------------------------------------------------------------------------------
# Reading: weights-only unpickling, integrity, the explicit opt-in for anything else
# ---------------------------------------------------------------------------------------

#: what the opt-in is called where a refusal tells the user about it
TRUST_OPTION = "--trust-checkpoint (on the command line of train.py, test.py, scripts/infer.py ...)"

_TRUST: contextvars.ContextVar = contextvars.ContextVar("cans_trust_checkpoint", default=False)


@contextlib.contextmanager
def trusted_checkpoints(trust: bool = True):
    """Inside, :func:`read_torch_file` may load files that need the full unpickler (the command
    line's ``--trust-checkpoint``); outside, and by default, it never does."""
    token = _TRUST.set(bool(trust))
    try:
        yield
    finally:
        _TRUST.reset(token)


def _numpy_data_globals() -> list:
    """numpy's scalar, array and dtype constructors: data only, needed by RNG states (ours) and by
    a ``max_psnr`` saved as a numpy float (the authors' checkpoints)."""
    core = getattr(np, "_core", None) or np.core
    names = [core.multiarray.scalar, core.multiarray._reconstruct, np.ndarray, np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        names += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return names


@contextlib.contextmanager
def _numpy_allowed():
    if hasattr(torch.serialization, "safe_globals"):
        with torch.serialization.safe_globals(_numpy_data_globals()):
            yield
    else:  # torch 2.4: only the process-wide list
        torch.serialization.add_safe_globals(_numpy_data_globals())
        yield


def _unsafe_globals(path: str, exc: BaseException) -> list:
    """The globals a weights-only load refused: torch's scan of the file, else its error text."""
    try:
        found = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        if found:
            return found
    except Exception:
        pass
    return sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(exc))))


#: the most a checkpoint's compressed records may declare, as a multiple of the file's size, before
#: they are inflated: torch.save stores its records uncompressed, and weights (noise-like floats)
#: barely compress, so more is a file made to expand (4 MB declaring 4.85 GB took 211 s)
MAX_EXPANSION = 20
_EXPANSION_FLOOR = 1 << 20   # bytes any archive may declare (small compressed text records)


def _check_expansion(path: str, archive: zipfile.ZipFile, size: int) -> None:
    """:class:`CheckpointError` when the compressed records of ``archive`` declare more than
    :data:`MAX_EXPANSION` times the file's ``size`` (read from the zip directory: nothing inflated)."""
    packed = [info for info in archive.infolist() if info.compress_type != zipfile.ZIP_STORED]
    total = sum(info.file_size for info in packed)
    if total <= max(MAX_EXPANSION * size, _EXPANSION_FLOOR):
        return
    worst = max(packed, key=lambda info: info.file_size)
    raise CheckpointError(
        f"refusing checkpoint {path}: record {worst.filename} declares {worst.file_size:,} bytes compressed into "
        f"{worst.compress_size:,}, and the {size:,}-byte file would expand to {total:,} bytes (more than "
        f"{MAX_EXPANSION}x); torch.save writes weights uncompressed, so this is no checkpoint as saved: use the "
        f"original file")


def verify_archive(path: str) -> None:
    """Raise :class:`CheckpointError` when the zip archive ``path`` (PyTorch's file format) is
    truncated, declares far more data than a weights file holds (:func:`_check_expansion`, checked
    before anything is inflated) or one of its records fails its CRC check (``torch.load`` checks
    neither)."""
    size = os.path.getsize(path)
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"cannot read checkpoint {path}: truncated or damaged ({size:,} bytes, the end of "
                              "the file is missing); copy or download it again")
    try:
        with zipfile.ZipFile(path) as archive:
            _check_expansion(path, archive, size)
            bad = archive.testzip()
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError) as exc:
        bad = f"? ({exc})"
    if bad is not None:
        raise CheckpointError(f"cannot read checkpoint {path}: damaged (record {bad} fails its checksum); "
                              "copy or download it again")


def read_torch_file(path: str, map_location="cpu", trust: Optional[bool] = None) -> Any:
    """Load a checkpoint or weights file with PyTorch's weights-only unpickler; never run code from it.

    Raises ``FileNotFoundError`` for a missing file and :class:`CheckpointError` (one line naming
    ``path``) for an empty file, one that is not a PyTorch checkpoint, a truncated or damaged one
    (the zip records' CRCs are checked), and one that holds Python objects beyond tensors and
    plain data (its globals named). Such a file is loaded in full only with ``trust=True`` or
    inside :func:`trusted_checkpoints` (``--trust-checkpoint``), with a warning. numpy scalars,
    arrays and dtypes count as data (RNG states, the authors' ``max_psnr``).
    """
    check_checkpoint_file(path)
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is empty (not a checkpoint)")
    with open(path, "rb") as fh:
        head = fh.read(4)
    is_zip = head == b"PK\x03\x04"
    if is_zip:
        verify_archive(path)
    trust = _TRUST.get() if trust is None else trust
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notes on pickle protocols and weights_only
        try:
            with _numpy_allowed():
                return torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:
            refused = _unsafe_globals(path, exc) if "eights only" in str(exc) else []
            if not refused:
                if not is_zip and path.lower().endswith(".onnx"):
                    raise CheckpointError(f"cannot read checkpoint {path}: an ONNX export, not a PyTorch checkpoint; "
                                          f"run it with --onnx {path}") from None
                kind = "truncated or damaged" if is_zip else "not a PyTorch checkpoint"
                detail = str(exc).strip().splitlines()[0][:80] if str(exc).strip() else type(exc).__name__
                raise CheckpointError(f"cannot read checkpoint {path}: {kind} ({type(exc).__name__}: "
                                      f"{detail})") from None
        if not trust:
            raise CheckpointError(
                f"refusing to load {path}: besides weights it holds Python objects ({', '.join(refused[:6])}"
                f"{', ...' if len(refused) > 6 else ''}) whose loading could run code from the file; if you "
                f"trust where it came from, rerun with {TRUST_OPTION}")
        print(f"warning: loading {path} with the full unpickler ({', '.join(refused[:6])}): trusted by "
              "--trust-checkpoint", file=sys.stderr, flush=True)
        try:
            return torch.load(path, map_location=map_location, weights_only=False)
        except Exception as exc:
            raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: "
                                  f"{str(exc).strip()[:120]}") from None


def load_checkpoint(path: str, map_location="cpu", trust: Optional[bool] = None) -> Dict[str, Any]:
    """Read a training checkpoint written by ``atomic_torch_save``; clear errors for bad files."""
    obj = read_torch_file(path, map_location=map_location, trust=trust)
    if not isinstance(obj, dict) or "model" not in obj:
        raise CheckpointError(f"{path} is not a training checkpoint (no 'model' entry); "
                         "use train.pretrained to start from bare weights")
    missing = [k for k in ("optimizer", "epoch", "step") if k not in obj]
    if missing:
        raise CheckpointError(f"{path}: cannot resume from it, it lacks {missing}; "
                         "use train.pretrained to load its weights only")
    return obj


def load_model_weights(model, path: str, cfg: Mapping[str, Any] = None, trust: Optional[bool] = None) -> Any:
    """Load the weights of ``path`` (our checkpoints, the authors' published files) into ``model``.

    Every failure is a :class:`CheckpointError` naming ``path``: not a checkpoint, truncated
    (:func:`read_torch_file`), no state_dict inside, a state_dict of another network (no
    parameter name in common: one line), or one of this network with other settings (the
    missing / unexpected names or the shape, and, when the checkpoint records its config, the
    ``--set model.*=...`` to add). Returns the loaded object (the whole checkpoint).
    """

    obj = read_torch_file(path, trust=trust)
    try:
        state = extract_state_dict(obj, source=path)
    except ValueError:
        raise CheckpointError(f"{path}: a PyTorch file, but no model weights in it (neither a state_dict nor "
                              "one under 'model', 'state_dict' or 'params')") from None
    expected = model.state_dict()
    if state and not set(state) & set(expected):
        raise CheckpointError(f"{path}: weights of another network, not {type(model).__name__} (none of its "
                              f"{len(state)} tensors has a parameter name of this model)")
    try:
        load_state_dict_strict(model, state, source=path)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(mismatch_text(exc, obj, cfg)) from None
    return obj


__all__ = ["CheckpointError", "DiskFullError", "TRUST_OPTION", "atomic_torch_save", "capture_rng_state",
           "check_checkpoint_file", "error_text", "load_checkpoint", "load_model_weights", "mismatch_text",
           "model_config_hint", "read_torch_file", "restore_rng_state", "trusted_checkpoints", "verify_archive"]
