"""The paper recipe's optimiser and learning-rate schedule (docs/training.md).

Epoch ``e`` (0-based) trains at ``lr(e) = min_lr + 0.5 (base_lr - min_lr)(1 + cos(pi e / E))``
(with ``warmup_epochs`` W > 0: ``base_lr (e + 1) / W`` for e < W, then the cosine over the
remaining E - W epochs); the scheduler is stepped once per epoch.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch


def cosine_lr(epoch: int, epochs: int, base_lr: float, min_lr: float, warmup_epochs: int = 0) -> float:
    """Learning rate of (0-based) ``epoch``: linear warm-up, then per-epoch cosine decay to ``min_lr``."""
    if warmup_epochs > 0 and epoch < warmup_epochs:
        return base_lr * (epoch + 1) / warmup_epochs
    span = max(1, epochs - warmup_epochs)
    t = min(max(epoch - warmup_epochs, 0), span)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * t / span))


def build_optimizer(params, train_cfg: Mapping[str, Any], fused: bool = False) -> torch.optim.Optimizer:
    """The optimiser of ``train.optimizer``; ``fused`` (CUDA parameters) picks the fused implementation."""
    opt = train_cfg.get("optimizer") or {}
    kind = opt.get("type", "AdamW")
    classes = {"AdamW": torch.optim.AdamW, "Adam": torch.optim.Adam}
    if kind not in classes:
        raise ValueError(f"train.optimizer.type: unknown optimizer {kind!r}; expected one of {sorted(classes)}")
    return classes[kind](params, lr=float(train_cfg["base_lr"]), betas=tuple(opt.get("betas", (0.9, 0.999))),
                         eps=float(opt.get("eps", 1e-8)), weight_decay=float(opt.get("weight_decay", 0.0)),
                         **({"fused": True} if fused else {}))


def build_scheduler(optimizer: torch.optim.Optimizer, train_cfg: Mapping[str, Any]):
    """A ``LambdaLR`` stepped once per epoch (``cosine`` or ``constant``)."""
    base = float(train_cfg["base_lr"])
    if base <= 0:
        raise ValueError(f"train.base_lr: expected a positive learning rate, got {base}")
    kind = (train_cfg.get("lr_scheduler") or {}).get("type", "cosine")
    if kind == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)
    if kind != "cosine":
        raise ValueError(f"train.lr_scheduler.type: unknown schedule {kind!r}; expected cosine or constant")
    epochs, min_lr = int(train_cfg["epochs"]), float(train_cfg["min_lr"])
    warm = int(train_cfg.get("warmup_epochs") or 0)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: cosine_lr(e, epochs, base, min_lr, warm) / base)


def sync_schedule(optimizer: torch.optim.Optimizer, scheduler, base_lr: float, epoch: int):
    """After a resume: set the lr of (0-based) ``epoch`` from this config's schedule.

    The optimiser state holds the lr the checkpoint's run set for that epoch; a run resumed with a
    changed ``train.epochs`` / ``base_lr`` / ``min_lr`` / ``warmup_epochs`` (e.g. to train longer)
    must follow the new schedule from its first epoch, not only from the second. Returns
    ``(the checkpoint's lr, the lr set)`` of the first parameter group."""
    saved = optimizer.param_groups[0]["lr"]
    scheduler.last_epoch = epoch
    scheduler.base_lrs = [base_lr] * len(optimizer.param_groups)
    for group, fn in zip(optimizer.param_groups, scheduler.lr_lambdas):
        group["initial_lr"] = base_lr
        group["lr"] = base_lr * fn(epoch)
    scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
    return saved, optimizer.param_groups[0]["lr"]


__all__ = ["cosine_lr", "build_optimizer", "build_scheduler", "sync_schedule"]
