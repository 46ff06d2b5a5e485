"""Checks across config keys, made before any work starts (``train.py`` / ``test.py``).

``cans.config.load_config`` checks every key on its own (name, type); :func:`check_config` checks that
the keys fit together (block counts per level, the camera's packed input against the model's
channels and block size, the synthetic camera against ``data.type``, every ``patch_size`` against
the block size and ``smallest_patch``, ``train.min_lr`` against ``train.base_lr``; docs/training.md
lists them), so a wrong combination fails at once with one line naming the keys to change, instead
of a shape error from inside the model minutes later.
"""
from __future__ import annotations

from typing import Any, Mapping

from .config import ConfigError
from .models.networks import MIN_DEEPEST_SIZE  # the deepest feature map's smallest side (7x7 reflect padding)


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
    from .data import dataset_class
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
    if syn.get("auto_create") and stand_in not in ("bayer", "xtrans"):
        if stand_in is None:
            raise ConfigError(f"data.synthetic.auto_create: no synthetic set stands in for data.type {kind}; set "
                              "data.synthetic.auto_create=false or data.type=SonyDictSet")
        if syn.get("camera") and syn["camera"] != stand_in:
            from .registry import DATASETS
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


__all__ = ["check_config", "smallest_input", "smallest_patch"]
