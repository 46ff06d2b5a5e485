"""What ``--precision bf16`` changes in a photo: the export run by OpenVINO in float32 and in
bfloat16 on the same RAW files, compared on the 8-bit output (``scripts/precision_table.py``;
the figures in docs/performance.md)."""
from __future__ import annotations

import time
from typing import Dict, List, Sequence

import numpy as np
import torch

from ..evaluate.metrics import fidelity_psnr
from ..inference import enhance
from ..onnx_model import OnnxModel


def to_8bit(rgb: torch.Tensor) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> the 8-bit levels a PNG stores, as float32 in [0, 1]."""
    return torch.round(rgb.clamp(0, 1) * 255.0) / 255.0


def compare_precisions(onnx: str, files: Sequence[str], ratio="auto", threads=None) -> List[Dict[str, object]]:
    """Per file: the 8-bit PSNR of bfloat16's output against float32's, the largest difference in
    levels of 255, the share of values that differ, and each precision's seconds."""
    models = {p: OnnxModel(onnx, threads, runtime="openvino", precision=p) for p in ("f32", "bf16")}
    rows = []
    for path in files:
        out, seconds = {}, {}
        for precision, model in models.items():
            start = time.perf_counter()
            result = enhance(model, path, ratio, "cpu", log=lambda m: None)
            seconds[precision] = time.perf_counter() - start
            out[precision] = to_8bit(result["rgb"])
        diff = (out["bf16"] - out["f32"]).abs() * 255.0
        rows.append({"file": path, "size": list(out["f32"].shape[-2:]), "ratio": result["ratio"],
                     "psnr_8bit": fidelity_psnr(out["bf16"], out["f32"]), "max_levels": float(diff.max()),
                     "changed": float((diff > 0).float().mean()), "f32_s": seconds["f32"], "bf16_s": seconds["bf16"]})
    return rows


def format_precision_table(rows: Sequence[Dict[str, object]]) -> str:
    lines = ["| file | size | 8-bit PSNR bf16 vs f32 | largest difference | values changed | f32 s | bf16 s |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        psnr = "identical" if r["psnr_8bit"] is None else f"{r['psnr_8bit']:.1f} dB"
        lines.append(f"| {r['file']} | {r['size'][0]}x{r['size'][1]} | {psnr} | {r['max_levels']:.0f} levels | "
                     f"{100 * r['changed']:.2f} % | {r['f32_s']:.2f} | {r['bf16_s']:.2f} |")
    finite = [r["psnr_8bit"] for r in rows if r["psnr_8bit"] is not None]
    if finite:
        lines += ["", f"lowest 8-bit PSNR: {min(finite):.1f} dB; mean {float(np.mean(finite)):.1f} dB"]
    return "\n".join(lines) + "\n"


__all__ = ["compare_precisions", "format_precision_table", "to_8bit"]
