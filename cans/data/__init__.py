"""Data: SID (Sony, Fuji) and MCR loaders, the synthetic SID, preparation helpers.

Public API:

* ``DATASET_REGISTRY``: YAML ``data.type`` -> class (``SonyDictSet``, ``FujiDictSet``, ``MCRDictSet``,
  ``RawPairDataset`` / ``XTransPairDataset`` for your own camera).
* ``build_dataset(cfg, split, log=print)`` -> Dataset for split 'train', 'valid' or 'test'.
* ``build_dataloader(cfg, split, distributed=False, seed=None, log=print)`` -> DataLoader.
* ``ensure_synthetic(cfg, log=print)``: create the synthetic SID at ``data.data_path`` when
  ``data.synthetic.auto_create`` is true and the folder is missing.
* ``DataError``: every data problem (the message names the file, line or config key).

Samples are dicts, see :mod:`cans.data.base`.
"""
from __future__ import annotations

import os
import random
import time
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from .base import PairDataset
from .errors import DataError
from .mcr import MCRDictSet
from .packing import pack_bayer, pack_xtrans
from .raw_io import read_bayer
from .rawpair import RawPairDataset, XTransPairDataset
from .sid import FujiDictSet, SonyDictSet

DATASET_REGISTRY: Dict[str, type] = {
    "SonyDictSet": SonyDictSet,
    "FujiDictSet": FujiDictSet,
    "MCRDictSet": MCRDictSet,
    "RawPairDataset": RawPairDataset,        # your own camera, Bayer (cans/data/rawpair.py)
    "XTransPairDataset": XTransPairDataset,  # your own camera, X-Trans
}

_DATASET_KEYS = ("load_npy", "max_clip", "min_clip", "transpose", "h_flip", "v_flip", "only_00",
                 "patch_size", "repeat", "max_samples")


def build_dataset(cfg: Mapping[str, Any], split: str, log: Callable[[str], None] = print) -> Dataset:
    """The dataset of ``split`` ('train', 'valid' or 'test') from the full resolved config.

    Options are ``cans.config.split_options(cfg, split)``; the list file is relative to
    ``data.data_path`` unless absolute.
    """
    from ..config import split_options

    if split not in ("train", "valid", "test"):
        raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")
    data = cfg["data"]
    name = data["type"]
    if name not in DATASET_REGISTRY:
        raise DataError(f"data.type: unknown dataset {name!r}; expected one of {sorted(DATASET_REGISTRY)}")
    opts = split_options(cfg, split)
    kwargs = {k: opts[k] for k in _DATASET_KEYS if k in opts}
    kwargs["load_npy"] = data.get("load_npy", True)
    if hasattr(DATASET_REGISTRY[name], "data_options"):   # data.* keys of that dataset (e.g. ratio_mode)
        kwargs.update(DATASET_REGISTRY[name].data_options(data))
    return DATASET_REGISTRY[name](data["data_path"], opts.get("image_list_file"), split,
                                  skip_bad_files=data.get("skip_bad_files", False), log=log, **kwargs)


def _worker_init(worker_id: int) -> None:
    # torch seeds `random` and torch in each worker from the loader's base seed; numpy too
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)


def loader_kwargs(cfg: Mapping[str, Any], pin_memory: Optional[bool] = None) -> Dict[str, Any]:
    """The DataLoader options every loader of the project shares, from ``data``: num_workers,
    pin_memory (default: when CUDA is available), persistent_workers, prefetch_factor and the
    worker seeding; workers that read RAW files (``load_npy: false``) are spawned, not forked
    (LibRaw's OpenMP threads do not survive a fork: a forked worker would hang)."""
    data = cfg["data"]
    workers = int(data.get("num_workers", 0))
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    kwargs: Dict[str, Any] = dict(num_workers=workers, pin_memory=bool(data.get("pin_memory", False)) and pin_memory)
    if workers > 0:
        kwargs["persistent_workers"] = bool(data.get("persistent_workers", False))
        kwargs["prefetch_factor"] = int(data.get("prefetch_factor") or 2)
        kwargs["worker_init_fn"] = _worker_init
        if not data.get("load_npy", True) and data.get("type") != "MCRDictSet":
            kwargs["multiprocessing_context"] = "spawn"
    return kwargs


