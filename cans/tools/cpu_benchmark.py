"""Inference on the CPU, one mode per runtime, in one run (``scripts/benchmark_cpu.py``; docs/performance.md).

Modes: ``eager`` (PyTorch float32 eager: the reference every other mode is compared with),
``compile`` (``torch.compile``, inductor on the CPU), ``onnxruntime`` and ``openvino`` (the export
of :func:`cans.onnx_model.export_onnx` run by each runtime, as ``infer.py --onnx`` runs it) and
``openvino_bf16`` (the same with ``--precision bf16``: OpenVINO's bfloat16). Each
mode runs in a process of its own, so its peak memory (resident set) is its own and one mode's
buffers do not slow the next; the modes see the same seeded weights and input. Reported per mode:
median seconds per frame after warm-up, the one-off setup (export or compile), peak memory, and
the RGB PSNR against ``eager`` (:func:`cans.evaluate.metrics.fidelity_psnr`).
"""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..engine.checkpoint import load_model_weights
from ..evaluate.metrics import fidelity_psnr
from ..models import build_model
from ..onnx_model import OnnxModel, export_onnx, openvino_counters

MODES = ("eager", "compile", "onnxruntime", "openvino", "openvino_bf16")
#: the modes that run the export: runtime and precision
EXPORT_MODES = {"onnxruntime": ("onnxruntime", "f32"), "openvino": ("openvino", "f32"),
                "openvino_bf16": ("openvino", "bf16")}
#: below this RGB PSNR (dB) against eager a mode is not faithful and cannot be the default
FAITHFUL_PSNR = 60.0


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _peak_rss_gb() -> float:
    """This process's peak resident set (GB): ru_maxrss is KiB on Linux, bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2 ** 30 if sys.platform == "darwin" else 2 ** 20)


def _build(model_cfg: Mapping[str, Any], checkpoint: Optional[str], seed: int):
    import torch

    torch.manual_seed(seed)
    net = build_model(dict(model_cfg))
    if checkpoint:
        load_model_weights(net, checkpoint)
    return net.eval()


def _input(net, size: Sequence[int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((1, int(net.in_channel), int(size[0]), int(size[1])), dtype=np.float32)


def run_mode(mode: str, model_cfg: Mapping[str, Any], size: Sequence[int], work: str, *,
             checkpoint: Optional[str] = None, warmup: int = 1, iters: int = 3, seed: int = 0,
             threads: Optional[int] = None, counters: bool = False) -> Dict[str, Any]:
    """Run one mode in this process; the RGB output goes to ``<work>/<mode>.npy``. Returns the
    mode's fields (``seconds``: the timed runs, ``setup_s``, ``peak_rss_gb``; with ``counters``, an
    OpenVINO mode adds ``counters``: :func:`cans.onnx_model.openvino_counters` of one more run,
    after the timed ones and the peak)."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    net = _build(model_cfg, checkpoint, seed)
    x = _input(net, size, seed)
    setup = 0.0
    if mode == "eager":
        def run():
            with torch.no_grad():
                return net(torch.from_numpy(x))[0].numpy()
    elif mode == "compile":
        compiled = torch.compile(net, dynamic=False, backend="inductor")

        def run():
            with torch.no_grad():
                return compiled(torch.from_numpy(x))[0].numpy()
        start = time.perf_counter()
        run()   # the compile
        setup = time.perf_counter() - start
    elif mode == "export":   # a step of its own: its memory is not the runtimes'
        start = time.perf_counter()
        export_onnx(net, os.path.join(work, "model.onnx"))
        return {"setup_s": time.perf_counter() - start, "peak_rss_gb": _peak_rss_gb()}
    elif mode in EXPORT_MODES:   # as infer.py runs them (cans.onnx_model.OnnxModel)
        runtime, precision = EXPORT_MODES[mode]
        exported = OnnxModel(os.path.join(work, "model.onnx"), threads, runtime=runtime, precision=precision)

        def run():
            return exported.run_numpy(x)[0]
    else:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    for _ in range(warmup):
        out = run()
    seconds = []
    for _ in range(iters):
        start = time.perf_counter()
        out = run()
        seconds.append(time.perf_counter() - start)
    np.save(os.path.join(work, f"{mode}.npy"), np.asarray(out, dtype=np.float32))
    result = {"seconds": seconds, "setup_s": setup, "peak_rss_gb": _peak_rss_gb()}
    if counters and mode in EXPORT_MODES and EXPORT_MODES[mode][0] == "openvino":
        exported.release_memory()
        result["counters"] = openvino_counters(exported.path, x, threads, EXPORT_MODES[mode][1])
    return result


