"""Speed, memory and fidelity of the model in each *mode* (float32, TF32, bf16, channels-last,
compiled, fused AdamW, CUDA graphs, the Triton kernel, the fast path): one training step and one
full-frame inference per mode, from the same initial weights, medians after warm-up runs.

docs/performance.md says what each mode is and what each field of the report means. A mode the
device cannot run reports ``skipped`` with the reason, one that fails ``error``, and the others
still run; on the CPU the compiled modes run only with ``cpu_compile`` (inductor takes minutes).
"""
from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..engine.fastpath import autocast_context, compile_model, plan_fast_path, synchronize
from ..evaluate.metrics import fidelity_psnr as rgb_psnr
from ..kernels import swap_rde_dwconv, triton_available
from ..models import build_model
from ..train.losses import build_loss
from ..train.schedule import build_optimizer


@dataclass(frozen=True)
class ModeSpec:
    tf32: bool = True  # TF32 convolutions (and matrix products, unless matmul_tf32 says otherwise)
    amp: str = "off"
    channels_last: bool = False
    compile: bool = False
    compile_mode: Optional[str] = None
    fused_adamw: bool = False
    triton_dwconv: bool = False
    cudnn_benchmark: bool = False
    matmul_tf32: Optional[bool] = None  # TF32 matrix products; None: as tf32
    needs_cuda: str = ""  # why the mode needs CUDA ("" = runs anywhere)


SPECS: Dict[str, ModeSpec] = {
    "plain": ModeSpec(tf32=False),
    "authors_flags": ModeSpec(cudnn_benchmark=True, matmul_tf32=False),
    "tf32": ModeSpec(),
    "bf16": ModeSpec(amp="bf16"),
    "channels_last": ModeSpec(channels_last=True),
    "compile": ModeSpec(compile=True),
    "fused_adamw": ModeSpec(fused_adamw=True),
    "cudagraphs": ModeSpec(compile=True, compile_mode="reduce-overhead",
                           needs_cuda="CUDA graphs need a CUDA device"),
    "bf16_compile": ModeSpec(amp="bf16", compile=True),
    "triton_dwconv": ModeSpec(triton_dwconv=True,
                              needs_cuda="the Triton kernel runs on CUDA (its correctness is tested on the CPU "
                                         "under TRITON_INTERPRET=1: tests/kernels/test_dwconv7.py)"),
    "bf16_triton": ModeSpec(amp="bf16", triton_dwconv=True,
                            needs_cuda="the Triton kernel runs on CUDA (its bfloat16 path is tested on a GPU: "
                                       "tests/test_cuda.py)"),
    "fast": ModeSpec(),  # replaced by the device's fast-path plan in mode_spec()
    "fast_triton": ModeSpec(triton_dwconv=True,  # the CUDA fast-path plan with the kernel, in mode_spec()
                            needs_cuda="the fast path with the Triton kernel is the CUDA plan (its compiled graph "
                                       "is tested on the CPU: tests/kernels/test_dwconv7.py)"),
}
MODES = tuple(SPECS)
TOP_KERNELS = 15


def mode_spec(mode: str, device: torch.device) -> ModeSpec:
    """The settings of ``mode`` on ``device`` (``fast`` and ``fast_triton`` follow :func:`plan_fast_path`)."""
    if mode not in SPECS:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode == "fast" or (mode == "fast_triton" and torch.device(device).type == "cuda"):
        plan = plan_fast_path(device, True, training=True)
        # fast_triton asks for the kernel even where Triton is missing: benchmark_mode then reports it
        # skipped instead of timing a second `fast`
        return ModeSpec(tf32=bool(plan.tf32), compile=plan.compile, compile_mode=plan.compile_mode,
                        fused_adamw=plan.fused_adamw, triton_dwconv=mode == "fast_triton",
                        cudnn_benchmark=bool(plan.cudnn_benchmark))
    return SPECS[mode]


