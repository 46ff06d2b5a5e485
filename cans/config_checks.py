"""Checks across config keys, made before any work starts (``train.py`` / ``test.py``).

``cans.config.load_config`` checks every key on its own (name, type); :func:`check_config` checks that
the keys fit together (block counts per level, the camera's packed input against the model's
channels and block size, the synthetic camera against ``data.type``, every ``patch_size`` against
the block size and ``smallest_patch``, ``train.min_lr`` against ``train.base_lr``) and against the
machine (the worker processes against its CPUs and memory: :func:`check_workers`); docs/training.md
lists them. So a wrong combination fails at once with one line naming the keys to change, instead
of a shape error from inside the model minutes later.
"""
from __future__ import annotations

from typing import Any, Mapping

from .config import ConfigError
from .data import auto_create_ignored, dataset_class
from .machine import available_memory, local_processes, usable_cpus
from .models.networks import MIN_DEEPEST_SIZE  # the deepest feature map's smallest side (7x7 reflect padding)
from .registry import DATASETS


def smallest_input(cfg: Mapping[str, Any]) -> int:
    """The smallest packed height / width the configured model accepts: 2^depth * 3 + 1 (49 at depth 4)."""
    depth = len(cfg["model"]["enc_blk_nums"])
    return 2 ** depth * (MIN_DEEPEST_SIZE - 1) + 1


def smallest_patch(cfg: Mapping[str, Any], block: int) -> int:
    """The smallest valid ``patch_size`` (mosaic pixels): a multiple of ``block`` whose packed
    side is at least :func:`smallest_input`."""
    return block * smallest_input(cfg)


