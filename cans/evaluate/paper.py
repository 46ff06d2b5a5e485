"""The paper's SID Sony numbers (docs/testing.md, "The paper's numbers"), for ``test.py --compare-paper``.

``PAPER[method]`` holds ``{"reconstruction": (psnr, ssim), "denoising": {group: (psnr,
ssim)}}`` with groups ``x100``, ``x250``, ``x300`` and ``average`` (the mean of the three
group means, which is how the paper's "average" row is formed). Methods: ``CANS``,
``CANS_Plus`` (CANS++) and ``DNF`` (the earlier state of the art).
"""
from __future__ import annotations

from typing import Dict, Optional

PAPER: Dict[str, dict] = {
    "CANS": {
        "reconstruction": (30.658, 0.798),
        "denoising": {"x100": (42.137, 0.959), "x250": (40.231, 0.945), "x300": (37.442, 0.931),
                      "average": (39.937, 0.945)},
    },
    "CANS_Plus": {
        "reconstruction": (30.856, 0.799),
        "denoising": {"x100": (42.373, 0.960), "x250": (40.503, 0.947), "x300": (37.548, 0.933),
                      "average": (40.141, 0.947)},
    },
    "DNF": {
        "reconstruction": (30.616, 0.797),
        "denoising": {"x100": (42.127, 0.957), "x250": (39.496, 0.943), "x300": (36.971, 0.929),
                      "average": (39.531, 0.943)},
    },
}

DISPLAY_NAMES = {"CANS": "CANS", "CANS_Plus": "CANS++", "DNF": "DNF"}

# The paper reports SID Sony only.
PAPER_DATASET = "SID Sony"


def paper_numbers(model_type: str) -> Optional[dict]:
    """The paper's numbers for ``model.type`` (``CANS`` / ``CANS_Plus``), or None."""
    return PAPER.get(model_type)


__all__ = ["PAPER", "DISPLAY_NAMES", "PAPER_DATASET", "paper_numbers"]
