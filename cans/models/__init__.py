"""Models: the networks register themselves (``cans.registry.MODELS``); ``build_model`` builds
the one ``model.type`` names, in-tree or ``package.module:Class`` (docs/extending.md)."""
from __future__ import annotations

from typing import Any, Mapping

import torch.nn as nn

from ..errors import ConfigError
from ..registry import MODELS
from .blocks import LayerNorm2d
from .networks import CANS, CANS_Plus
from .weights import extract_state_dict, load_state_dict_strict, unwrap_model

#: the constructor arguments of the in-tree networks (the schema's model keys)
MODEL_ARGS = ("in_channel", "width", "middle_blk_num", "enc_blk_nums", "dec_blk_nums",
              "adaptive_size", "block_size")
#: how LayerNorm2d computes under autocast (see LayerNorm2d): not a constructor argument
AMP_LAYERNORM = ("float32", "reference")


def build_model(cfg: Mapping[str, Any]) -> nn.Module:
    """Build a network from the YAML ``model:`` mapping (or a whole config holding one).

    ``type`` selects the class; the other keys are its constructor arguments (for a user's class,
    all of them as ``Class(**options)``; it must have a ``block_size`` attribute)."""
    if "model" in cfg and isinstance(cfg["model"], Mapping):
        cfg = cfg["model"]
    cfg = dict(cfg)
    name = cfg.pop("type", None)
    cls = MODELS.get(name)
    if ":" in str(name):
        try:
            model = cls(**cfg)
        except TypeError as exc:
            raise ConfigError(f"model: {name}({', '.join(f'{k}=...' for k in cfg)}) failed: {exc}") from None
        if not isinstance(getattr(model, "block_size", None), int):
            raise ConfigError(f"model.type: {name} has no int attribute block_size (mosaic pixels per packed "
                              f"pixel: 2 Bayer, 3 X-Trans; docs/extending.md)")
        return model
    amp_layernorm = cfg.pop("amp_layernorm", None) or "float32"
    if amp_layernorm not in AMP_LAYERNORM:
        raise ValueError(f"model.amp_layernorm: expected one of {list(AMP_LAYERNORM)}, got {amp_layernorm!r}")
    unknown = sorted(set(cfg) - set(MODEL_ARGS))
    if unknown:
        raise ValueError(f"model: unknown argument(s) {unknown} for {name}; expected {list(MODEL_ARGS)}")
    kwargs = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in cfg.items()}
    model = cls(**kwargs)
    if amp_layernorm != "float32":
        for module in model.modules():
            if isinstance(module, LayerNorm2d):
                module.amp_float32 = False
    return model


__all__ = ["CANS", "CANS_Plus", "MODELS", "build_model", "unwrap_model",
           "extract_state_dict", "load_state_dict_strict"]
