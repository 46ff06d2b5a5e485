"""Seeds: one call seeds Python, NumPy and PyTorch; per-epoch, per-rank DataLoader seeds.

The model is built right after :func:`seed_everything` on the CPU, so the seed fixes the initial
weights (docs/models.md, "Seeded initial weights").
"""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and PyTorch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def loader_seed(seed: int, epoch: int, rank: int) -> int:
    """The DataLoader generator's seed of ``epoch`` on ``rank``: reproducible crops after a resume."""
    return (seed * 1_000_003 + epoch * 10_007 + rank) % (2 ** 63)


__all__ = ["seed_everything", "loader_seed"]