@contextlib.contextmanager
def _flags(tf32: bool, matmul_tf32: Optional[bool] = None, cudnn_benchmark: bool = False):
    """TF32 for convolutions (``tf32``) and matrix products (``matmul_tf32``, default ``tf32``) and
    cuDNN's benchmark mode, restored afterwards."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = tf32 if matmul_tf32 is None else matmul_tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = cudnn_benchmark
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = old


def _error_line(exc: BaseException) -> str:
    """``Type: first line of the message``, for the JSON report."""
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _time(fn, device, warmup: int, iters: int):
    """(first call in s, median of ``iters`` calls after ``warmup`` further calls in s)."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    first = time.perf_counter() - start
    for _ in range(max(warmup - 1, 0)):
        fn()
    synchronize(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def _peak_reset(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gb(device):
    return torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None


def top_kernels(prof, device: torch.device, n: int = TOP_KERNELS) -> List[Dict[str, Any]]:
    """The ``n`` most expensive entries of a finished ``torch.profiler.profile`` (self device
    time on CUDA, self CPU time otherwise), as ``{name, calls, total_ms, mean_us}``."""
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    rows = [e for e in prof.key_averages() if getattr(e, attr, 0) > 0]
    rows.sort(key=lambda e: getattr(e, attr), reverse=True)
    return [{"name": e.key, "calls": int(e.count), "total_ms": getattr(e, attr) / 1e3,
             "mean_us": getattr(e, attr) / max(int(e.count), 1)} for e in rows[:n]]


def _profile(fn, device: torch.device, repeat: int) -> List[Dict[str, Any]]:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(repeat):
            fn()
        synchronize(device)
    return top_kernels(prof, device)


def _inputs(cfg: Mapping[str, Any], device, patch: int, full_size: Sequence[int]):
    """The training crop, its targets and the full-frame input: fixed by seed 1, the same for every mode."""
    b, c = int(cfg["model"]["block_size"]), int(cfg["model"]["in_channel"])
    p = patch // b
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(1, c, p, p, generator=gen)
    targets = {"clean_raw": torch.rand(1, b * b, p, p, generator=gen),
               "clean_rgb": torch.rand(1, 3, p * b, p * b, generator=gen)}
    xf = torch.rand(1, c, int(full_size[0]), int(full_size[1]), generator=gen)
    return x.to(device), {k: v.to(device) for k, v in targets.items()}, xf.to(device)


def benchmark_mode(cfg: Mapping[str, Any], mode: str, device: torch.device, patch: int,
                   full_size: Sequence[int], warmup: int = 3, iters: int = 10,
                   reference_rgb: Optional[torch.Tensor] = None, profile: bool = False,
                   cpu_compile: bool = False) -> Dict[str, Any]:
    """Measure one mode (see the module doc). ``patch`` is the Bayer training patch; ``full_size``
    the packed (H, W) of inference; ``reference_rgb`` the ``plain`` RGB output of the full frame;
    ``cpu_compile``: run the compile modes on the CPU too (skipped there by default)."""
    device = torch.device(device)
    spec = mode_spec(mode, device)
    result: Dict[str, Any] = {"mode": mode}
    if mode in ("fast", "fast_triton"):
        result["plan"] = plan_fast_path(device, True, training=True, triton_dwconv=mode == "fast_triton").describe()
    if spec.needs_cuda and device.type != "cuda":
        result["skipped"] = spec.needs_cuda
        return result
    if spec.compile and device.type == "cpu" and not cpu_compile:
        result["skipped"] = ("torch.compile on the CPU builds C++ kernels for minutes (over 8 min measured on 2 busy "
                             "cores); the compile modes are for CUDA: pass --cpu-compile to run them anyway")
        return result
    if spec.triton_dwconv:
        if not triton_available():
            result["skipped"] = "Triton is not installed"
            return result
    if spec.compile:
        # a fresh dynamo cache per compiled mode: the modes compile the same forward, and past
        # dynamo's recompile limit (8 entries per function) a later mode would silently run eagerly
        torch._dynamo.reset()
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    if spec.triton_dwconv:
        swap_rde_dwconv(model)
    fmt = torch.channels_last if spec.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    run_model = compile_model(model, plan_fast_path(device, False, compile=True, compile_mode=spec.compile_mode)) \
        if spec.compile else model
    x, targets, xf = _inputs(cfg, device, patch, full_size)
    x, xf = x.contiguous(memory_format=fmt), xf.contiguous(memory_format=fmt)
    loss_fn = build_loss(cfg)
    optimizer = build_optimizer(model.parameters(), cfg["train"], fused=spec.fused_adamw)
    clip = cfg["train"].get("clip_grad")
    graphs = spec.compile_mode == "reduce-overhead"

    def train_step():
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        optimizer.zero_grad(set_to_none=True)
        with autocast_context(device, spec.amp):
            out = run_model(x)
        loss = loss_fn.weighted_sum(loss_fn(out, targets))
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()

    @torch.no_grad()
    def infer():
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with autocast_context(device, spec.amp):
            return run_model(xf)

    with _flags(spec.tf32, spec.matmul_tf32, spec.cudnn_benchmark):
        model.eval()
        _peak_reset(device)
        start = time.perf_counter()
        rgb = infer()[0].float().cpu()  # before any step changes the weights
        result["infer_first_s"] = time.perf_counter() - start
        if reference_rgb is not None:
            result["rgb_psnr_vs_plain"] = rgb_psnr(rgb, reference_rgb)
            result["rgb_max_abs_diff_vs_plain"] = (rgb.double() - reference_rgb.double()).abs().max().item()
        del rgb
        result["infer_ms"] = 1e3 * _time(infer, device, max(warmup - 1, 0), iters)[1]
        result["infer_peak_gb"] = _peak_gb(device)
        model.train()
        _peak_reset(device)
        first, median = _time(train_step, device, warmup, iters)
        result["train_first_s"], result["train_step_ms"] = first, 1e3 * median
        result["train_peak_gb"] = _peak_gb(device)
        if profile:
            try:
                result["profile"] = {"train": _profile(train_step, device, 2)}
                model.eval()
                result["profile"]["infer"] = _profile(infer, device, 1)
            except Exception as exc:  # the profiler failing must not discard the timings above
                result["profile_error"] = _error_line(exc)
    return result


def count_flops(cfg: Mapping[str, Any], device: torch.device, patch: int, full_size: Sequence[int]):
    """(FLOPs of one training forward + backward, FLOPs of one full-frame inference), float32 eager."""
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    loss_fn = build_loss(cfg)
    x, targets, xf = _inputs(cfg, device, patch, full_size)
    counter = FlopCounterMode(display=False)
    with counter:
        loss_fn.weighted_sum(loss_fn(model(x), targets)).backward()
    train = counter.get_total_flops()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(xf)
    return train, counter.get_total_flops()


@torch.no_grad()
def plain_rgb(cfg: Mapping[str, Any], device: torch.device, patch: int, full_size: Sequence[int]) -> torch.Tensor:
    """``plain``'s RGB output of the benchmark's full-frame input (float32 eager, TF32 off), on the CPU."""
    torch.manual_seed(0)
    model = build_model(cfg).to(device).eval()
    _, _, xf = _inputs(cfg, device, patch, full_size)
    with _flags(False):
        return model(xf)[0].float().cpu()


def run_benchmark(cfg, modes: Sequence[str], device: torch.device, patch: int, full_size: Sequence[int],
                  warmup: int = 3, iters: int = 10, profile: bool = False, progress: bool = False,
                  cpu_compile: bool = False, budget_s: Optional[float] = None,
                  on_result: Optional[Callable[[Dict[str, Any]], None]] = None) -> Dict[str, Any]:
    """Every mode of ``modes`` on the same weights and inputs; a JSON-ready dict.

    ``budget_s``: a mode that would start more than ``budget_s`` seconds after this call began is
    reported ``skipped`` instead of run (put the modes that matter most first). ``on_result``
    is called with the report so far after each mode, so a caller can save what is measured
    before a run is cut short."""
    device = torch.device(device)
    for m in modes:
        mode_spec(m, device)  # unknown names fail before any work
    start = time.perf_counter()
    reference = plain_rgb(cfg, device, patch, full_size)
    train_flops, infer_flops = count_flops(cfg, device, patch, full_size)
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "cuda": torch.version.cuda, "model": cfg["model"]["type"],
              "patch": patch, "full_size_packed": list(full_size), "warmup": warmup, "iters": iters,
              "train_gflop": train_flops / 1e9, "infer_gflop": infer_flops / 1e9, "budget_s": budget_s,
              "results": []}
    iterator = modes
    if progress:
        from tqdm import tqdm
        iterator = tqdm(modes, desc="benchmark", unit="mode")
    for m in iterator:
        if progress:
            iterator.set_postfix_str(m)
        elapsed = time.perf_counter() - start
        if budget_s is not None and elapsed > budget_s:
            r = {"mode": m, "skipped": f"over the time budget: {elapsed:.0f} s had passed of {budget_s:.0f} s"}
        else:
            try:
                r = benchmark_mode(cfg, m, device, patch, full_size, warmup, iters, reference, profile, cpu_compile)
            except Exception as exc:  # one failing mode must not hide the others' numbers
                r = {"mode": m, "error": _error_line(exc)}
        if "train_step_ms" in r:
            r["train_tflops"] = train_flops / (r["train_step_ms"] * 1e-3) / 1e12
            r["infer_tflops"] = infer_flops / (r["infer_ms"] * 1e-3) / 1e12
        report["results"].append(r)
        report["wall_s"] = time.perf_counter() - start
        if on_result is not None:
            on_result(report)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return report


def format_table(report: Mapping[str, Any]) -> str:
    """The results as a Markdown table (one row per mode)."""
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    lines = [f"{report['model']} on {report['device']} (torch {report['torch']}), train patch {report['patch']}, "
             f"inference {report['full_size_packed'][0]}x{report['full_size_packed'][1]} packed", "",
             "| mode | train step ms | train peak GB | inference ms | inference peak GB | RGB PSNR vs plain (dB) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in report["results"]:
        if "train_step_ms" not in r:
            lines.append(f"| {r['mode']} | {r.get('skipped') and 'skipped: ' + r['skipped'] or 'error: ' + r['error']}"
                         " | | | | |")
            continue
        psnr = r.get("rgb_psnr_vs_plain")
        lines.append(f"| {r['mode']} | {r['train_step_ms']:.1f} | {f(r['train_peak_gb'], '.2f')} | "
                     f"{r['infer_ms']:.1f} | {f(r['infer_peak_gb'], '.2f')} | "
                     f"{'identical' if psnr is None and 'rgb_max_abs_diff_vs_plain' in r else f(psnr, '.1f')} |")
    return "\n".join(lines) + "\n"
