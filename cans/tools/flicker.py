"""How much ``--steady`` steadies a video's colour: the colour flicker of one RAW sequence enhanced
plainly and with shared statistics over several windows (``scripts/flicker_table.py``; the
figures in docs/inference.md).

The flicker is :func:`cans.video.colour_flicker` (the frame-to-frame standard deviation of the
mean R, G, B, in levels of 255), over all frames and over the frames from the largest window on
(where every steady window is full). Each setting also writes its MP4, to look at side by side.
"""
from __future__ import annotations

import os
from typing import Dict, List, Sequence

import numpy as np
import torch.nn as nn

from ..video import colour_flicker, enhance_sequence


def measure_flicker(model: nn.Module, files: Sequence[str], out_dir: str, ratio: float, device,
                    windows: Sequence[int] = (4, 8, 16), fps: float = 24.0, progress: bool = True,
                    **enhance_kwargs) -> List[Dict[str, float]]:
    """One row per setting (window 0: plain, then each of ``windows``): ``window``, ``flicker``,
    ``flicker_settled``, ``seconds_per_frame``, ``video``; the MP4s are written to ``out_dir``."""
    settle = max(windows) - 1 if windows else 0
    if settle >= len(files) - 1:
        raise ValueError(f"{len(files)} frames: the largest window ({max(windows)}) leaves fewer than 2 frames "
                         f"after it fills; use more frames or smaller windows")
    rows = []
    for window in (0, *windows):
        video = os.path.join(out_dir, "plain.mp4" if window == 0 else f"steady_{window}.mp4")
        result = enhance_sequence(model, files, video, ratio, device, fps=fps, steady=window, progress=progress,
                                  **enhance_kwargs)
        means = np.asarray(result["means"])
        rows.append({"window": window, "flicker": colour_flicker(means),
                     "flicker_settled": colour_flicker(means[settle:]),
                     "seconds_per_frame": result["seconds"] / max(result["frames"], 1), "video": video})
    return rows


def format_flicker_table(rows: Sequence[Dict[str, float]], frames: int) -> str:
    """The rows as a Markdown table (flicker in levels of 255; less is steadier)."""
    settle = max(r["window"] for r in rows)
    lines = ["| colour | flicker, all frames | flicker, frames " + f"{settle}-{frames} | vs plain | s per frame |",
             "|---|---:|---:|---:|---:|"]
    plain = rows[0]["flicker_settled"]
    for r in rows:
        name = "plain (each frame's own statistics)" if r["window"] == 0 else f"--steady {r['window']}"
        ratio = f"{r['flicker_settled'] / plain:.2f}x" if plain > 0 else "-"
        lines.append(f"| {name} | {r['flicker']:.3f} | {r['flicker_settled']:.3f} | {ratio} | "
                     f"{r['seconds_per_frame']:.2f} |")
    return "\n".join(lines) + "\n"


__all__ = ["format_flicker_table", "measure_flicker"]
