"""Data: SID (Sony, Fuji), MCR, own-camera and clean-frame loaders, preparation helpers.

The data sets register themselves (``cans.registry.DATASETS``): ``data.type`` names one, or a
class of your own as ``package.module:Class`` (docs/extending.md). ``build_dataset(cfg, split)``
builds a split, ``build_dataloader(cfg, split)`` its evaluation loader (the training loader is
``cans.train.loaders``). Samples are dicts, see :mod:`cans.data.base`. This package reads data and
never makes any: the synthetic sets and ``data.synthetic.auto_create`` are :mod:`cans.synthetic`'s.
"""
from __future__ import annotations

import os
import random
import signal
import threading
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..cfa import pack_bayer, pack_xtrans
from ..config import split_options
from ..io.raw import read_bayer
from ..registry import DATASETS
from .base import PairDataset
from .cleanframes import CleanFrameDataset
from .errors import DataError
from .mcr import MCRDictSet
from .rawpair import RawPairDataset, XTransPairDataset
from .sid import FujiDictSet, SonyDictSet

#: what a data set class must provide (the contract of docs/extending.md)
REQUIRED_FACTS = ("packed_channels", "block_size")


def dataset_class(cfg: Mapping[str, Any]) -> type:
    """The class of ``data.type`` (registered, or ``package.module:Class``), its facts checked."""
    cls = DATASETS.get(cfg["data"]["type"])
    missing = [a for a in REQUIRED_FACTS if not isinstance(getattr(cls, a, None), int)]
    if missing:
        raise DataError(f"data.type: {cfg['data']['type']} lacks the class attribute(s) {', '.join(missing)} "
                        f"(ints: packed channels 4 or 9, block size 2 or 3; docs/extending.md)")
    return cls


def auto_create_ignored(cfg: Mapping[str, Any]) -> bool:
    """Whether ``data.synthetic.auto_create`` is ignored (with a note) rather than refused: the data
    set is a class of the user's own (``package.module:Class``) with no synthetic stand-in (its
    ``synthetic`` attribute), which reads its own data; a config inheriting the demo's key runs."""
    return ":" in cfg["data"]["type"] and getattr(dataset_class(cfg), "synthetic", None) is None


def build_dataset(cfg: Mapping[str, Any], split: str, log: Callable[[str], None] = print) -> Dataset:
    """The data set of ``split`` ('train', 'valid' or 'test') from the resolved config: an in-tree
    class through its ``from_config``, a user's class as ``Class(cfg, split)``."""
    if split not in ("train", "valid", "test"):
        raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")
    cls = dataset_class(cfg)
    if hasattr(cls, "from_config"):
        return cls.from_config(cfg, split, log=log)
    return cls(cfg, split)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def start_workers(loader: DataLoader):
    """``iter(loader)``, its worker processes started with SIGINT and SIGTERM ignored until
    ``_worker_init`` takes over: a stop sent to the whole process group (Ctrl-C, ``timeout``,
    SLURM) is this process's to handle, and a worker killed by it would fail the very step being
    stopped. The signals are blocked here meanwhile, so one that arrives while the workers start
    is delivered to this process's own handler afterwards (Linux keeps a blocked signal pending
    even when ignored)."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        return iter(loader)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        handlers = {sig: signal.signal(sig, signal.SIG_IGN) for sig in _STOP_SIGNALS}
    except ValueError:  # not the main thread: the handlers cannot change
        handlers = {}
    try:
        return iter(loader)  # forked and spawned workers inherit the ignored dispositions
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _exit_when_the_parent_terminates(parent: int) -> None:
    """A worker's thread: take the worker's SIGTERMs (blocked in every thread, so they queue here)
    and exit when the sender is the parent, as when a DataLoader or ``multiprocessing`` shuts a
    worker down; one from anyone else (a stop sent to the whole process group) is the parent's to
    act on, and the worker goes on serving it."""
    while True:
        if signal.sigwaitinfo({signal.SIGTERM}).si_pid == parent:
            os._exit(0)


def _worker_init(worker_id: int) -> None:
    """Seed numpy like torch and ``random`` (torch seeds those from the loader's base seed); leave
    a stop sent to the process group to the parent: SIGINT ignored, SIGTERM ends the worker only
    when the parent sends it (:func:`_exit_when_the_parent_terminates`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "sigwaitinfo"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # before the thread: it inherits the block
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        threading.Thread(target=_exit_when_the_parent_terminates, args=(os.getppid(),), daemon=True,
                         name="cans-worker-sigterm").start()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a forked worker inherits start_workers' block
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)


def collate_samples(samples):
    """``default_collate`` of the good samples; the pairs a valid/test dataset left out at load
    time (``data.skip_bad_files``, see ``base.skipped_marker``) go to ``batch["skipped"]``
    (a list of dicts: img_file, lbl_file, source, reason). A batch made only of skipped pairs
    holds nothing but ``skipped``."""
    from torch.utils.data import default_collate

    good = [s for s in samples if "skipped" not in s]
    bad = [{"img_file": s["img_file"], "lbl_file": s["lbl_file"], "source": s.get("source", ""),
            "reason": s["skipped"]} for s in samples if "skipped" in s]
    batch = default_collate(good) if good else {}
    if bad:
        batch["skipped"] = bad
    return batch


def loader_kwargs(cfg: Mapping[str, Any], pin_memory: Optional[bool] = None) -> Dict[str, Any]:
    """The DataLoader options every loader of the project shares, from ``data``: num_workers,
    pin_memory (default: when CUDA is available), persistent_workers, prefetch_factor, the
    worker seeding and ``collate_samples`` (skipped pairs left out of a batch); workers that
    read RAW files (``load_npy: false``) are spawned, not forked
    (LibRaw's OpenMP threads do not survive a fork: a forked worker would hang)."""
    data = cfg["data"]
    workers = data["num_workers"]
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    kwargs: Dict[str, Any] = dict(num_workers=workers, pin_memory=data["pin_memory"] and pin_memory,
                                  collate_fn=collate_samples)
    if workers > 0:
        kwargs["persistent_workers"] = data["persistent_workers"]
        kwargs["prefetch_factor"] = data["prefetch_factor"]
        kwargs["worker_init_fn"] = _worker_init
        if not data["load_npy"] and getattr(dataset_class(cfg), "reads_raw", True):
            kwargs["multiprocessing_context"] = "spawn"
    return kwargs


def build_dataloader(cfg: Mapping[str, Any], split: str, log: Callable[[str], None] = print) -> DataLoader:
    """The evaluation loader of ``split`` (valid / test): in list order, ``batch_size`` of the split,
    the workers of ``data``. Training has its own (``cans.train.loaders``)."""
    dataset = build_dataset(cfg, split, log=log)
    batch_size = split_options(cfg, split)["batch_size"]
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, **loader_kwargs(cfg))


__all__ = ["DATASETS", "auto_create_ignored", "build_dataset", "dataset_class", "build_dataloader", "collate_samples",
           "loader_kwargs",
           "start_workers", "DataError",
           "PairDataset", "SonyDictSet", "FujiDictSet", "MCRDictSet", "RawPairDataset", "XTransPairDataset",
           "CleanFrameDataset",
           "pack_bayer", "pack_xtrans",
           "read_bayer"]
