"""The resumable state of a training run: what a training checkpoint holds and how a resume restores it.

``cans.engine.checkpoint`` does the file work (atomic writes, clear read errors, RNG capture); this
module decides what a ``Trainer``'s checkpoint holds (:func:`capture_train_state`, which lists the
keys), how a resumed ``Trainer`` takes it back (:func:`restore_train_state`) and what a run stopped
outside its training steps saves (:func:`interrupt_state`). The functions read and set the
attributes of a ``cans.train.trainer.Trainer`` (model, optimizer, scheduler, scaler, prior, config,
rank and the run's counters), so a new counter must be added here to survive a resume.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping

import torch
import torch.nn as nn

from ..engine.checkpoint import CheckpointError, capture_rng_state, error_text, mismatch_text, restore_rng_state
from ..models import extract_state_dict, load_state_dict_strict, unwrap_model
from .schedule import sync_schedule
from .seeding import seed_everything

# the optimizer's own entries of a parameter group that a resume takes from the checkpoint
# (the learning rate is then set by sync_schedule); all other entries come from this config
_SAVED_GROUP_KEYS = ("params", "lr", "initial_lr")


def param_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> List[str]:
    """Parameter names in optimizer order (the order the optimizer state is saved in); ``"?"``
    for a parameter that is not one of ``model``'s (DDP / compile wrappers are looked through)."""
    names = {id(p): n for n, p in unwrap_model(model).named_parameters()}
    return [names.get(id(p), "?") for g in optimizer.param_groups for p in g["params"]]


def capture_train_state(trainer, gather_rng: bool = True) -> Dict[str, Any]:
    """Everything a resume needs, as the checkpoint dict. ``gather_rng`` collects every rank's
    RNG state (a collective call: all ranks must call it); without it ``rng_ranks`` is None.

    Keys: ``model`` (state_dict, no ``module.`` prefix), ``optimizer``, ``param_names`` (the
    parameter of each optimizer slot), ``scheduler``, ``scaler`` (fp16 grad scaler or None),
    ``epoch`` (*completed* epochs), ``step`` (optimiser steps), ``best_metric`` / ``best_epoch``
    (validation PSNR, dB), ``bad_validations`` (since the best, for ``train.early_stop``), ``rng``
    (this rank's python, numpy, torch CPU and CUDA states), ``rng_ranks`` and ``world_size``,
    ``config`` (resolved), ``prior``, ``nonfinite`` (skipped non-finite steps), ``history``
    (initial / last validation metrics), ``batches_done`` / ``epoch_sums`` (batches of epoch
    ``epoch + 1`` already trained and its running logged sums: a mid-epoch stop resumes at the next
    batch), ``end_pending`` (epoch ``epoch`` trained, its validation and saves not done).
    """
    rng = capture_rng_state()
    rng_ranks = None
    if gather_rng and trainer.world_size > 1:
        rng_ranks = [None] * trainer.world_size
        torch.distributed.all_gather_object(rng_ranks, rng)
    return {
        "model": unwrap_model(trainer.model).state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "param_names": param_names(trainer.model, trainer.optimizer),
        "scheduler": trainer.scheduler.state_dict(),
        "scaler": trainer.scaler.state_dict() if trainer.scaler.is_enabled() else None,
        "epoch": trainer.epoch,
        "step": trainer.step,
        "best_metric": trainer.best_metric,
        "best_epoch": trainer.best_epoch,
        "bad_validations": trainer.bad_validations,
        "rng": rng,
        "rng_ranks": rng_ranks,
        "world_size": trainer.world_size,
        "config": dict(trainer.cfg),
        "prior": trainer.prior.state_dict(),
        "nonfinite": trainer.nonfinite_total,
        "history": trainer.history,
        "batches_done": trainer.batches_done,
        "epoch_sums": {"sums": {k: float(v) for k, v in (trainer.epoch_sums.get("sums") or {}).items()},
                       "count": int(trainer.epoch_sums.get("count") or 0)} if trainer.epoch_sums else {},
        "end_pending": trainer.end_pending,
    }


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: Mapping[str, Any], path: str) -> None:
    """Load the optimizer state ``saved`` (read from ``path``) into ``optimizer``, keeping
    ``optimizer``'s own settings (betas, eps, weight decay, fused / foreach...): only the moments
    and ``lr`` / ``initial_lr`` come from the checkpoint. Raises CheckpointError naming ``path``
    when the state does not fit.

    The settings go into the saved groups *before* loading, because ``load_state_dict`` places
    each parameter's ``step`` by the group's ``fused`` / ``capturable`` flags: a checkpoint written
    without fused AdamW (the CPU, ``train.fast=false``) resumed with it must get ``step`` on the
    parameter's device, where the fused CUDA kernel reads it (left on the CPU it would be an
    illegal memory access); the reverse must get it back on the CPU (else host syncs every step).
    """
    groups = saved.get("param_groups") if isinstance(saved, Mapping) else None
    if isinstance(groups, list) and len(groups) == len(optimizer.param_groups):
        mine = [{k: v for k, v in g.items() if k not in _SAVED_GROUP_KEYS} for g in optimizer.param_groups]
        saved = dict(saved, param_groups=[dict(g, **m) if isinstance(g, Mapping) else g
                                          for g, m in zip(groups, mine)])
    try:
        optimizer.load_state_dict(saved)
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: the optimizer state does not fit this model/optimizer: "
                              f"{error_text(exc)}") from None