def build_dataloader(cfg: Mapping[str, Any], split: str, distributed: bool = False,
                     seed: Optional[int] = None, log: Callable[[str], None] = print) -> DataLoader:
    """DataLoader of ``split``: shuffled with drop_last for train, DistributedSampler when
    ``distributed``; batch_size from the split options; num_workers, pin_memory (only when CUDA
    is available), persistent_workers and prefetch_factor (only with workers) from ``data``.
    Workers that read RAW files (``load_npy: false``) are spawned, not forked (LibRaw uses OpenMP).
    ``seed`` fixes the shuffling and the random crops / flips.
    """
    from ..config import split_options

    dataset = build_dataset(cfg, split, log=log)
    opts = split_options(cfg, split)
    train = split == "train"
    batch_size = int(opts.get("batch_size") or 1)
    if train and len(dataset) < batch_size:
        raise DataError(f"data.train.batch_size {batch_size} is larger than the training set "
                        f"({len(dataset)} samples): with drop_last no batch would be made")
    sampler = None
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=train, seed=seed or 0, drop_last=train)
    generator = None
    if seed is not None:
        generator = torch.Generator()
        generator.manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=train and sampler is None, sampler=sampler,
                      drop_last=train, generator=generator, **loader_kwargs(cfg))


def synthetic_exists(path: str) -> bool:
    return os.path.isdir(path) and bool(os.listdir(path))


def ensure_synthetic(cfg: Mapping[str, Any], log: Callable[[str], None] = print) -> bool:
    """Create the synthetic SID at ``data.data_path`` if ``data.synthetic.auto_create`` is true and
    the folder is missing or empty. Returns True when it created the set."""
    from .synthetic import make_synthetic_sid

    data = cfg["data"]
    syn = data.get("synthetic") or {}
    path = data["data_path"]
    if not syn.get("auto_create", False) or synthetic_exists(path):
        return False
    if data["type"] == "RawPairDataset":
        from .synthetic import make_own_camera_set
        log(f"[data] {path} is missing: creating the synthetic own-camera set there (data.synthetic.auto_create: "
            f"true; {syn.get('scenes', 8)} scenes, seed {syn.get('seed', 0)}) ...")
        t0 = time.time()
        make_own_camera_set(path, scenes=syn.get("scenes", 8), seed=syn.get("seed", 0),
                            height=syn.get("height", 384), width=syn.get("width", 576), log=log, progress=False)
        log(f"[data] own-camera set ready at {path} ({time.time() - t0:.1f} s)")
        return True
    camera = syn.get("camera", "Sony")
    fits = {"SonyDictSet": "Sony", "FujiDictSet": "Fuji"}.get(data["type"])
    if fits is None:
        raise DataError(f"data.synthetic.auto_create: the synthetic SID cannot stand in for data.type "
                        f"{data['type']} (only SonyDictSet, FujiDictSet and RawPairDataset); {path} is missing")
    if camera != fits:
        log(f"[data] data.synthetic.camera {camera} does not fit data.type {data['type']}: making a {fits} set")
        camera = fits
    log(f"[data] {path} is missing: creating the synthetic SID there (data.synthetic.auto_create: true; "
        f"camera {camera}, {syn.get('scenes', 8)} scenes, seed {syn.get('seed', 0)}) ...")
    t0 = time.time()
    make_synthetic_sid(path, camera=camera, scenes=syn.get("scenes", 8), seed=syn.get("seed", 0),
                       height=syn.get("height", 384), width=syn.get("width", 576),
                       workers=syn.get("workers", 0), log=log, progress=False)
    log(f"[data] synthetic SID ready at {path} ({time.time() - t0:.1f} s)")
    return True


__all__ = ["DATASET_REGISTRY", "build_dataset", "build_dataloader", "loader_kwargs", "ensure_synthetic", "DataError",
           "PairDataset", "SonyDictSet", "FujiDictSet", "MCRDictSet", "RawPairDataset", "XTransPairDataset", "pack_bayer", "pack_xtrans",
           "read_bayer"]