def check_config(cfg: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` (one line, naming the keys) when the keys do not fit together."""
    data, model = cfg["data"], cfg["model"]
    _check_learning_rates(cfg["train"])
    check_workers(data["num_workers"], "data.num_workers", processes=local_processes())
    check_workers((data.get("synthetic") or {}).get("workers") or 0, "data.synthetic.workers")
    facts = dataset_class(cfg)  # the camera facts live on the registered (or the user's) class
    if ":" in model["type"]:  # a user's model: its block size is checked against the data when built
        return
    enc, dec = model["enc_blk_nums"], model["dec_blk_nums"]
    if not enc or len(enc) != len(dec):
        raise ConfigError(f"model.enc_blk_nums {enc} and model.dec_blk_nums {dec}: expected two lists of the same "
                          f"length >= 1 (one number of blocks per level; the paper's models: [2, 2, 2, 2] each)")
    kind = data["type"]
    camera = getattr(facts, "camera", kind)
    channels, block = facts.packed_channels, facts.block_size
    base = getattr(facts, "base_config", None) or "a config for this camera"
    wanted = {"model.in_channel": channels, "model.block_size": block, "model.adaptive_size": block}
    have = {"model.in_channel": model["in_channel"], "model.block_size": model["block_size"],
            "model.adaptive_size": model["adaptive_size"]}
    wrong = [k for k in wanted if have[k] != wanted[k]]
    if wrong:
        pattern = "X-Trans, 9 channels" if channels == 9 else "Bayer, 4 channels"
        raise ConfigError(
            f"data.type {kind} gives packed {camera} RAW ({pattern}, block {block}), but "
            + ", ".join(f"{k} is {have[k]}" for k in wrong)
            + f"; set {' '.join(f'{k}={wanted[k]}' for k in wrong)} (as {base} does), or change data.type")
    syn = data.get("synthetic") or {}
    stand_in = getattr(facts, "synthetic", None)
    if syn.get("auto_create") and stand_in not in ("bayer", "xtrans") and not auto_create_ignored(cfg):
        if stand_in is None:
            raise ConfigError(f"data.synthetic.auto_create: no synthetic set stands in for data.type {kind}; set "
                              "data.synthetic.auto_create=false or data.type=SonyDictSet")
        if syn.get("camera") and syn["camera"] != stand_in:
            other = next((n for n, c in DATASETS.classes().items() if getattr(c, "synthetic", None) == syn["camera"]),
                         "another data.type")
            raise ConfigError(f"data.synthetic.camera is {syn['camera']} but data.type is {kind} ({camera}); "
                              f"set data.synthetic.camera={camera}, or data.type={other} with the model keys "
                              f"of configs/base/{syn['camera']}.yaml")
    smallest = smallest_patch(cfg, block)
    for split in ("process", "train", "valid"):
        patch = (data.get(split) or {}).get("patch_size")
        if patch is None:
            continue
        key = f"data.{split}.patch_size"
        if patch % block or patch < smallest:
            raise ConfigError(
                f"{key}: {patch} does not fit this model: a patch must be a multiple of {block} (the {camera} "
                f"block) and at least {smallest} pixels ({smallest // block} packed, the smallest input of a "
                f"{len(model['enc_blk_nums'])}-level model); set {key}={max(smallest, -(-patch // block) * block)}")



def _check_learning_rates(train: Mapping[str, Any]) -> None:
    """The cosine schedule decays from ``train.base_lr`` to ``train.min_lr``: a floor above the start
    would make the rate rise over the run (the constant schedule reads only ``base_lr``)."""
    if train["lr_scheduler"]["type"] != "cosine":
        return
    base, low = train["base_lr"], train["min_lr"]
    if low > base:
        raise ConfigError(f"train.min_lr {low:g} is above train.base_lr {base:g}: the cosine schedule decays from "
                          f"base_lr to min_lr; set train.min_lr to at most {base:g}, or train.base_lr to at least "
                          f"{low:g}")


#: useful worker processes per CPU at most. A DataLoader worker mostly waits (on the disk, or on a
#: full prefetch queue), so a few per CPU can pay off, e.g. with caches on network storage; past 4
#: they only compete for the CPUs and the memory. A 64-core machine with 8 GPUs still gives each
#: rank 32 workers (8 x 32 = 256 = 4 x 64).
WORKERS_PER_CPU = 4
#: the memory a worker process holds of its own, at least (GiB). Measured: a spawned worker
#: (``load_npy: false``) 0.29 GiB before its first sample, a forked one 0.1 GiB, growing with the
#: batches it holds (0.6 GB each in a full-size SID run); so the check refuses only worker counts
#: whose smallest footprint already does not fit.
WORKER_MEMORY_GIB = 0.25


def check_workers(count: int, key: str, processes: int = 1) -> None:
    """:class:`ConfigError` naming ``key`` and the machine's figures when ``count`` worker processes
    (for each of ``processes`` on this machine) are more than it can run: over
    :data:`WORKERS_PER_CPU` per usable CPU, or over the available memory at
    :data:`WORKER_MEMORY_GIB` each. Checked before any worker is started: thousands of them
    exhaust the memory, and a machine out of memory cannot stop them."""
    if count <= 0:
        return
    cpus, memory = usable_cpus(), available_memory()
    limit = WORKERS_PER_CPU * cpus
    if memory is not None:
        limit = min(limit, int(memory / (WORKER_MEMORY_GIB * 2 ** 30)))
    if count * processes <= limit:
        return
    each = f" for each of the {processes} training processes on this machine (LOCAL_WORLD_SIZE)" \
        if processes > 1 else ""
    mem = (f" and {memory / 2 ** 30:.1f} GiB of memory available (a worker holds {WORKER_MEMORY_GIB} GiB at least)"
           if memory is not None else "")
    raise ConfigError(f"{key}: {count} worker processes{each} are more than this machine can run: it has {cpus} "
                      f"CPU(s) (at most {WORKERS_PER_CPU} workers per CPU are useful){mem}; set {key} to at most "
                      f"{limit // processes}")


__all__ = ["WORKERS_PER_CPU", "WORKER_MEMORY_GIB", "available_memory", "check_config", "check_workers",
           "local_processes", "smallest_input", "smallest_patch", "usable_cpus"]
