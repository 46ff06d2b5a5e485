"""A training run's checkpoints: what a save holds, whether the model is worth saving, where
a stop leaves the run. A mixin of ``cans.train.trainer.Trainer`` (it reads the trainer's model,
optimiser, counters and run folder); what a checkpoint holds is ``cans.train.state``.

A save is refused when the weights, or the model's outputs on one training input
(:meth:`CheckpointSaving.outputs_finite`), are not finite: a "good" ``last.pth`` never gives NaN.
"""
from __future__ import annotations

import math
import os
from typing import Any, Dict, Optional

import torch

from ..engine.checkpoint import DiskFullError, atomic_torch_save, load_checkpoint
from ..errors import NonFiniteLossError
from ..io.files import check_free_space
from ..signals import signals_ignored
from .state import capture_train_state, interrupt_state, restore_train_state
from .steps import nonfinite_advice


def resume_hint(path: str) -> str:
    """How to continue from the checkpoint ``path``, as typed: the run folder follows the checkpoint
    (``cans.train.rundir.resume_folder``), so no ``--set output_dir`` is needed."""
    return (f"to continue exactly where it stopped, run the same command with --resume {path} "
            f"(or with --set train.auto_resume=true)")


class CheckpointSaving:
    """The checkpoint methods of :class:`cans.train.trainer.Trainer`."""

    def checkpoint_bytes(self) -> int:
        """About the size of a training checkpoint: weights and AdamW's two moments, plus 1 MiB."""
        return 3 * sum(p.numel() * p.element_size() for p in self.model.parameters()) + 2 ** 20

    def check_disk_space(self, copies: int = 2) -> None:
        """Refuse (one line) when the checkpoint folder cannot hold ``copies`` more checkpoints
        (an atomic save needs the new file beside the old one)."""
        try:
            check_free_space(self.ckpt_dir, copies * self.checkpoint_bytes(), f"{copies} checkpoints of this model")
        except DiskFullError as exc:
            raise DiskFullError(f"{exc}; free space or choose another output_dir") from None

    def state_dict(self, gather_rng: bool = True) -> Dict[str, Any]:
        """Everything a resume needs (``cans.train.state.capture_train_state``). ``gather_rng``
        collects every rank's RNG state (a collective call: all ranks must call it); without it
        ``rng_ranks`` is None."""
        return capture_train_state(self, gather_rng)

    def progress_text(self) -> str:
        """Where the run stands: completed epochs, the batch of a partial epoch, steps."""
        part = f" and {self.batches_done} batch(es) of epoch {self.epoch + 1}" if self.batches_done else ""
        return f"{self.epoch} complete epoch(s){part}, step {self.step}"

    def weights_finite(self) -> bool:
        return bool(torch.stack([p.detach().isfinite().all() for p in self.model.parameters()]).all().item())

    @torch.no_grad()
    def outputs_finite(self, collective: bool = True) -> bool:
        """Whether the model turns ``self._probe`` (the first sample of the run's first training
        batch) into finite images: finite weights can be so large (1e30 after one step at a huge
        learning rate) that every output is NaN. True before any step. Under DDP the ranks agree
        (an all-reduce) unless ``collective`` is False."""
        if self._probe is None:
            return True
        was_training = self.model.training
        self.model.eval()
        try:
            with self._autocast():
                outputs = self.model(self._probe)
            ok = torch.stack([o.isfinite().all() for o in outputs]).all().float().reshape(1)
        finally:
            self.model.train(was_training)
        if collective and self.world_size > 1:
            torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
        return bool(ok.item() >= 1)

    def _unsaveable(self, collective: bool = True) -> Optional[str]:
        """Why the model must not be saved (non-finite weights, or outputs on the probe), or None."""
        if not self.weights_finite():
            return "the weights hold non-finite values"
        if not self.outputs_finite(collective):
            top = max(float(p.detach().abs().max()) for p in self.model.parameters())
            return f"the model's outputs are not finite (its weights reach {top:.3g})"
        return None

    def saveable_state(self, name: str) -> Dict[str, Any]:
        """:meth:`state_dict`, once the model is known to be worth saving (every rank must call it
        in DDP): weights or outputs (:meth:`outputs_finite`) that are not finite raise
        :class:`NonFiniteLossError` naming ``name``, the file not written, and the last checkpoint
        that is good (the files on disk are kept)."""
        why = self._unsaveable()
        if why:
            raise NonFiniteLossError(
                f"epoch {self.epoch}, step {self.step}: {why}; {name} not written; "
                f"{self._kept() if self._last_good else 'no good checkpoint of this run was written yet'}. "
                f"{nonfinite_advice(self.tcfg).capitalize()}")
        return self.state_dict()

    def save(self, name: str, state: Optional[Dict[str, Any]] = None) -> Optional[str]:
        """Write ``checkpoints/<name>`` atomically on rank 0 (every rank must call it in DDP):
        ``state``, taken from :meth:`saveable_state` (one check for the files an epoch end writes),
        else :meth:`saveable_state` now. A full disk is a :class:`DiskFullError` naming the
        checkpoint still good."""
        state = self.saveable_state(name) if state is None else state
        if not self.is_main:
            return None
        path = os.path.join(self.ckpt_dir, name)
        try:
            atomic_torch_save(state, path, f"checkpoint {name} ({self.progress_text()})")
        except DiskFullError as exc:
            raise DiskFullError(f"{exc}; {self._kept() if self._last_good else 'no checkpoint written yet'}; "
                                "free space and resume with --resume (or train.auto_resume=true)") from None
        if name == "last.pth":
            self._last_good = f"{os.path.abspath(path)} ({self.progress_text()})"
        return path

    def _kept(self) -> str:
        return f"the last good checkpoint is {self._last_good}"

    def load(self, path: str) -> None:
        """Restore everything saved by ``save`` (resume; ``cans.train.state.restore_train_state``)."""
        ckpt = load_checkpoint(path, map_location="cpu")
        restore_train_state(self, ckpt, path)
        best = (f"best validation PSNR {self.best_metric:.3f} dB (epoch {self.best_epoch})"
                if self.best_epoch is not None and math.isfinite(self.best_metric) else "no validation yet")
        self.logger.info(f"resumed from {os.path.abspath(path)}: {self.progress_text()}, {best}")
        best_file = os.path.join(self.ckpt_dir, "best.pth")
        if self.best_epoch is not None and self.is_main and not os.path.isfile(best_file):
            self.logger.warning(f"{path} records a best validation at epoch {self.best_epoch}, but {best_file} "
                                "does not exist (deleted?); the next new best writes it")

    def _save_stopped(self) -> None:
        """A stop requested during the training steps: every rank stopped after the same step, so
        the state is whole; save it (the resume continues at the next batch)."""
        with signals_ignored():
            state = self.saveable_state("last.pth")
            state["interrupted"] = True
            path = self.save("last.pth", state)
        self._stop_saved = True
        if path:
            self.logger.info(f"stopped ({self.stop.requested}): saved {path} ({self.progress_text()}); "
                             f"{resume_hint(path)}")

    def _after_hard_stop(self, exc: BaseException) -> None:
        """An immediate interrupt. Inside the training steps a step may be half done: nothing is
        saved. Elsewhere (validation, saving) the state is whole and is saved without collective
        calls. Never raises (the interrupt goes on)."""
        if not self.is_main or self._stop_saved:
            return
        if self.stop.graceful:
            self.logger.info(f"stopped at once during a training step: nothing saved; "
                             f"{self._kept() if self._last_good else 'no checkpoint was written yet'}")
            return
        try:
            with signals_ignored():
                path = os.path.join(self.ckpt_dir, "last.pth")
                state = interrupt_state(self)  # no collective calls
                why = self._unsaveable(collective=False)
                if why:
                    self.logger.info(f"interrupted: {why}, last.pth not written; "
                                     f"{self._kept() if self._last_good else 'no checkpoint was written yet'}")
                    return
                atomic_torch_save(state, path, "checkpoint last.pth (interrupted)")
            self.logger.info(f"interrupted: saved {path} ({self.progress_text()}"
                             f"{', its validation and saves still to do' if self.end_pending else ''}); "
                             f"{resume_hint(path)}")
        except Exception as err:  # a failing save must not hide the interrupt
            self.logger.error(f"interrupted, and saving last.pth failed ({err}); "
                              f"{self._kept() if self._last_good else 'no checkpoint was written yet'}")


__all__ = ["CheckpointSaving", "resume_hint"]
