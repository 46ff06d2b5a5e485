"""Speed and memory of the model: one training step and one full-resolution inference.

Each *mode* is one configuration of the same model:

- ``plain``: float32 eager, TF32 off (what the reference computes);
- ``tf32``: float32 eager with TF32 matrix products and convolutions (CUDA);
- ``bf16``: bfloat16 autocast;
- ``channels_last``: float32 with channels-last memory format;
- ``compile``: ``torch.compile`` of the float32 model.

Times are medians over ``iters`` runs after ``warmup`` runs, with CUDA synchronisation.
FLOPs come from ``torch.utils.flop_counter`` (the training step counts forward and backward);
TFLOP/s = FLOPs / median time. Peak memory is ``torch.cuda.max_memory_allocated`` (null on CPU).
"""
from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any, Dict, Mapping, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..losses import build_loss
from ..models import build_model
from .evaluate import synchronize, autocast_context
from .trainer import build_optimizer

MODES = ("plain", "tf32", "bf16", "channels_last", "compile")


@contextlib.contextmanager
def _tf32(enabled: bool):
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _time(fn, device, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _peak_reset(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gb(device):
    return torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None


def benchmark_mode(cfg: Mapping[str, Any], mode: str, device: torch.device, patch: int,
                   full_size: Sequence[int], warmup: int = 3, iters: int = 10) -> Dict[str, Any]:
    """Measure one mode. ``patch`` is the Bayer training patch; ``full_size`` the packed (H, W) of inference."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    memory_format = torch.channels_last if mode == "channels_last" else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    run_model = torch.compile(model) if mode == "compile" else model
    amp = "bf16" if mode == "bf16" else "off"
    b, c = model.block_size, model.in_channel
    p = patch // b
    x = torch.rand(1, c, p, p, device=device).contiguous(memory_format=memory_format)
    targets = {"clean_raw": torch.rand(1, b * b, p, p, device=device),
               "clean_rgb": torch.rand(1, 3, p * b, p * b, device=device)}
    loss_fn = build_loss(cfg)
    optimizer = build_optimizer(model.parameters(), cfg["train"])
    clip = cfg["train"].get("clip_grad")

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with autocast_context(device, amp):
            out = run_model(x)
        loss = loss_fn.weighted_sum(loss_fn(out, targets))
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()

    h, w = full_size
    xf = torch.rand(1, c, h, w, device=device).contiguous(memory_format=memory_format)

    @torch.no_grad()
    def infer():
        with autocast_context(device, amp):
            run_model(xf)

    result: Dict[str, Any] = {"mode": mode}
    with _tf32(mode != "plain"):
        model.train()
        _peak_reset(device)
        result["train_step_ms"] = 1e3 * _time(train_step, device, warmup, iters)
        result["train_peak_gb"] = _peak_gb(device)
        model.eval()
        _peak_reset(device)
        result["infer_ms"] = 1e3 * _time(infer, device, warmup, iters)
        result["infer_peak_gb"] = _peak_gb(device)
    flops_train = FlopCounterMode(display=False)
    with flops_train:
        out = model(x)
        loss_fn.weighted_sum(loss_fn(out, targets)).backward()
    flops_infer = FlopCounterMode(display=False)
    with torch.no_grad(), flops_infer:
        model(xf)
    result["train_tflops"] = flops_train.get_total_flops() / (result["train_step_ms"] * 1e-3) / 1e12
    result["infer_tflops"] = flops_infer.get_total_flops() / (result["infer_ms"] * 1e-3) / 1e12
    return result


def run_benchmark(cfg, modes: Sequence[str], device: torch.device, patch: int, full_size: Sequence[int],
                  warmup: int = 3, iters: int = 10) -> Dict[str, Any]:
    results = [benchmark_mode(cfg, m, device, patch, full_size, warmup, iters) for m in modes]
    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "model": cfg["model"]["type"], "patch": patch,
            "full_size_packed": list(full_size), "warmup": warmup, "iters": iters, "results": results}
