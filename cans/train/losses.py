"""Training losses: the two supervised terms of CANS, built from the YAML ``loss:`` section.

``loss.raw`` supervises the RAW head: its output ``raw`` (B, b*b, H, W) against the
colour-balanced clean packed RAW ``clean_raw`` (B, b*b, H, W), values about [0, 1].
``loss.rgb`` supervises the RGB head: ``rgb`` (B, 3, H*b, W*b) against ``clean_rgb``
(B, 3, H*b, W*b) in [0, 1]. Each term has a ``type`` (a name of ``LOSS_REGISTRY``: ``L1``
or ``MSE``, mean over all elements) and a ``weight``.

The weights actually applied may be changed by the adaptive prior
(``cans.train.prior``); this module only computes the unweighted terms and the YAML
weights.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

import torch
import torch.nn as nn

LOSS_REGISTRY: Dict[str, type] = {"L1": nn.L1Loss, "MSE": nn.MSELoss}

# term name -> (model output index in ``(rgb, raw)``, sample key of the target)
TERMS: Dict[str, Tuple[int, str]] = {"raw": (1, "clean_raw"), "rgb": (0, "clean_rgb")}


class CANSLoss(nn.Module):
    """The per-term losses of CANS.

    ``forward(outputs, targets)`` takes ``outputs = (rgb, raw)`` as the model returns them
    and ``targets`` a mapping with ``clean_raw`` and ``clean_rgb`` of the same shapes; it
    returns ``{"raw": scalar, "rgb": scalar}``, the *unweighted* terms (float32 scalars).
    ``weights`` holds the YAML weights ``{"raw": w1, "rgb": w2}``.
    """

    def __init__(self, raw_type: str = "L1", raw_weight: float = 1.0,
                 rgb_type: str = "L1", rgb_weight: float = 1.0):
        super().__init__()
        for key, name in (("loss.raw.type", raw_type), ("loss.rgb.type", rgb_type)):
            if name not in LOSS_REGISTRY:
                raise ValueError(f"{key}: unknown loss {name!r}; expected one of {sorted(LOSS_REGISTRY)}")
        self.fns = nn.ModuleDict({"raw": LOSS_REGISTRY[raw_type](), "rgb": LOSS_REGISTRY[rgb_type]()})
        self.weights = {"raw": float(raw_weight), "rgb": float(rgb_weight)}

    def forward(self, outputs, targets: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        terms = {}
        for name, (index, key) in TERMS.items():
            pred = outputs[index]
            target = targets[key].to(device=pred.device)
            if pred.shape != target.shape:
                raise ValueError(f"loss.{name}: model output of shape {tuple(pred.shape)} does not match "
                                 f"the target {key} of shape {tuple(target.shape)}")
            # float32 so that an fp16/bf16 autocast forward still sums the loss in full precision
            terms[name] = self.fns[name](pred.float(), target.float())
        return terms

    def weighted_sum(self, terms: Mapping[str, torch.Tensor], weights: Mapping[str, float] = None) -> torch.Tensor:
        """``sum_k weights[k] * terms[k]`` (the YAML weights by default)."""
        weights = self.weights if weights is None else weights
        return sum(weights[k] * terms[k] for k in TERMS)


def build_loss(cfg: Mapping[str, Any]) -> CANSLoss:
    """Build the loss from a whole config or its ``loss:`` mapping."""
    if "loss" in cfg and isinstance(cfg["loss"], Mapping):
        cfg = cfg["loss"]
    raw = cfg.get("raw") or {}
    rgb = cfg.get("rgb") or {}
    return CANSLoss(raw.get("type", "L1"), raw.get("weight", 1.0), rgb.get("type", "L1"), rgb.get("weight", 1.0))


__all__ = ["CANSLoss", "LOSS_REGISTRY", "build_loss"]