def _unavailable(mode: str) -> str:
    """Why ``mode`` cannot run here ('' when it can)."""
    import importlib.util

    needs = {"onnxruntime": ("onnxruntime", "onnx", "onnxscript"), "openvino": ("openvino", "onnx", "onnxscript"),
             "openvino_bf16": ("openvino", "onnx", "onnxscript")}
    missing = [m for m in needs.get(mode, ()) if importlib.util.find_spec(m) is None]
    return f"not installed: {', '.join(missing)}" if missing else ""


def run_cpu_benchmark(model_cfg: Mapping[str, Any], modes: Sequence[str], size: Sequence[int], *,
                      checkpoint: Optional[str] = None, warmup: int = 1, iters: int = 3, seed: int = 0,
                      threads: Optional[int] = None, timeout_s: float = 3600.0, counters: bool = False,
                      log=print) -> Dict[str, Any]:
    """Every mode in a child process, then each output compared with eager's; the report dict.
    ``eager`` always runs (first): it is the reference. ``counters``: see :func:`run_mode`."""
    import torch

    modes = ["eager"] + [m for m in modes if m != "eager"]
    report: Dict[str, Any] = {
        "cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": threads or torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(), "model": dict(model_cfg),
        "checkpoint": checkpoint, "packed_size": list(size), "warmup": warmup, "iters": iters,
        "date": time.strftime("%Y-%m-%d %H:%M"), "modes": {}}
    for name in ("onnxruntime", "openvino", "onnx"):
        try:
            report[name] = __import__(name).__version__
        except Exception:
            pass
    with tempfile.TemporaryDirectory(prefix="cans_cpu_bench_") as work:
        def child(mode: str) -> Dict[str, Any]:
            spec = json.dumps({"mode": mode, "model": dict(model_cfg), "size": list(size), "work": work,
                               "checkpoint": checkpoint, "warmup": warmup, "iters": iters, "seed": seed,
                               "threads": threads, "counters": counters})
            try:
                proc = subprocess.run(_child_command(spec), capture_output=True, text=True, timeout=timeout_s,
                                      cwd=_repo_root())
            except subprocess.TimeoutExpired:
                return {"error": f"timed out after {timeout_s:.0f} s"}
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                tail = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
                return {"error": tail[-1] if tail else f"exit status {proc.returncode}"}
            return json.loads(lines[-1])

        export = None
        for mode in modes:
            why = _unavailable(mode)
            if why:
                report["modes"][mode] = {"status": "skipped", "reason": why}
                log(f"{mode}: skipped ({why})")
                continue
            onnx_file = os.path.join(work, "model.onnx")
            if mode in EXPORT_MODES and export is None:
                log("export: torch.onnx.export of the model ...")
                export = child("export")
                if "error" not in export:
                    report["export"] = export
            if mode in EXPORT_MODES and not os.path.exists(onnx_file):
                report["modes"][mode] = {"status": "error", "error": f"export failed: {export.get('error')}"}
                continue
            log(f"{mode}: running (packed {size[0]}x{size[1]}, {warmup} warm-up + {iters} timed) ...")
            result = child(mode)
            if "error" in result:
                report["modes"][mode] = {"status": "error", "error": result["error"]}
                log(f"{mode}: error: {result['error']}")
                continue
            if mode in EXPORT_MODES:
                result["setup_s"] = export["setup_s"]
            result["median_s"] = statistics.median(result["seconds"])
            result["status"] = "ok"
            report["modes"][mode] = result
            log(f"{mode}: {result['median_s']:.2f} s per frame, peak {result['peak_rss_gb']:.1f} GB")
        _compare(report, work)
    return report


def _child_command(spec_json: str) -> List[str]:
    """The command that runs one mode (``spec_json``) in a process of its own."""
    return [sys.executable, "-m", "cans.tools.cpu_benchmark", spec_json]


