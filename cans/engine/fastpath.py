"""The CUDA fast path: one place that decides and applies the speed settings for a device.

``train.fast`` / ``test.fast`` (default ``true``) switch it; it acts on CUDA devices only, so a CPU
run is exactly what it was without it. On CUDA: TF32, ``cudnn.benchmark`` (not with
``train.deterministic``), ``torch.compile`` with static shapes when Triton is installed (evaluation
through :func:`compile_eval_model`), fused AdamW, and optionally (``triton_dwconv``) the RDE's
depthwise convolution as :mod:`cans.kernels.dwconv7`; ``fast: false`` is float32 eager with TF32 off.
``train.compile: true`` (the older switch) still compiles the training step on any device. What each
setting buys: docs/performance.md. :func:`plan_fast_path` only decides (a pure function of the device
and the switches, testable without a GPU); :func:`apply_fast_path` applies a plan to a model.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
import torch.nn as nn


@dataclass(frozen=True)
class FastPlan:
    """What the fast path does for one device. ``tf32`` None: the global flags are left alone."""
    device_type: str
    tf32: Optional[bool] = None
    cudnn_benchmark: Optional[bool] = None
    compile: bool = False
    compile_mode: Optional[str] = None
    fused_adamw: bool = False
    triton_dwconv: bool = False
    note: str = ""  # why a part of the fast path is off on this machine ("" = nothing is)

    @property
    def active(self) -> bool:
        return bool(self.tf32 or self.compile or self.fused_adamw or self.triton_dwconv)

    def describe(self) -> str:
        """One line for logs: what is on."""
        parts = ["TF32"] if self.tf32 else ["float32" + (" (TF32 off)" if self.tf32 is False else "")]
        if self.cudnn_benchmark:
            parts.append("cuDNN benchmark")
        if self.compile:
            parts.append("torch.compile" + (f" ({self.compile_mode})" if self.compile_mode else ""))
        if self.fused_adamw:
            parts.append("fused AdamW")
        if self.triton_dwconv:
            parts.append("Triton dwconv7")
        if not self.compile:
            parts.append("eager")
        return ", ".join(parts) + (f" ({self.note})" if self.note else "")

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def plan_fast_path(device, fast: bool = True, *, training: bool = False, compile: bool = False,
                   triton_dwconv: bool = False, deterministic: bool = False,
                   compile_mode: Optional[str] = None) -> FastPlan:
    """Decide the settings for ``device`` (a torch.device or its name; no GPU is touched).

    ``fast``: the config switch; ``compile``: the older ``train.compile`` key (compiles on any
    device); ``triton_dwconv``: also swap in the Triton depthwise kernel (CUDA only, needs Triton).
    """
    dtype = torch.device(device).type
    if dtype != "cuda":
        return FastPlan(dtype, compile=bool(compile), compile_mode=compile_mode if compile else None)
    if not fast:
        return FastPlan(dtype, tf32=False, cudnn_benchmark=not deterministic, compile=bool(compile),
                        compile_mode=compile_mode if compile else None)
    from ..kernels import triton_available

    # inductor generates Triton kernels on CUDA: without Triton (some platforms' torch wheels lack it)
    # torch.compile would fail at the first step, so the fast path runs eager there and says why
    has_triton = triton_available()
    return FastPlan(dtype, tf32=True, cudnn_benchmark=not deterministic, compile=has_triton,
                    compile_mode=compile_mode if has_triton else None, fused_adamw=training,
                    triton_dwconv=bool(triton_dwconv) and has_triton,
                    note="" if has_triton else "no torch.compile: on CUDA it needs Triton, which is not installed")


def plan_from_config(cfg: Mapping[str, Any], device, section: str) -> FastPlan:
    """The plan of ``cfg[section]`` (``'train'`` or ``'test'``) for ``device``."""
    opts = cfg[section]
    return plan_fast_path(device, bool(opts.get("fast", True)), training=section == "train",
                          compile=bool(opts.get("compile", False)), triton_dwconv=bool(opts.get("triton_dwconv")),
                          deterministic=bool(opts.get("deterministic", False)))


def set_backend_flags(plan: FastPlan) -> None:
    """Set the process-wide TF32 / cuDNN flags of ``plan`` (None leaves a flag as it is)."""
    if plan.tf32 is not None:
        torch.backends.cuda.matmul.allow_tf32 = plan.tf32
        torch.backends.cudnn.allow_tf32 = plan.tf32
    if plan.cudnn_benchmark is not None:
        torch.backends.cudnn.benchmark = plan.cudnn_benchmark


def compile_model(model: nn.Module, plan: FastPlan, backend: Optional[str] = None) -> nn.Module:
    """``torch.compile`` with static shapes; ``backend`` for tests. Static shapes keep the padding
    arithmetic of the model's forward plain Python integers (no symbolic shapes, no graph breaks);
    training compiles once for its crops."""
    kwargs: Dict[str, Any] = {"dynamic": False}
    if plan.compile_mode:
        kwargs["mode"] = plan.compile_mode
    if backend is not None:
        kwargs["backend"] = backend
    return torch.compile(model, **kwargs)


class EvalEntry(nn.Module):
    """The compiled part of an evaluation model: ``model.forward_padded`` (CANS, CANS++: the
    network on a frame already padded to its multiple), or ``model``'s forward for another model.

    Dynamo keeps its compiled graphs, and counts them against its recompilation limit, per
    function: compiled directly, validation's frame sizes would share ``model.forward``'s graphs
    with the training crops (and a test run's with every other caller). ``module`` is the model,
    so code that unwraps ``.module`` (DDP style) reaches it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.module = model
        self.padded = all(callable(getattr(model, name, None)) for name in ("forward_padded", "pad_run_crop"))

    def forward(self, x: torch.Tensor):
        return self.module.forward_padded(x) if self.padded else self.module(x)


class PaddedEval(nn.Module):
    """A CANS model for evaluation: its forward, with the network on the padded frame compiled.

    ``forward(x) -> (rgb, raw)`` as the model's (:meth:`pad_run_crop`): the reflect pad to the
    model's multiple and the final crop run eagerly around ``compiled`` (a compiled
    :class:`EvalEntry`), so its graph sees padded sizes only. Inside a graph with dynamic sizes,
    whether each pad is zero was a guard (the ``if`` that skips a zero pad, and the contiguity of
    the cropped views that AOTAutograd records), so each pattern of zero / non-zero pads traced a
    new graph until dynamo's limit of 8, then ran eagerly. ``module`` is the model."""

    def __init__(self, model: nn.Module, compiled: nn.Module):
        super().__init__()
        self.module = model
        self.compiled = compiled

    def forward(self, x: torch.Tensor):
        return self.module.pad_run_crop(x, self.compiled)


#: how :func:`compile_eval_model` compiles, for the logs
EVAL_SHAPES = ("static shapes for the first frame size, then dynamic shapes (the network compiles on the frame "
               "padded to the model's multiple; one or two more compiles cover the other sizes)")


def compile_eval_model(model: nn.Module, plan: FastPlan, backend: Optional[str] = None,
                       log=None) -> nn.Module:
    """``torch.compile`` of an evaluation model (validation, test.py, infer.py), inference only.

    Static shapes for the first frame size, then dynamic ones: PyTorch's automatic dynamic
    shapes (``dynamic=None``) recompile a size that differs from the one seen with symbolic
    sizes (the dimensions that changed), which the next sizes reuse: at most 3 graphs for any
    number of frame sizes, instead of one per size until dynamo's recompilation limit (8),
    after which it silently ran the rest eagerly. A CANS model compiles its network on the
    padded frame only (:class:`PaddedEval`): frames of the same padded size share a graph. The
    graphs are kept apart from training's by :class:`EvalEntry`. ``log``: says how it compiles."""
    kwargs: Dict[str, Any] = {"dynamic": None}
    if plan.compile_mode:
        kwargs["mode"] = plan.compile_mode
    if backend is not None:
        kwargs["backend"] = backend
    if log is not None:
        log(f"evaluation compiles with {EVAL_SHAPES}")
    entry = EvalEntry(model)
    compiled = torch.compile(entry, **kwargs)
    return PaddedEval(model, compiled) if entry.padded else compiled


def apply_fast_path(model: nn.Module, plan: FastPlan, *, backend: Optional[str] = None,
                    swap_kernels: bool = True, evaluation: bool = False) -> Tuple[nn.Module, FastPlan]:
    """Apply ``plan`` to ``model`` (already on its device): flags, kernel swap (in place, same
    parameters), compile (:func:`compile_eval_model` with ``evaluation``, else
    :func:`compile_model`). Returns ``(model to run, plan)``; the returned model is ``model``
    itself when nothing compiles. Checkpoints should keep saving the bare ``model``."""
    set_backend_flags(plan)
    if plan.triton_dwconv and swap_kernels:
        from ..kernels import swap_rde_dwconv
        swap_rde_dwconv(getattr(model, "module", model))
    if plan.compile:
        return (compile_eval_model(model, plan, backend) if evaluation else compile_model(model, plan, backend)), plan
    return model, plan


def fast_model_for_test(cfg: Mapping[str, Any], model: nn.Module, device, log=print) -> Tuple[nn.Module, FastPlan]:
    """``test.fast`` applied to an evaluation model (test.py, infer.py); says what it enabled."""
    plan = plan_from_config(cfg, device, "test")
    if plan.active:
        when = f"compiled with {EVAL_SHAPES}, about a minute each; " if plan.compile else ""
        log(f"speed: {plan.describe()} (test.fast; {when}--set test.fast=false for float32 eager)")
    return apply_fast_path(model, plan, evaluation=True)


def autocast_context(device: torch.device, amp: str = "off"):
    """``torch.autocast`` for ``amp`` in {'off', 'bf16', 'fp16'} (fp16 only on CUDA)."""
    if amp in (None, "off", False):
        return contextlib.nullcontext()
    if amp not in ("bf16", "fp16"):
        raise ValueError(f"amp: expected 'off', 'bf16' or 'fp16', got {amp!r}")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("amp: fp16 needs a CUDA device; use 'bf16' or 'off' on the CPU")
    return torch.autocast(device_type=device.type, dtype=dtype)


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (for timings); a no-op off CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


__all__ = ["EvalEntry", "FastPlan", "PaddedEval", "apply_fast_path", "autocast_context", "compile_eval_model",
           "compile_model", "fast_model_for_test", "plan_fast_path", "plan_from_config", "set_backend_flags",
           "synchronize"]
