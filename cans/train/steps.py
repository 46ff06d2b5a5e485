"""What happens after a training step's backward: the optimiser step taken or skipped, and counted.

Two implementations of one interface, chosen once per run (:func:`step_policy`):

* :class:`CheckedSteps`: the host reads each step's finite flag (one synchronisation per step,
  shared with DDP's agreement and the stop request) and skips a non-finite step at once.
* :class:`SyncFreeSteps`: fused Adam(W) takes the flag on the device through its ``found_inf``
  (as GradScaler uses it) and leaves the weights untouched on a bad step; nothing is read back
  until a log line, a stop or the epoch end (:class:`UnreadSteps` counts in the meantime).

Both update the trainer's counters (``step``, ``nonfinite_total``, ``nonfinite_streak``, the
epoch's ``epoch_sums``) and raise :class:`NonFiniteLossError` after ``train.max_nonfinite``
non-finite steps in a row. The epoch loop (``cans.train.epoch``) sees only this interface.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, MutableMapping, Optional

import torch

from ..errors import NonFiniteLossError


def nonfinite_advice(tcfg: Mapping[str, Any]) -> str:
    """The keys most likely behind non-finite numbers, with this run's values."""
    return (f"lower train.base_lr (now {tcfg.get('base_lr'):g}), keep train.clip_grad on (now "
            f"{tcfg.get('clip_grad')}) or set train.amp=off (now {tcfg.get('amp')})")


class UnreadSteps:
    """The steps a sync-free epoch took since the host last read the device.

    Each step's finite flag stays on the device: ``skipped`` (steps whose loss or gradient was not
    finite: fused AdamW skipped them through its ``found_inf``), ``streak`` (non-finite steps in a
    row at the newest step) and ``longest`` (the longest such streak since the last read) are
    0-dim float64 device tensors (exact counts up to 2**53); ``batches`` (a host int) counts the
    steps taken since the last read, good or skipped.
    """

    def __init__(self, device: torch.device, streak: int):
        zero = torch.zeros((), dtype=torch.float64, device=device)
        self.batches = 0
        self.skipped = zero
        self.streak = zero + streak  # a scalar kernel argument: no host-to-device copy
        self.longest = self.streak

    def add(self, ok: torch.Tensor) -> None:
        """Count one step; ``ok``: its 0-dim bool flag (True: the optimiser step was taken)."""
        bad = (~ok).double()
        self.batches += 1
        self.skipped = self.skipped + bad
        self.streak = (self.streak + 1) * bad
        self.longest = torch.maximum(self.longest, self.streak)

    def counters(self) -> torch.Tensor:
        """``[skipped, streak, longest]`` (float64, on the device), to be read with other values."""
        return torch.stack([self.skipped, self.streak, self.longest])

    def clear(self) -> None:
        """Start counting afresh after a read (the streak goes on)."""
        self.batches = 0
        self.skipped = torch.zeros_like(self.skipped)
        self.longest = self.streak


class CheckedSteps:
    """The per-step read: each step's flag is read on the host (with DDP's agreement), a bad step
    is skipped and reported at once, and the counters are always exact."""

    sync_free = False

    def __init__(self, trainer):
        self.trainer = trainer

    def finish(self, ok: torch.Tensor, logs: Dict[str, Any], total: torch.Tensor,
               grad_norm: torch.Tensor) -> Optional[Dict[str, Any]]:
        """Take the optimiser step when ``ok`` (0-dim bool, device) holds on every rank; returns the
        step's logged values (device tensors), or None when it was skipped."""
        tr = self.trainer
        if not tr.agree(ok):
            return self.skip(logs, grad_norm)
        tr.scaler.step(tr.optimizer)
        tr.scaler.update()
        tr.step += 1
        tr.nonfinite_streak = 0
        return dict(logs, total=total.detach(), grad_norm=grad_norm.detach())

    def skip(self, terms: Mapping[str, torch.Tensor], grad_norm: Optional[torch.Tensor]) -> None:
        """A non-finite step: say which numbers (read now, on this rare path), count it and skip it."""
        tr = self.trainer
        bad = [f"{k}={float(terms[k]):.4g}" for k in ("raw", "rgb") if not math.isfinite(float(terms[k]))]
        what = "non-finite loss " + ", ".join(bad) if bad else f"non-finite gradient norm {grad_norm.item()}"
        tr.nonfinite_total += 1
        tr.nonfinite_streak += 1
        tr.optimizer.zero_grad(set_to_none=True)
        limit = tr.tcfg["max_nonfinite"]
        tr.logger.warning(f"step {tr.step}: {what}; step skipped "
                          f"({tr.nonfinite_streak} in a row, {tr.nonfinite_total} in total)")
        if tr.nonfinite_streak >= limit:
            raise NonFiniteLossError(
                f"{limit} non-finite losses in a row, the last at step {tr.step} (epoch {tr.epoch + 1}); "
                f"stopping. The last checkpoint in {tr.ckpt_dir} was left as it was. "
                f"{nonfinite_advice(tr.tcfg).capitalize()}")
        return None

    def add(self, sums: MutableMapping[str, Any], values: Mapping[str, Any]) -> None:
        """Add a taken step's values to the epoch's running sums (tensors stay on the device)."""
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + (v.double() if isinstance(v, torch.Tensor) else v)
        self.trainer.epoch_sums["count"] += 1

    def due(self) -> int:
        """The step number a log line is due at."""
        return self.trainer.step

    def read(self, values: Mapping[str, Any]) -> Optional[Dict[str, float]]:
        """``values`` as floats (one host read)."""
        return {k: float(v) for k, v in values.items()}

    def settle(self) -> None:
        """Nothing is ever left unread."""