def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _compare(report: Dict[str, Any], work: str) -> None:
    """Speed-up and RGB PSNR of each finished mode against eager; ``fastest_faithful``."""
    import torch


    modes = report["modes"]
    eager = modes.get("eager", {})
    if eager.get("status") != "ok":
        return
    ref = torch.from_numpy(np.load(os.path.join(work, "eager.npy")))
    best = None
    for mode, r in modes.items():
        if r.get("status") != "ok":
            continue
        out = torch.from_numpy(np.load(os.path.join(work, f"{mode}.npy")))
        r["speedup_vs_eager"] = eager["median_s"] / r["median_s"]
        r["rgb_psnr_vs_eager"] = None if mode == "eager" else fidelity_psnr(out, ref)
        r["max_abs_vs_eager"] = float((out - ref).abs().max())
        faithful = mode == "eager" or (r["rgb_psnr_vs_eager"] is None or r["rgb_psnr_vs_eager"] >= FAITHFUL_PSNR)
        r["faithful"] = faithful
        lower = EXPORT_MODES.get(mode, ("", "f32"))[1] != "f32"   # an option of lower precision, never the default
        if faithful and not lower and (best is None or r["median_s"] < modes[best]["median_s"]):
            best = mode
    report["fastest_faithful"] = best


def format_cpu_table(report: Mapping[str, Any]) -> str:
    """The report as a Markdown table, with the CPU and versions above it."""
    lines = [f"CPU: {report['cpu']} ({report['cores']} logical cores, {report['torch_threads']} PyTorch threads); "
             f"torch {report['torch']}" + (f", onnxruntime {report['onnxruntime']}" if "onnxruntime" in report else "")
             + (f", openvino {report['openvino']}" if "openvino" in report else "")
             + f"; packed {report['packed_size'][0]} x {report['packed_size'][1]}, model {report['model'].get('type')} "
             f"width {report['model'].get('width', 32)}; median of {report['iters']} after {report['warmup']} "
             f"warm-up; {report['date']}", "",
             "| mode | seconds per frame | vs eager | setup (export / compile) | peak memory | RGB PSNR vs eager |",
             "|---|---:|---:|---:|---:|---:|"]
    for mode, r in report["modes"].items():
        if r.get("status") != "ok":
            lines.append(f"| {mode} | {r.get('status')}: {r.get('reason') or r.get('error')} | | | | |")
            continue
        psnr = "reference" if mode == "eager" else (
            "identical" if r["rgb_psnr_vs_eager"] is None else f"{r['rgb_psnr_vs_eager']:.1f} dB")
        lines.append(f"| {mode} | {r['median_s']:.2f} | {r['speedup_vs_eager']:.2f}x | "
                     f"{r['setup_s']:.0f} s | {r['peak_rss_gb']:.1f} GB | {psnr} |")
    if report.get("fastest_faithful"):
        lines += ["", f"fastest faithful float32 mode (RGB PSNR >= {FAITHFUL_PSNR:g} dB): {report['fastest_faithful']}"]
    for mode, r in report["modes"].items():
        if r.get("counters"):
            lines += ["", *_counters_table(mode, r["counters"])]
    return "\n".join(lines) + "\n"


def _counters_table(mode: str, counters: Mapping[str, float], rows: int = 12) -> List[str]:
    """OpenVINO's per-layer counters of ``mode`` by operator type: the largest ``rows``, then the rest."""
    total = counters["total"]
    kinds = [(k, v) for k, v in counters.items() if k != "total"]
    lines = [f"{mode}: OpenVINO's per-layer counters, one run ({total:.2f} s in all)", "",
             "| operator (OpenVINO's name) | seconds | share |", "|---|---:|---:|"]
    for kind, seconds in kinds[:rows]:
        lines.append(f"| {kind} | {seconds:.3f} | {100 * seconds / total:.1f} % |")
    rest = sum(v for _, v in kinds[rows:])
    if rest:
        lines.append(f"| {len(kinds) - rows} others | {rest:.3f} | {100 * rest / total:.1f} % |")
    return lines


def _child(spec_json: str) -> int:
    spec = json.loads(spec_json)
    result = run_mode(spec["mode"], spec["model"], spec["size"], spec["work"], checkpoint=spec["checkpoint"],
                      warmup=spec["warmup"], iters=spec["iters"], seed=spec["seed"], threads=spec["threads"],
                      counters=spec["counters"])
    print(json.dumps(result), flush=True)
    return 0


__all__ = ["FAITHFUL_PSNR", "MODES", "cpu_name", "format_cpu_table", "run_cpu_benchmark", "run_mode"]


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))

