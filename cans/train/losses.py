"""Training losses: the two supervised terms of CANS, built from the YAML ``loss:`` section.

``loss.raw`` supervises the RAW head: its output ``raw`` (B, b*b, H, W) against the
colour-balanced clean packed RAW ``clean_raw`` (B, b*b, H, W), values about [0, 1].
``loss.rgb`` supervises the RGB head: ``rgb`` (B, 3, H*b, W*b) against ``clean_rgb``
(B, 3, H*b, W*b) in [0, 1]. Each term has a ``type`` (a name in ``cans.registry.LOSSES``: ``L1``
or ``MSE``, mean over all elements, or a ``package.module:Class`` of your own) and a ``weight``.

The weights actually applied may be changed by the adaptive prior
(``cans.train.prior``); this module only computes the unweighted terms and the YAML
weights.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from ..registry import LOSSES
from .prior import build_prior

LOSSES.register(nn.L1Loss, name="L1")
LOSSES.register(nn.MSELoss, name="MSE")

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
        self.fns = nn.ModuleDict({"raw": LOSSES.get(raw_type)(), "rgb": LOSSES.get(rgb_type)()})
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


class Objective:
    """What a training step minimises: ``loss, logs = objective(outputs, batch, step, model)``.

    The two terms of :class:`CANSLoss`, weighted by the adaptive prior (``cans.train.prior``),
    which first updates its weights when due (it differentiates the terms itself, so it needs the
    model and, under fp16, the grad scaler's ``scale``). ``agree(ok)`` decides together with the
    other processes whether finite terms allow that update (the prior's gradients are
    all-reduced); when it says no, ``loss`` is None and the step is to be skipped. ``logs``: the
    unweighted terms (0-dim tensors, detached) and the weights applied (floats).
    """

    def __init__(self, loss: CANSLoss, prior):
        self.loss, self.prior = loss, prior

    def __call__(self, outputs, batch: Mapping[str, torch.Tensor], step: int, model: nn.Module,
                 scale: float = 1.0, agree=None) -> Tuple[Optional[torch.Tensor], Dict[str, Any]]:
        terms = self.loss(outputs, batch)
        logs: Dict[str, Any] = {k: v.detach() for k, v in terms.items()}
        if self.prior.adaptive:
            finite = torch.stack(list(logs.values())).isfinite().all()
            if not (agree(finite) if agree is not None else bool(finite)):
                return None, logs
            self.prior.maybe_update(step, terms, model, scale=scale)
            logs["gamma"] = self.prior.gamma
        weights = self.prior.weights()
        logs.update(w_raw=weights["raw"], w_rgb=weights["rgb"])
        return self.loss.weighted_sum(terms, weights), logs


def build_objective(cfg: Mapping[str, Any]) -> Objective:
    """The training objective of a whole config: ``loss:`` and ``loss.prior``."""
    return Objective(build_loss(cfg), build_prior(cfg))


__all__ = ["CANSLoss", "Objective", "build_loss", "build_objective"]
