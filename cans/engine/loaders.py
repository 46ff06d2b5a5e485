"""The Trainer's data loaders: shuffling, DDP shards and per-epoch worker seeds (resume-exact).

Batches are the sample dicts of ``cans.data`` stacked by the default collate. The training
loader shuffles with a generator reseeded at every epoch from (seed, epoch, rank)
(:func:`cans.engine.seeding.loader_seed`), so a run resumed at epoch ``e`` draws the crops the
uninterrupted run drew; under DistributedDataParallel a ``DistributedSampler`` splits the data
between ranks. Validation shards the set between ranks without padding
(:class:`cans.engine.distributed.ShardSampler`).
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..config import split_options
from ..data import loader_kwargs
from . import distributed as du
from .seeding import loader_seed


def loader_options(cfg: Mapping[str, Any], device: torch.device) -> Dict[str, Any]:
    """DataLoader keyword arguments of ``data:`` (workers, pinning, prefetch). In-memory datasets
    (a config without ``data:``, as in the tests) load in the main process. A deterministic run
    (``train.deterministic``) does not keep workers alive: they would keep the first epoch's seeds."""
    if "data" not in cfg:
        return {"num_workers": 0}
    kw = loader_kwargs(cfg, pin_memory=device.type == "cuda")
    if "persistent_workers" in kw and cfg["train"].get("deterministic"):
        kw["persistent_workers"] = False
    return kw


def _batch_size(cfg: Mapping[str, Any], split: str) -> int:
    opts = split_options(cfg, split) if "data" in cfg else {}
    return int(opts.get("batch_size") or 1)


class TrainLoader:
    """The training DataLoader (``.loader``) and its per-epoch seeding (:meth:`set_epoch`)."""

    def __init__(self, dataset: Dataset, cfg: Mapping[str, Any], device: torch.device, seed: int,
                 rank: int = 0, world_size: int = 1):
        self.seed, self.rank = seed, rank
        self.generator = torch.Generator()
        self.generator.manual_seed(loader_seed(seed, 0, rank))
        self.sampler: Optional[DistributedSampler] = None
        if world_size > 1:
            self.sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                              drop_last=False)
        self.loader = DataLoader(dataset, batch_size=_batch_size(cfg, "train"), sampler=self.sampler,
                                 shuffle=self.sampler is None, drop_last=False, generator=self.generator,
                                 **loader_options(cfg, device))

    def set_epoch(self, epoch: int) -> None:
        """Seeds of the shuffle and of the loader workers for (0-based) ``epoch``."""
        self.generator.manual_seed(loader_seed(self.seed, epoch, self.rank))
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)


def valid_loader(dataset: Dataset, cfg: Mapping[str, Any], device: torch.device, rank: int = 0,
                 world_size: int = 1) -> DataLoader:
    """The validation DataLoader: this rank's shard, in order, at most 2 workers."""
    kw = loader_options(cfg, device)
    kw["num_workers"] = min(kw["num_workers"], 2)
    return DataLoader(dataset, batch_size=_batch_size(cfg, "valid"),
                      sampler=du.ShardSampler(len(dataset), rank, world_size), **kw)


__all__ = ["TrainLoader", "loader_options", "valid_loader"]
