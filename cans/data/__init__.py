"""Data: SID (Sony, Fuji), MCR and own-camera loaders, the synthetic SID, preparation helpers.

The data sets register themselves (``cans.registry.DATASETS``): ``data.type`` names one, or a
class of your own as ``package.module:Class`` (docs/extending.md). ``build_dataset(cfg, split)``
builds a split, ``build_dataloader(cfg, split)`` its evaluation loader (the training loader is
``cans.train.loaders``), ``ensure_synthetic(cfg)`` creates the synthetic stand-in that
``data.synthetic.auto_create`` asks for. Samples are dicts, see :mod:`cans.data.base`.
"""
from __future__ import annotations

import difflib
import os
import random
import signal
import threading
import time
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
from .synthetic import MARKER, make_own_camera_set, make_synthetic_sid

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


def synthetic_exists(path: str) -> bool:
    return os.path.isdir(path) and bool(os.listdir(path))


#: folder names the shipped demo configs use for synthetic sets
STANDARD_SYNTHETIC_NAMES = ("synthetic_sid", "synthetic_sid_fuji")


def _synthetic_camera(path: str) -> Optional[str]:
    """The camera of the synthetic set at ``path`` (from its ``synthetic_sid.json``), else None."""
    import json


    try:
        with open(os.path.join(path, MARKER), encoding="utf-8") as fh:
            return json.load(fh).get("camera")
    except (OSError, ValueError, AttributeError):
        return None


def _check_create_location(path: str, camera: str) -> None:
    """Refuse to auto-create a synthetic set where a typo or the wrong working folder would put it:
    the parent folder must exist, and the folder's name must not look like a misspelling of an
    existing synthetic set beside it or of the demo configs' standard names."""

    where = os.path.abspath(path)
    parent, name = os.path.dirname(where), os.path.basename(where)
    by_hand = f"python scripts/make_synthetic_sid.py --out {where} --camera {camera}"
    if not os.path.isdir(parent):
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        hint = (f"; relative paths are read from the current folder {os.getcwd()}: run from the repository "
                f"root {root}" if not os.path.isabs(path) and os.path.abspath(os.getcwd()) != root else "")
        raise DataError(f"data.data_path: {where} does not exist, nor does its folder {parent}: not creating a "
                        f"synthetic set there (data.synthetic.auto_create){hint}, or set data.data_path")
    if name in STANDARD_SYNTHETIC_NAMES:
        return
    siblings = [d for d in os.listdir(parent) if os.path.isfile(os.path.join(parent, d, MARKER))]
    close = difflib.get_close_matches(name, siblings + list(STANDARD_SYNTHETIC_NAMES), n=1, cutoff=0.8)
    if close:
        raise DataError(f"data.data_path: {where} does not exist; did you mean {os.path.join(parent, close[0])}? "
                        f"Not creating a new synthetic set at a path that looks misspelt; to make one there on "
                        f"purpose run `{by_hand}`")


def _ensure_own_camera(path: str, syn: Mapping[str, Any], log: Callable[[str], None], sensor: str = "bayer") -> bool:
    """``data.synthetic.auto_create`` for ``RawPairDataset`` (``sensor="bayer"``) and
    ``XTransPairDataset`` (``sensor="xtrans"``): the synthetic own-camera example set
    (:func:`cans.data.synthetic.make_own_camera_set`) at ``path`` when that folder is missing or empty."""

    if synthetic_exists(path):
        return False
    where = os.path.abspath(path)
    if not os.path.isdir(os.path.dirname(where)):
        raise DataError(f"data.data_path: {where} does not exist, nor does its folder {os.path.dirname(where)}: "
                        f"not creating the own-camera example set there (data.synthetic.auto_create)")
    kind = "X-Trans " if sensor == "xtrans" else ""
    log(f"[data] {where} is missing: creating the synthetic {kind}own-camera set there (data.synthetic.auto_create: "
        f"true; {syn['scenes']} scenes, seed {syn['seed']}) ...")
    t0 = time.time()
    make_own_camera_set(path, scenes=syn["scenes"], seed=syn["seed"],
                        height=syn["height"], width=syn["width"], log=log, progress=False,
                        sensor=sensor)
    log(f"[data] own-camera set ready at {where} ({time.time() - t0:.1f} s)")
    return True


def ensure_synthetic(cfg: Mapping[str, Any], log: Callable[[str], None] = print) -> bool:
    """Create the synthetic SID at ``data.data_path`` when ``data.synthetic.auto_create`` is true and
    the folder is missing or empty, or replace a synthetic set made there for the other camera.
    Returns True when it created a set.

    It creates a set only where the demo configs put one (``datasets/synthetic_sid``,
    ``datasets/synthetic_sid_fuji``) or in a new folder whose parent exists and whose name does
    not look like a misspelling of those or of a synthetic set beside it; anything else is a
    :class:`DataError` naming the absolute path (``scripts/make_synthetic_sid.py`` makes a set
    anywhere on purpose). Messages give absolute paths."""

    data = cfg["data"]
    syn = data["synthetic"]
    path = data["data_path"]
    if not syn["auto_create"]:
        return False
    stand_in = getattr(dataset_class(cfg), "synthetic", None)
    if stand_in in ("bayer", "xtrans"):
        return _ensure_own_camera(path, syn, log, stand_in)
    where = os.path.abspath(path)
    fits = stand_in
    if fits is None:
        have = [n for n, c in DATASETS.classes().items() if getattr(c, "synthetic", None)]
        raise DataError(f"data.synthetic.auto_create: no synthetic set stands in for data.type {data['type']} "
                        f"(only {', '.join(have)} have one); set data.synthetic.auto_create=false")
    camera = syn.get("camera") or fits
    if camera != fits:
        raise DataError(f"data.synthetic.camera is {camera} but data.type is {data['type']} ({fits}); "
                        f"set data.synthetic.camera={fits}")
    overwrite = False
    if synthetic_exists(path):
        made_for = _synthetic_camera(path)
        if made_for is None or made_for == camera:  # a real SID folder is left as it is
            return False
        log(f"[data] {where} holds a synthetic {made_for} set, but data.type {data['type']} needs {camera}: "
            f"replacing it with a synthetic {camera} set (data.synthetic.auto_create: true)")
        overwrite = True
    else:
        _check_create_location(path, camera)
        log(f"[data] {where} is missing: creating the synthetic SID there (data.synthetic.auto_create: true; "
            f"camera {camera}, {syn['scenes']} scenes, seed {syn['seed']}) ...")
    t0 = time.time()
    make_synthetic_sid(path, camera=camera, scenes=syn["scenes"], seed=syn["seed"],
                       height=syn["height"], width=syn["width"],
                       workers=syn["workers"], log=log, progress=False, overwrite=overwrite)
    log(f"[data] synthetic {camera} SID ready at {where} ({time.time() - t0:.1f} s)")
    return True


__all__ = ["DATASETS", "build_dataset", "dataset_class", "build_dataloader", "collate_samples", "loader_kwargs",
           "start_workers",
           "ensure_synthetic", "DataError",
           "PairDataset", "SonyDictSet", "FujiDictSet", "MCRDictSet", "RawPairDataset", "XTransPairDataset",
           "CleanFrameDataset",
           "pack_bayer", "pack_xtrans",
           "read_bayer"]