def restore_train_state(trainer, ckpt: Mapping[str, Any], path: str) -> None:
    """Resume ``trainer`` from ``ckpt``, a checkpoint dict read from ``path``: weights, optimizer,
    schedule, grad scaler, counters, adaptive prior, RNG. Raises CheckpointError (one message
    naming ``path``) when the checkpoint does not fit the model or the optimizer.

    The weights must fit the model exactly and the optimizer state must be for the same parameter
    order (:func:`param_names`); the AdamW moments come from the checkpoint, its hyper-parameters
    and the learning rate from this config (:func:`load_optimizer_state`, ``sync_schedule``); each
    rank gets its own RNG state back when the number of processes is unchanged.
    """
    try:
        load_state_dict_strict(unwrap_model(trainer.model), extract_state_dict(ckpt["model"], path), source=path)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"cannot resume: {mismatch_text(exc, ckpt, trainer.cfg)}") from None
    # AdamW's state is stored by parameter position: refuse one saved with another parameter order
    if ckpt.get("param_names") != param_names(trainer.model, trainer.optimizer):
        raise CheckpointError(f"cannot resume from {path}: its optimizer state was saved for another parameter "
                              f"order (a checkpoint from an earlier version of this code?); start a new run "
                              f"from its weights with --set train.pretrained={path}")
    # the moments come from the checkpoint, the hyper-parameters (betas, eps, weight decay)
    # from this config, as the learning rate (sync_schedule below)
    load_optimizer_state(trainer.optimizer, ckpt["optimizer"], path)
    if ckpt.get("scheduler") is not None:
        trainer.scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt.get("scaler") and trainer.scaler.is_enabled():
        trainer.scaler.load_state_dict(ckpt["scaler"])
    trainer.epoch = int(ckpt["epoch"])
    trainer.step = int(ckpt["step"])
    trainer.best_metric = float(ckpt.get("best_metric", -math.inf))
    trainer.best_epoch = ckpt.get("best_epoch")
    trainer.bad_validations = int(ckpt.get("bad_validations", 0))
    trainer.nonfinite_total = int(ckpt.get("nonfinite", 0))
    trainer.history = ckpt.get("history") or trainer.history
    # entries of checkpoints written since resumes became exact mid-epoch (older files: an epoch boundary)
    trainer.batches_done = int(ckpt.get("batches_done") or 0)
    trainer.epoch_sums = dict(ckpt.get("epoch_sums") or {})
    trainer.end_pending = bool(ckpt.get("end_pending", False))
    saved_lr, lr = sync_schedule(trainer.optimizer, trainer.scheduler, float(trainer.tcfg["base_lr"]), trainer.epoch)
    if abs(saved_lr - lr) > 1e-12 * max(abs(saved_lr), 1e-30):
        trainer.logger.info(f"learning rate of epoch {trainer.epoch + 1}: {lr:.4g} from this config's schedule "
                            f"(the checkpoint's schedule gave {saved_lr:.4g})")
    if ckpt.get("prior"):
        trainer.prior.load_state_dict(ckpt["prior"])
    _restore_rng(trainer, ckpt)


def _restore_rng(trainer, ckpt: Mapping[str, Any]) -> None:
    """This rank's saved RNG state when the number of processes is unchanged (one process: the
    ``rng`` entry); otherwise fresh per-rank streams from the seed, the rank and the epoch."""
    ranks = ckpt.get("rng_ranks")
    if ranks and ckpt.get("world_size") == trainer.world_size:
        restore_rng_state(ranks[trainer.rank])
    elif trainer.world_size == 1:
        restore_rng_state(ckpt.get("rng"))
    else:  # a different number of processes: fresh per-rank streams
        seed_everything(trainer.seed + trainer.rank + 7919 * trainer.epoch)


def interrupt_state(trainer) -> Dict[str, Any]:
    """The checkpoint dict for ``last.pth`` after an interrupt outside the training steps, with
    ``interrupted: True``. No collective calls (other ranks may already be gone), so
    ``rng_ranks`` is None; the samples draw from their own seeds, so the resume stays exact."""
    state = capture_train_state(trainer, gather_rng=False)
    state["interrupted"] = True
    return state


__all__ = ["capture_train_state", "interrupt_state", "load_optimizer_state", "param_names",
           "restore_train_state"]
