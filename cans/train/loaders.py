"""The Trainer's data loaders: shuffling, DDP shards and per-sample seeds (resume-exact).

Batches are the sample dicts of ``cans.data`` stacked by the default collate. The training
loader's order is a permutation drawn from (seed, epoch) (:class:`EpochSampler`), split between
ranks under DistributedDataParallel, and every sample's random crop and flips are drawn from
its own seed (seed, epoch, rank, position) (:class:`SeededSamples`), not from whatever state a
DataLoader worker has reached. So a run resumed at any batch of any epoch, with persistent
workers or none, draws exactly the samples the uninterrupted run drew. Validation shards the
set between ranks without padding (:class:`cans.engine.distributed.ShardSampler`).
"""
from __future__ import annotations

import random
from typing import Any, Dict, Iterator, Mapping, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..config import split_options
from ..data import loader_kwargs
from ..engine import distributed as du
from .seeding import loader_seed


def loader_options(cfg: Mapping[str, Any], device: torch.device) -> Dict[str, Any]:
    """DataLoader keyword arguments of ``data:`` (workers, pinning, prefetch). In-memory datasets
    (a config without ``data:``, as in the tests) load in the main process. Persistent workers
    keep exact resumes: the samples draw from their own seeds, not from the workers' state."""
    if "data" not in cfg:
        return {"num_workers": 0}
    return loader_kwargs(cfg, pin_memory=device.type == "cuda")


def _batch_size(cfg: Mapping[str, Any], split: str) -> int:
    opts = split_options(cfg, split) if "data" in cfg else {}
    return int(opts.get("batch_size") or 1)


def sample_seed(seed: int, epoch: int, rank: int, position: int) -> int:
    """The seed of the sample at ``position`` of ``rank``'s share of ``epoch`` (its crop and flips)."""
    return (loader_seed(seed, epoch, rank) * 6_364_136_223_846_793_005 + position * 1_442_695_040_888_963_407
            + 1) % (2 ** 63)


class EpochSampler(Sampler):
    """``(index, sample seed)`` pairs of one epoch for one rank, from any position on.

    The order is ``torch.randperm`` from (seed, epoch), the same on every rank; under DDP it is
    padded by wrapping to a multiple of ``world_size`` and rank ``r`` takes every
    ``world_size``-th index from ``r`` (every rank the same number of steps). :meth:`set_epoch`
    chooses the epoch and the position to start at (a resume in the middle of an epoch).
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def order(self) -> list:
        """This rank's indices of the whole epoch (from position 0)."""
        g = torch.Generator()
        g.manual_seed(loader_seed(self.seed, self.epoch, 0))
        order = torch.randperm(self.size, generator=g).tolist()
        if self.world_size > 1 and order:
            total = -(-len(order) // self.world_size) * self.world_size
            order = (order * (total // len(order) + 1))[:total][self.rank::self.world_size]
        return order

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        order = self.order()
        for position in range(self.start, len(order)):
            yield order[position], sample_seed(self.seed, self.epoch, self.rank, position)

    def __len__(self) -> int:
        per_rank = -(-self.size // self.world_size) if self.world_size > 1 else self.size
        return max(per_rank - self.start, 0)


class SeededSamples(Dataset):
    """``dataset[index]`` drawn with torch's, numpy's and Python's generators seeded from the
    sampler's seed; the caller's generator states are put back afterwards (the main process with
    ``num_workers: 0`` keeps its own streams)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Tuple[int, int]):
        index, seed = key
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            np.random.seed(seed % 2 ** 32)
            random.seed(seed)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


class TrainLoader:
    """The training DataLoader (``.loader``) over :class:`SeededSamples` in :class:`EpochSampler`
    order; :meth:`set_epoch` chooses the epoch and the batch to start at.

    Full batches only: an epoch's last partial batch is dropped (the epoch's permutation decides
    which samples, so another epoch draws them), as it would be a second input shape for the
    static-shape compiled training step, i.e. a second compile. A rank with fewer samples than
    a batch keeps its one partial batch. Resumes stay exact: a resume starts at a whole batch."""

    def __init__(self, dataset: Dataset, cfg: Mapping[str, Any], device: torch.device, seed: int,
                 rank: int = 0, world_size: int = 1):
        self.seed, self.rank = seed, rank
        self.batch_size = _batch_size(cfg, "train")
        self.sampler = EpochSampler(len(dataset), seed, rank, world_size)
        self.generator = torch.Generator()  # only the loader's own worker base seed (unused by the samples)
        self.generator.manual_seed(loader_seed(seed, 0, rank))
        self.loader = DataLoader(SeededSamples(dataset), batch_size=self.batch_size, sampler=self.sampler,
                                 drop_last=len(self.sampler) >= self.batch_size, generator=self.generator,
                                 **loader_options(cfg, device))

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Iterate (0-based) ``epoch`` from its batch ``start_batch`` on."""
        self.sampler.set_epoch(epoch, start_batch * self.batch_size)


def valid_loader(dataset: Dataset, cfg: Mapping[str, Any], device: torch.device, rank: int = 0,
                 world_size: int = 1) -> DataLoader:
    """The validation DataLoader: this rank's shard, in order, at most 2 workers."""
    kw = loader_options(cfg, device)
    kw["num_workers"] = min(kw["num_workers"], 2)
    return DataLoader(dataset, batch_size=_batch_size(cfg, "valid"),
                      sampler=du.ShardSampler(len(dataset), rank, world_size), **kw)


__all__ = ["EpochSampler", "SeededSamples", "TrainLoader", "loader_options", "sample_seed", "valid_loader"]