class SyncFreeSteps:
    """The sync-free step (module docstring): the counters are exact as of the last read (a log
    line, a stop, the epoch end) and lag behind while the epoch runs."""

    sync_free = True

    def __init__(self, trainer):
        self.trainer = trainer
        self.unread: Optional[UnreadSteps] = None  # the steps not yet read
        self.last_ok: Optional[torch.Tensor] = None  # the newest step's flag (device)

    def finish(self, ok: torch.Tensor, logs: Dict[str, Any], total: torch.Tensor,
               grad_norm: torch.Tensor) -> Dict[str, Any]:
        """Fused Adam(W) takes the step, or leaves the weights, moments and its step counter
        untouched when ``ok`` is False, without the host reading ``ok``. The values always come
        back (masked by the flag when summed: :meth:`add`)."""
        tr = self.trainer
        if self.unread is None:
            self.unread = UnreadSteps(tr.device, tr.nonfinite_streak)
        opt = tr.optimizer
        opt.grad_scale, opt.found_inf = None, (~ok).float()
        try:
            opt.step()
        finally:
            del opt.grad_scale, opt.found_inf
        self.unread.add(ok)
        self.last_ok = ok
        tr.stop_agreed = tr.stop.requested is not None
        return dict(logs, total=total.detach(), grad_norm=grad_norm.detach())

    def add(self, sums: MutableMapping[str, Any], values: Mapping[str, Any]) -> None:
        """Add the newest step's values, masked by its unread flag; the count comes with the next read."""
        ok = self.last_ok
        ok_d = ok.double()
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + (torch.where(ok, v.double(), 0.0) if isinstance(v, torch.Tensor)
                                          else ok_d * v)

    def due(self) -> int:
        """The step number were no unread step skipped (a log line's cadence)."""
        return self.trainer.step + self.unread.batches

    def read(self, values: Optional[Mapping[str, Any]] = None) -> Optional[Dict[str, float]]:
        """Read the counters, with the newest step's flag and ``values``' tensors (one host read),
        and bring ``step``, ``nonfinite_total``, ``nonfinite_streak`` and the epoch's count up to
        date; warn of skipped steps; raise :class:`NonFiniteLossError` once ``train.max_nonfinite``
        in a row were skipped (noticed here, not at the step itself). Returns ``values`` as
        floats, or None when the newest step was skipped or none were given."""
        tr, unread = self.trainer, self.unread
        if unread is None:
            return None
        keys = [k for k, v in (values or {}).items() if isinstance(v, torch.Tensor)]
        parts = [unread.counters()]
        if values is not None:
            parts += [self.last_ok.double().reshape(1)] + [values[k].double().reshape(1) for k in keys]
        read = torch.cat(parts).tolist()
        skipped, streak, longest = (int(x) for x in read[:3])
        taken, done = unread.batches, unread.batches - skipped
        unread.clear()
        tr.step += done
        tr.nonfinite_total += skipped
        tr.nonfinite_streak = streak
        if tr.epoch_sums:
            tr.epoch_sums["count"] = int(tr.epoch_sums.get("count") or 0) + done
            if not tr.epoch_sums["count"]:
                tr.epoch_sums.get("sums", {}).clear()  # no step taken: nothing to average (as per-step)
        if skipped:
            tr.logger.warning(f"{skipped} of the last {taken} step(s) skipped for a non-finite loss or gradient, "
                              f"up to step {tr.step} (epoch {tr.epoch + 1}; {streak} in a row now, "
                              f"{tr.nonfinite_total} in total)")
        limit = tr.tcfg["max_nonfinite"]
        if longest >= limit:
            raise NonFiniteLossError(
                f"{longest} non-finite losses in a row (train.max_nonfinite {limit}), noticed at step {tr.step} "
                f"(epoch {tr.epoch + 1}; the device is read every train.log_every steps): {skipped} of the last "
                f"{taken} step(s) skipped, {tr.nonfinite_total} in total; stopping. The last checkpoint in "
                f"{tr.ckpt_dir} was left as it was. {nonfinite_advice(tr.tcfg).capitalize()}")
        if values is None or read[3] < 1:
            return None
        return dict(values, **dict(zip(keys, read[4:])))

    def settle(self) -> None:
        """Read the steps still unread (an epoch end, a stop): the counters exact for a save."""
        if self.unread is not None:
            self.read()
            self.unread = None

    def skip(self, terms: Mapping[str, torch.Tensor], grad_norm: Optional[torch.Tensor]) -> None:
        """Not reached: the objective skips only with the adaptive prior, which rules this mode out."""
        raise AssertionError("the sync-free step never skips before the backward")


def sync_free_possible(optimizer: torch.optim.Optimizer, scaler, prior, world_size: int) -> bool:
    """Whether non-finite steps can be skipped with no host read: the optimiser is fused Adam(W),
    which skips a step on the device through its ``found_inf``; no fp16 grad scaler (it has its
    own skip); no adaptive prior (it reads the terms before the backward); one process (DDP
    agrees on each step with an all-reduce)."""
    fused = isinstance(optimizer, torch.optim.Adam) and all(g.get("fused") for g in optimizer.param_groups)
    return bool(fused) and not scaler.is_enabled() and not prior.adaptive and world_size == 1


__all__ = ["CheckedSteps", "SyncFreeSteps", "UnreadSteps", "nonfinite_advice", "sync_free_possible"]
