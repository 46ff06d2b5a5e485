"""Models: the registry that maps the YAML ``model.type`` to a network class."""
from __future__ import annotations

from typing import Any, Dict, Mapping

import torch.nn as nn

from .networks import CANS, CANS_Plus
from .weights import extract_state_dict, load_state_dict_strict, load_weights

MODEL_REGISTRY: Dict[str, type] = {"CANS": CANS, "CANS_Plus": CANS_Plus}

MODEL_ARGS = ("in_channel", "width", "middle_blk_num", "enc_blk_nums", "dec_blk_nums",
              "adaptive_size", "block_size")
#: how LayerNorm2d computes under autocast (see LayerNorm2d): not a constructor argument
AMP_LAYERNORM = ("float32", "reference")


def build_model(cfg: Mapping[str, Any]) -> nn.Module:
    """Build a network from the YAML ``model:`` mapping (or a whole config holding one).

    ``type`` selects the class (``CANS`` or ``CANS_Plus``); the other keys are its
    constructor arguments.
    """
    if "model" in cfg and isinstance(cfg["model"], Mapping):
        cfg = cfg["model"]
    cfg = dict(cfg)
    name = cfg.pop("type", None)
    if name not in MODEL_REGISTRY:
        raise ValueError(f"model.type: unknown model {name!r}; expected one of {sorted(MODEL_REGISTRY)}")
    amp_layernorm = cfg.pop("amp_layernorm", None) or "float32"
    if amp_layernorm not in AMP_LAYERNORM:
        raise ValueError(f"model.amp_layernorm: expected one of {list(AMP_LAYERNORM)}, got {amp_layernorm!r}")
    unknown = sorted(set(cfg) - set(MODEL_ARGS))
    if unknown:
        raise ValueError(f"model: unknown argument(s) {unknown} for {name}; expected {list(MODEL_ARGS)}")
    kwargs = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in cfg.items()}
    model = MODEL_REGISTRY[name](**kwargs)
    if amp_layernorm != "float32":
        from .blocks import LayerNorm2d
        for module in model.modules():
            if isinstance(module, LayerNorm2d):
                module.amp_float32 = False
    return model


__all__ = ["CANS", "CANS_Plus", "MODEL_REGISTRY", "build_model", "load_weights",
           "extract_state_dict", "load_state_dict_strict"]
