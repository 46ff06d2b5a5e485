"""The adaptive denoising prior: how much the RAW (denoising) term weighs against the RGB term.

``loss.prior.weighting``: ``fixed`` keeps the YAML weights ``loss.raw.weight`` / ``loss.rgb.weight``;
``gradient_agreement`` re-weights them every ``loss.prior.every`` steps by the two-task MGDA point
(:func:`mgda_gamma`) of the RAW and RGB gradients on the shared backbone: RAW ``2 gamma``, RGB
``2 (1 - gamma)``, so gamma = 0.5 is the fixed scale (docs/training.md). Gamma starts at 0.5, holds
between updates and is checkpointed; under DDP the gradients are averaged over the ranks first, so
every rank applies the same weights. :func:`allow_retained_backward` says why buffer donation is off.
"""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Optional

import torch
import torch.distributed as dist
import torch.nn as nn

from ..models.weights import unwrap_model

MODES = ("fixed", "gradient_agreement")


def mgda_gamma(g1: torch.Tensor, g2: torch.Tensor) -> float:
    """The two-task MGDA weight of ``g1``: argmin over gamma in [0, 1] of |gamma g1 + (1-gamma) g2|.

    ``g1`` and ``g2`` are gradients of any (equal) shape; computed in float64.
    Returns 0.5 when the two gradients are identical (every gamma gives the same point).
    """
    a = g1.detach().reshape(-1).double()
    b = g2.detach().reshape(-1).double()
    if a.shape != b.shape:
        raise ValueError(f"mgda_gamma: gradients of different sizes {a.numel()} and {b.numel()}")
    diff = torch.dot(a - b, a - b).item()
    if diff <= 0.0:
        return 0.5
    gamma = (torch.dot(b, b).item() - torch.dot(a, b).item()) / diff
    if not math.isfinite(gamma):
        return 0.5
    return min(max(gamma, 0.0), 1.0)


def shared_parameters(model: nn.Module) -> List[nn.Parameter]:
    """The trainable parameters of the shared backbone (all trainable parameters if none)."""
    bare = unwrap_model(model)
    source = bare.backbone if hasattr(bare, "backbone") else bare
    return [p for p in source.parameters() if p.requires_grad]


def allow_retained_backward() -> None:
    """Let a compiled model's graph be differentiated with ``retain_graph=True`` whatever its first
    backward was: no donated buffers in backwards compiled from now on.

    Why: the two gradients differentiate the step's graph with ``retain_graph=True`` before the
    step's own backward. AOTAutograd compiles the backward at its first call; when that is a plain
    backward (a resumed run whose first step is not a multiple of ``every``) it may donate the saved
    activations, and the next retained call fails ("compiled with non-empty donated buffers";
    reproduced with ``aot_eager`` and inductor on the CPU). Called when the adaptive mode is built,
    before anything compiles; a fresh run's first backward (a retained one) never donates either.
    """
    try:
        import torch._functorch.config as functorch_config
    except Exception:  # pragma: no cover - a torch without AOTAutograd compiles nothing
        return
    if hasattr(functorch_config, "donated_buffer"):
        functorch_config.donated_buffer = False


def _flat_grad(loss: torch.Tensor, params: List[nn.Parameter]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1).float()
                      for p, g in zip(params, grads)])


class AdaptivePrior:
    """Holds the loss weights of the RAW and RGB terms and, in ``gradient_agreement`` mode, gamma.

    ``weights()`` -> ``{"raw": w1, "rgb": w2}`` to apply now.
    ``maybe_update(step, terms, model, scale)`` recomputes gamma when ``step % every == 0``
    (``terms`` are the unweighted loss terms of this step, still attached to the graph;
    ``scale`` multiplies both terms before differentiation, e.g. the fp16 grad-scaler
    factor, which gamma does not depend on). Returns the new gamma or None.
    """

    def __init__(self, mode: str = "fixed", every: int = 1, raw_weight: float = 1.0, rgb_weight: float = 1.0):
        if mode not in MODES:
            raise ValueError(f"loss.prior.weighting: unknown mode {mode!r}; expected one of {list(MODES)}")
        if every < 1:
            raise ValueError(f"loss.prior.every: expected an integer >= 1, got {every}")
        self.mode = mode
        self.every = int(every)
        self.base = {"raw": float(raw_weight), "rgb": float(rgb_weight)}
        self.gamma = 0.5
        if self.adaptive:
            allow_retained_backward()

    @property
    def adaptive(self) -> bool:
        return self.mode == "gradient_agreement"

    def weights(self) -> Dict[str, float]:
        if not self.adaptive:
            return dict(self.base)
        return {"raw": 2.0 * self.gamma * self.base["raw"], "rgb": 2.0 * (1.0 - self.gamma) * self.base["rgb"]}

    def maybe_update(self, step: int, terms: Mapping[str, torch.Tensor], model: nn.Module,
                     scale: float = 1.0) -> Optional[float]:
        if not self.adaptive or step % self.every != 0:
            return None
        params = shared_parameters(model)
        g1 = _flat_grad(terms["raw"] * (self.base["raw"] * scale), params)
        g2 = _flat_grad(terms["rgb"] * (self.base["rgb"] * scale), params)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            both = torch.stack([g1, g2])
            dist.all_reduce(both)
            both /= dist.get_world_size()
            g1, g2 = both[0], both[1]
        if not (torch.isfinite(g1).all() and torch.isfinite(g2).all()):
            return None  # keep the last gamma; the step itself is judged by the trainer
        self.gamma = mgda_gamma(g1, g2)
        return self.gamma

    def state_dict(self) -> Dict[str, float]:
        return {"mode": self.mode, "gamma": self.gamma}

    def load_state_dict(self, state: Mapping) -> None:
        self.gamma = float(state.get("gamma", 0.5))


def build_prior(cfg: Mapping) -> AdaptivePrior:
    """From a whole config (its ``loss:`` section)."""
    loss = cfg["loss"] if "loss" in cfg else cfg
    prior = loss.get("prior") or {}
    return AdaptivePrior(prior.get("weighting", "fixed"), prior.get("every", 1),
                         (loss.get("raw") or {}).get("weight", 1.0), (loss.get("rgb") or {}).get("weight", 1.0))


__all__ = ["AdaptivePrior", "allow_retained_backward", "build_prior", "mgda_gamma", "shared_parameters", "unwrap_model"]
