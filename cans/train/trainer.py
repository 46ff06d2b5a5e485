"""The training loop of CANS (docs/training.md), single process or DistributedDataParallel.

``Trainer(cfg, ...)`` builds everything from a resolved config (``cans.config.load_config``): model,
loss, AdamW with gradient clipping and the per-epoch cosine schedule (``cans.train.schedule``), the
data loaders (``cans.train.loaders``) and the run folder (``cans.train.rundir``); ``fit()`` trains,
validates, saves and returns a summary dict. Batches are ``cans.data`` sample dicts; the model returns
``(rgb, raw)`` of the targets' shapes. What a checkpoint holds is ``cans.train.state``; signals are
``cans.signals``. What survives an interrupt, a crash or a full disk: docs/training.md.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import replace
from typing import Any, Dict, Mapping, Optional

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from ..config import ConfigError, default_output_dir, dump_config
from ..data import build_dataset, start_workers
from ..engine import distributed as du
from ..engine import fastpath
from ..engine.checkpoint import CheckpointError, DiskFullError, atomic_torch_save, load_checkpoint, load_model_weights
from ..engine.fastpath import autocast_context
from ..errors import NonFiniteLossError
from ..evaluate.images import validation_panels
from ..evaluate.scores import evaluate
from ..io.files import atomic_write_text, check_free_space
from ..models import build_model, unwrap_model
from ..models.published import weights_line
from ..outdirs import prepare_output_dir
from ..signals import StopRequest, signals_ignored
from .loaders import TrainLoader, valid_loader
from .logger import RunLogger
from .losses import build_objective
from .rundir import RunLock, remove_leftovers, resume_point
from .schedule import build_optimizer, build_scheduler, cosine_lr
from .seeding import seed_everything
from .state import capture_train_state, interrupt_state, restore_train_state


def nonfinite_advice(tcfg: Mapping[str, Any]) -> str:
    """The keys most likely behind non-finite numbers, with this run's values."""
    return (f"lower train.base_lr (now {tcfg.get('base_lr'):g}), keep train.clip_grad on (now "
            f"{tcfg.get('clip_grad')}) or set train.amp=off (now {tcfg.get('amp')})")


def resume_hint(path: str) -> str:
    """How to continue from the checkpoint ``path``, as typed: the run folder follows the checkpoint
    (``cans.train.rundir.resume_folder``), so no ``--set output_dir`` is needed."""
    return (f"to continue exactly where it stopped, run the same command with --resume {path} "
            f"(or with --set train.auto_resume=true)")


class UnreadSteps:
    """The steps a sync-free epoch took since the host last read the device
    (:meth:`Trainer.sync_free_possible`).

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


# ---------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------

class Trainer:
    """Train a CANS model from a resolved config.

    Keyword arguments (all optional, for tests and custom use): ``model`` (an nn.Module
    returning ``(rgb, raw)``; default ``cans.models.build_model(cfg)``), ``train_set`` /
    ``valid_set`` (datasets of sample dicts; default ``cans.data.build_dataset(cfg, split)``;
    ``valid_set=False`` disables validation), ``resume`` (a checkpoint path), ``progress``
    (tqdm bars), ``device``.

    The sync-free mode (``sync_free``, see :meth:`sync_free_possible`: fused AdamW, one process):
    a step reads nothing back; non-finite steps are skipped on the device and counted by
    :class:`UnreadSteps`. ``step``, ``nonfinite_total`` / ``nonfinite_streak`` and the epoch's
    count are then exact as of the last read (a logging step, a stop, the epoch end: so at every
    log line and save) and lag behind while the epoch runs; a log line is due when ``step`` plus
    the unread steps (the step number had none been skipped) reaches the cadence, as the
    per-step read's when nothing is skipped.
    """

    def __init__(self, cfg: Mapping[str, Any], *, model: Optional[nn.Module] = None,
                 train_set: Optional[Dataset] = None, valid_set=None, resume: Optional[str] = None,
                 progress: bool = True, device: Optional[torch.device] = None):
        self.cfg = cfg
        self.tcfg = cfg["train"]
        self.progress = progress
        self.output_dir = cfg.get("output_dir") or default_output_dir(cfg.get("name") or "run")
        self.ckpt_dir = os.path.join(self.output_dir, "checkpoints")

        # device and processes
        if device is None:
            device = du.init_distributed()
        else:
            # starts the process group when launched by torchrun
            du.init_distributed(device.type, timeout_s=self.tcfg["dist_timeout"])
        self.device = device
        self.rank, self.world_size = du.get_rank(), du.get_world_size()
        self.is_main = self.rank == 0
        self.lock: Optional[RunLock] = None
        self.logger = None
        try:
            self._setup(cfg, model, train_set, valid_set, resume)
        except BaseException:
            self.close()
            raise

    def _setup(self, cfg, model, train_set, valid_set, resume) -> None:
        device = self.device
        if self.is_main:
            prepare_output_dir(self.output_dir, "output_dir")  # one line now, not an OSError later
            self.lock = RunLock(self.output_dir).acquire()  # before anything in the folder is written
        # a folder that holds a run is resumed when asked, else refused (decided on rank 0), before
        # the logs open: a refused start writes nothing into the run's folder
        resume = du.broadcast_object(self._resume_decision(resume) if self.is_main else None)
        if isinstance(resume, ConfigError):
            raise resume
        self.logger = RunLogger(self.output_dir, enabled=self.is_main)
        if self.lock is not None and self.lock.notice:
            self.logger.warning(self.lock.notice)
        if self.is_main:
            removed = remove_leftovers(self.output_dir)
            if removed:
                self.logger.info(f"removed {len(removed)} temporary file(s) of an interrupted write: "
                                 f"{', '.join(removed)}")
        if device.type == "cpu":
            self.logger.warning("no CUDA device: training on the CPU, which is for demos and tests only (slow)")

        if self.tcfg.get("num_threads"):
            torch.set_num_threads(int(self.tcfg["num_threads"]))
        self.seed = self.tcfg.get("manual_seed")
        if self.seed is None:
            self.seed = int(torch.empty((), dtype=torch.int64).random_(0, 2 ** 31 - 1).item())
            self.seed = du.broadcast_object(self.seed)
        self._setup_determinism()
        seed_everything(self.seed)  # same initial weights on every rank

        # model
        if model is None:
            model = build_model(cfg)
        if self.tcfg.get("pretrained") and not resume:
            self._load_pretrained(model, self.tcfg["pretrained"])
            self.logger.info(f"loaded pretrained weights {weights_line(self.tcfg['pretrained'])}")
        self.block_size = getattr(model, "block_size", 2)
        self.channels_last = bool(self.tcfg.get("channels_last"))
        model = model.to(device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model  # the bare network (checkpoints, evaluation)

        # precision
        self.amp = self.tcfg.get("amp") or "off"
        if self.amp == "fp16" and device.type != "cuda":
            raise ConfigError("train.amp: fp16 needs a CUDA device (use 'bf16' or 'off' on the CPU)")
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp == "fp16")

        # speed: train.fast (cans.engine.fastpath) acts on CUDA only
        self.fast = fastpath.plan_from_config(cfg, device, "train")
        fastpath.apply_fast_path(model, replace(self.fast, compile=False))  # flags and kernel swap

        # optimisation
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.params, self.tcfg, fused=self.fast.fused_adamw)
        self.scheduler = build_scheduler(self.optimizer, self.tcfg)
        self.objective = build_objective(cfg)
        self.criterion, self.prior = self.objective.loss, self.objective.prior
        # skip non-finite steps without a host read when the optimiser can (see sync_free_possible);
        # tests set it False to compare with the per-step read
        self.sync_free = self.sync_free_possible()
        self._unread: Optional[UnreadSteps] = None  # the sync-free steps not yet read
        self._last_ok: Optional[torch.Tensor] = None  # the newest sync-free step's flag (device)

        # wrappers
        train_model = model
        if self.world_size > 1:
            train_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        if self.fast.compile:
            train_model = fastpath.compile_model(train_model, self.fast)
        self.train_model = train_model
        # validation (CUDA): its own compiled graphs, dynamic shapes after the first frame size
        self.eval_model = (fastpath.compile_eval_model(model, self.fast, log=self.logger.info)
                           if self.fast.compile and device.type == "cuda" else model)

        # data
        if train_set is None:
            train_set = build_dataset(cfg, "train")
        if valid_set is None:
            valid_set = build_dataset(cfg, "valid")
        self.train_set = train_set
        self.valid_set = valid_set or None
        data_block = getattr(train_set, "block_size", None)
        if isinstance(data_block, int) and data_block != self.block_size:
            raise ConfigError(f"model.type {cfg['model']['type']} has block_size {self.block_size} but data.type "
                              f"{cfg['data']['type']} packs {data_block}x{data_block} mosaic pixels: they must agree")
        self.train_loading = TrainLoader(train_set, cfg, device, self.seed, self.rank, self.world_size)
        self.train_loader = self.train_loading.loader
        self.valid_loader = (valid_loader(self.valid_set, cfg, device, self.rank, self.world_size)
                             if self.valid_set is not None else None)

        # state
        self.epoch = 0  # completed epochs
        self.step = 0
        self.best_metric = -math.inf
        self.best_epoch = None
        self.bad_validations = 0
        self.nonfinite_total = 0
        self.nonfinite_streak = 0
        self.history: Dict[str, Any] = {"initial": None, "last": None}
        self.batches_done = 0  # batches of epoch self.epoch + 1 already trained (a mid-epoch stop)
        self.epoch_sums: Dict[str, Any] = {}  # their logged values' running sums, and "count"
        self.end_pending = False  # epoch self.epoch trained, its validation and saves not yet done
        self.stop = StopRequest()
        self._last_good: Optional[str] = None  # what the newest last.pth holds, for error messages
        self._probe: Optional[torch.Tensor] = None  # one training input, set by the first step
        self._stop_saved = False
        self._valid_skipped: list = []  # markers of validation images skipped (data.skip_bad_files)

        if self.is_main:
            os.makedirs(self.ckpt_dir, exist_ok=True)
            self.check_disk_space(2)
            dump_config(cfg, os.path.join(self.output_dir, "config.yaml"))
        if resume:
            self.load(resume)
            self._last_good = f"{os.path.abspath(resume)} ({self.progress_text()})"
        else:
            seed_everything(self.seed + self.rank)  # per-rank streams for augmentations

    # ----------------------------------------------------------------- setup helpers
    def _resume_decision(self, resume: Optional[str]):
        """``cans.train.rundir.resume_point``, its refusal returned (to be broadcast) instead of raised."""
        try:
            return resume_point(self.output_dir, resume, bool(self.tcfg.get("auto_resume")))
        except ConfigError as exc:
            return exc

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

    def _setup_determinism(self) -> None:
        if self.tcfg.get("deterministic"):
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            # warn_only: a few CUDA kernels (adaptive pooling backward) have no deterministic version
            torch.use_deterministic_algorithms(True, warn_only=self.device.type == "cuda")
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        # otherwise cuDNN benchmark is the fast-path plan's (on CUDA: on unless deterministic, fast or not)

    def _load_pretrained(self, model: nn.Module, path: str) -> None:
        try:
            load_model_weights(model, path, self.cfg)
        except CheckpointError as exc:
            raise CheckpointError(f"train.pretrained: {exc}") from None

    def _autocast(self):
        return autocast_context(self.device, self.amp)

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    # ----------------------------------------------------------------- checkpoints
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

    # ----------------------------------------------------------------- training
    def _nonfinite(self, reason: str) -> None:
        self.nonfinite_total += 1
        self.nonfinite_streak += 1
        self.optimizer.zero_grad(set_to_none=True)
        limit = self.tcfg["max_nonfinite"]
        self.logger.warning(f"step {self.step}: {reason}; step skipped "
                            f"({self.nonfinite_streak} in a row, {self.nonfinite_total} in total)")
        if self.nonfinite_streak >= limit:
            raise NonFiniteLossError(
                f"{limit} non-finite losses in a row, the last at step {self.step} (epoch {self.epoch + 1}); "
                f"stopping. The last checkpoint in {self.ckpt_dir} was left as it was. "
                f"{nonfinite_advice(self.tcfg).capitalize()}")

    def _agree(self, ok: torch.Tensor) -> bool:
        """``ok`` (a 0-dim bool tensor on the device) on every rank, read with one host sync; under
        DDP one all-reduce carries it and the stop request too (``self.stop_agreed``), so the ranks
        skip and stop together (a signal reaches them at different steps)."""
        flag = ok.float().reshape(1)
        if self.world_size > 1:
            go_on = torch.ones_like(flag) if self.stop.requested is None else torch.zeros_like(flag)
            flags = torch.cat([flag, go_on])
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MIN)
            ok_now, go = flags.tolist()
            self.stop_agreed = go < 1
            return ok_now >= 1
        self.stop_agreed = self.stop.requested is not None
        return bool(flag.item() >= 1)

    def sync_free_possible(self) -> bool:
        """Whether non-finite steps can be skipped with no host read (the sync-free mode): the
        optimiser is fused Adam(W), which skips a step on the device through its ``found_inf`` (as
        GradScaler uses it); no fp16 grad scaler (it has its own skip); no adaptive prior (it reads
        the terms before the backward); one process (DDP agrees on each step with an all-reduce)."""
        fused = (isinstance(self.optimizer, torch.optim.Adam)
                 and all(g.get("fused") for g in self.optimizer.param_groups))
        return bool(fused) and not self.scaler.is_enabled() and not self.prior.adaptive and self.world_size == 1

    def train_step(self, batch: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        """One optimiser step on ``batch``; returns the logged values (0-dim tensors on the device
        and floats, read by the caller only when it logs), or None when skipped.

        One host synchronisation per step, after the backward: the loss terms and the gradient
        norm are checked together on the device (the adaptive prior, which reads the terms before
        the backward, adds one before it). In the sync-free mode (``self.sync_free``) none: the
        flag goes to the optimiser (:meth:`_step_unread`) and the values always come back, the flag
        in ``self._last_ok``."""
        self._last_ok = None
        x = self._to_device(batch["noisy_raw"])
        if self._probe is None:  # what outputs_finite feeds the model before each save
            self._probe = torch.nan_to_num(x[:1].detach(), nan=0.0, posinf=1.0, neginf=0.0)  # a copy
        targets = {k: self._to_device(batch[k]) for k in ("clean_raw", "clean_rgb")}
        with self._autocast():
            outputs = self.train_model(x)
        scale = self.scaler.get_scale() if self.scaler.is_enabled() and self.prior.adaptive else 1.0
        total, logs = self.objective(outputs, targets, self.step, self.train_model, scale=scale, agree=self._agree)
        if total is None:
            return self._skip(logs, None)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        clip = self.tcfg.get("clip_grad")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, float(clip) if clip else float("inf"))
        # the fp16 scaler skips inf/nan gradients itself: only the loss is checked then
        terms = [logs[k] for k in ("raw", "rgb")]
        checked = terms + ([] if self.scaler.is_enabled() else [grad_norm.detach().reshape(())])
        ok = torch.stack(checked).isfinite().all()
        if self.sync_free:
            return self._step_unread(ok, logs, total, grad_norm)
        if not self._agree(ok):
            return self._skip(logs, grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        self.nonfinite_streak = 0
        return dict(logs, total=total.detach(), grad_norm=grad_norm.detach())

    def _step_unread(self, ok: torch.Tensor, logs: Dict[str, Any], total: torch.Tensor,
                     grad_norm: torch.Tensor) -> Dict[str, Any]:
        """The sync-free optimiser step: fused Adam(W) takes it, or leaves the weights, moments and
        its step counter untouched when ``ok`` (0-dim bool, device) is False, without the host
        reading ``ok``; :class:`UnreadSteps` counts it until the next read (:meth:`_read_unread`)."""
        if self._unread is None:
            self._unread = UnreadSteps(self.device, self.nonfinite_streak)
        opt = self.optimizer
        opt.grad_scale, opt.found_inf = None, (~ok).float()
        try:
            opt.step()
        finally:
            del opt.grad_scale, opt.found_inf
        self._unread.add(ok)
        self._last_ok = ok
        self.stop_agreed = self.stop.requested is not None
        return dict(logs, total=total.detach(), grad_norm=grad_norm.detach())

    def _read_unread(self, values: Optional[Mapping[str, Any]] = None) -> Optional[Dict[str, Any]]:
        """Read the sync-free steps' counters, with the newest step's flag and ``values``' tensors
        (one host read), and bring ``step``, ``nonfinite_total``, ``nonfinite_streak`` and the
        epoch's count up to date; warn of skipped steps; raise :class:`NonFiniteLossError` once
        ``train.max_nonfinite`` in a row were skipped (noticed here, not at the step itself).
        Returns ``values`` as floats, or None when the newest step was skipped or none were given."""
        unread = self._unread
        if unread is None:
            return None
        keys = [k for k, v in (values or {}).items() if isinstance(v, torch.Tensor)]
        parts = [unread.counters()]
        if values is not None:
            parts += [self._last_ok.double().reshape(1)] + [values[k].double().reshape(1) for k in keys]
        read = torch.cat(parts).tolist()
        skipped, streak, longest = (int(x) for x in read[:3])
        taken, done = unread.batches, unread.batches - skipped
        unread.clear()
        self.step += done
        self.nonfinite_total += skipped
        self.nonfinite_streak = streak
        if self.epoch_sums:
            self.epoch_sums["count"] = int(self.epoch_sums.get("count") or 0) + done
            if not self.epoch_sums["count"]:
                self.epoch_sums.get("sums", {}).clear()  # no step taken: nothing to average (as per-step)
        if skipped:
            self.logger.warning(f"{skipped} of the last {taken} step(s) skipped for a non-finite loss or gradient, "
                                f"up to step {self.step} (epoch {self.epoch + 1}; {streak} in a row now, "
                                f"{self.nonfinite_total} in total)")
        limit = self.tcfg["max_nonfinite"]
        if longest >= limit:
            raise NonFiniteLossError(
                f"{longest} non-finite losses in a row (train.max_nonfinite {limit}), noticed at step {self.step} "
                f"(epoch {self.epoch + 1}; the device is read every train.log_every steps): {skipped} of the last "
                f"{taken} step(s) skipped, {self.nonfinite_total} in total; stopping. The last checkpoint in "
                f"{self.ckpt_dir} was left as it was. {nonfinite_advice(self.tcfg).capitalize()}")
        if values is None or read[3] < 1:
            return None
        return dict(values, **dict(zip(keys, read[4:])))

    def _settle(self) -> None:
        """Read the sync-free steps still unread (an epoch end, a stop): the counters exact for a save."""
        if self._unread is not None:
            self._read_unread()
            self._unread = None

    def _skip(self, terms: Mapping[str, torch.Tensor], grad_norm: Optional[torch.Tensor]) -> None:
        """A non-finite step: say which numbers (read now, on this rare path) and skip it."""
        bad = [f"{k}={float(terms[k]):.4g}" for k in ("raw", "rgb") if not math.isfinite(float(terms[k]))]
        what = "non-finite loss " + ", ".join(bad) if bad else f"non-finite gradient norm {grad_norm.item()}"
        self._nonfinite(what)
        return None

    def train_epoch(self, epoch: int) -> Optional[Dict[str, float]]:
        """One pass over the training loader from batch ``self.batches_done`` on; returns the mean of
        the logged values, or None when a stop was requested (``self.batches_done`` and
        ``self.epoch_sums`` then say where the epoch stands)."""
        from tqdm import tqdm

        self.train_model.train()
        self.train_loading.set_epoch(epoch, self.batches_done)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)  # gpu_mem_gb: this epoch's peak
        lr = self.optimizer.param_groups[0]["lr"]
        epochs = int(self.tcfg["epochs"])
        log_every = max(1, int(self.tcfg.get("log_every") or 50))
        tb_every = max(1, log_every // 10)
        sums: Dict[str, float] = dict(self.epoch_sums.get("sums") or {})
        self.epoch_sums = {"sums": sums, "count": int(self.epoch_sums.get("count") or 0)}
        bar = tqdm(start_workers(self.train_loader), desc=f"epoch {epoch + 1}/{epochs}", leave=False,
                   dynamic_ncols=True,
                   initial=self.batches_done, total=self.batches_done + len(self.train_loader),
                   disable=not (self.progress and self.is_main))
        t_data = time.perf_counter()
        self.stop_agreed = False
        for batch in bar:
            t_start = time.perf_counter()
            values = self.train_step(batch)
            t_end = time.perf_counter()
            self.batches_done += 1
            if values is not None:
                values["data_time"] = t_start - t_data
                values["step_time"] = t_end - t_start
                values["lr"] = lr
                if self.device.type == "cuda":
                    values["gpu_mem_gb"] = torch.cuda.max_memory_allocated(self.device) / 2 ** 30
                ok = self._last_ok
                if ok is None:  # a step taken (the flag was read)
                    for k, v in values.items():  # tensors stay on the device: no sync here
                        sums[k] = sums.get(k, 0.0) + (v.double() if isinstance(v, torch.Tensor) else v)
                    self.epoch_sums["count"] += 1
                    due = self.step
                else:  # sync-free: the unread flag masks the sums; the count comes with the next read
                    ok_d = ok.double()
                    for k, v in values.items():
                        sums[k] = sums.get(k, 0.0) + (torch.where(ok, v.double(), 0.0) if isinstance(v, torch.Tensor)
                                                      else ok_d * v)
                    due = self.step + self._unread.batches  # the step number were no unread step skipped
                if due % tb_every == 0 or due % log_every == 0:  # read the values now
                    values = ({k: float(v) for k, v in values.items()} if ok is None
                              else self._read_unread(values))
                    if values is not None:  # None: this unread step was skipped
                        bar.set_postfix(loss=f"{values['total']:.4f}", lr=f"{lr:.2e}")
                        self.logger.scalars(values, self.step, prefix="train")
                        if due % log_every == 0:
                            self.logger.info(f"epoch {epoch + 1} step {self.step} " +
                                             " ".join(f"{k} {v:.4g}" for k, v in values.items()))
            if self.stop_agreed:
                bar.close()
                self._settle()
                return None
            t_data = time.perf_counter()
        bar.close()
        self._settle()
        count = self.epoch_sums["count"]
        means = {k: float(v) / max(count, 1) for k, v in sums.items()}
        means["lr"] = lr
        means["steps"], means["batches"] = count, self.batches_done  # steps taken of the epoch's batches
        self.batches_done, self.epoch_sums = 0, {}
        return means

    # ----------------------------------------------------------------- validation
    def validate(self, epoch: int) -> Optional[Dict[str, float]]:
        """Full-image validation with ``cans.evaluate.scores``; averaged over all ranks' images."""
        if self.valid_loader is None:
            return None

        model = self.model
        was_training = model.training
        model.eval()
        report = evaluate(self.eval_model, self.valid_loader, self.device, amp=self.amp,
                          channels_last=self.channels_last, progress=self.progress and self.is_main, desc="valid")
        model.train(was_training)
        self._valid_skipped = list(report.get("skipped") or [])
        if self._valid_skipped and self.is_main:
            self.logger.warning(f"validation skipped {len(self._valid_skipped)} image(s) with bad files "
                                "(data.skip_bad_files): "
                                + ", ".join(str(m.get("img_file")) for m in self._valid_skipped[:5]))
        metrics = {"psnr": report["reconstruction"]["psnr"], "ssim": report["reconstruction"]["ssim"],
                   "raw_psnr": report["denoising"]["average"]["psnr"],
                   "raw_ssim": report["denoising"]["average"]["ssim"]}
        if any(math.isnan(v) for v in metrics.values()):
            self.logger.warning(f"validation after epoch {self.epoch}: non-finite metrics "
                                + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
            raise NonFiniteLossError(
                f"validation after epoch {self.epoch} (step {self.step}) is not finite (PSNR {metrics['psnr']}): the "
                f"weights no longer give finite images and were not saved"
                f"{'; ' + self._kept() if self._last_good else ''}. {nonfinite_advice(self.tcfg).capitalize()}")
        self.logger.scalars(metrics, self.step, prefix="valid")
        if self.is_main:
            self._log_images(self.step)
        return metrics

    def _log_images(self, step: int, max_side: int = 256) -> None:
        """TensorBoard: input (brightened) | RGB output | RGB target, and RAW output | RAW target, of
        the first validation image (``cans.evaluate.images.validation_panels``)."""
        if self.logger.writer is None or self.valid_set is None or len(self.valid_set) == 0:
            return
        panels = validation_panels(self.model, self.valid_set[0], self.block_size, self.device,
                                   channels_last=self.channels_last, autocast=self._autocast, max_side=max_side)
        for tag, panel in (panels or {}).items():
            self.logger.image(tag, panel, step)

    # ----------------------------------------------------------------- main loop
    def fit(self, max_epochs: Optional[int] = None) -> Dict[str, Any]:
        """Train from where the run stands to ``train.epochs`` (or only ``max_epochs`` more); return a summary.

        Each epoch ends with validation (every ``valid_per_epoch``), ``best.pth`` on a new best
        validation PSNR, then ``last.pth``, and ``epoch_XXXX.pth`` every ``save_per_epoch``. With
        ``train.pretrained`` the starting weights are validated first and are the first candidate
        for ``best.pth``. Ctrl-C / SIGTERM: see :class:`cans.signals.StopRequest`; the
        state is saved to ``last.pth`` and ``KeyboardInterrupt`` re-raised.
        """
        epochs = int(self.tcfg["epochs"])
        stop = epochs if max_epochs is None else min(epochs, self.epoch + max_epochs)
        started = time.time()
        n_params = sum(p.numel() for p in self.model.parameters())
        self.logger.info(f"run {os.path.abspath(self.output_dir)}: {type(unwrap_model(self.model)).__name__} "
                         f"{n_params:,} parameters, "
                         f"{len(self.train_set)} training samples/epoch, "
                         f"{len(self.valid_set) if self.valid_set is not None else 0} validation images, "
                         f"device {self.device}, {self.world_size} process(es), amp {self.amp}, "
                         f"speed: {self.fast.describe()}, "
                         + (f"epochs {self.epoch + 1}..{stop} of {epochs}" if self.epoch < stop
                            else f"nothing to train: {self.epoch} of {epochs} epochs already done"))
        stopped_early = False
        self.stop = StopRequest(notice=self.logger.warning)
        with self.stop.handling():
            try:
                if self.end_pending:  # resumed between an epoch's training and its validation / saves
                    stopped_early = self._end_epoch(self._means(self.epoch_sums), None)
                self._validate_start()
                for epoch in range(self.epoch, stop):
                    if stopped_early:
                        break
                    t0 = time.time()
                    self.stop.graceful = True
                    means = self.train_epoch(epoch)
                    self.stop.graceful = False
                    if means is None:
                        self._save_stopped()
                        raise KeyboardInterrupt(self.stop.requested)
                    self.scheduler.step()
                    self.epoch, self.end_pending = epoch + 1, True
                    self.epoch_sums = {"sums": means, "count": 1}  # the epoch's means, should its end be resumed
                    stopped_early = self._end_epoch(means, t0)
            except KeyboardInterrupt as exc:
                self._after_hard_stop(exc)
                raise
        summary = {
            "output_dir": self.output_dir, "epochs_done": self.epoch, "steps": self.step,
            "best_psnr": None if self.best_epoch is None else self.best_metric, "best_epoch": self.best_epoch,
            "started_from": self.tcfg.get("pretrained") or None,
            "initial": self.history.get("initial"), "final": self.history.get("last"),
            "nonfinite_steps": self.nonfinite_total, "stopped_early": stopped_early,
            "skipped_pairs": [{"split": sp, "img_file": name, "reason": why} for sp, name, why in self.skipped_pairs()],
            "wall_s": round(time.time() - started, 1),
        }
        if self.is_main:
            atomic_write_text(os.path.join(self.output_dir, "train_summary.json"), json.dumps(summary, indent=2),
                              durable=True)
        self.logger.flush()
        return summary

    def skipped_pairs(self) -> list:
        """``[(split, img_file, reason), ...]``: the pairs ``data.skip_bad_files`` left out of this
        run (training pairs dropped at construction or met bad in this process; validation
        images of the last validation)."""
        out = []
        for split, dataset, seen in (("train", self.train_set, ()), ("valid", self.valid_set, self._valid_skipped)):
            if dataset is not None and hasattr(dataset, "skipped_pairs"):
                out += [(split, name, reason) for name, reason in dataset.skipped_pairs(seen)]
        return out

    @staticmethod
    def _means(epoch_sums: Mapping[str, Any]) -> Dict[str, float]:
        count = max(int(epoch_sums.get("count") or 0), 1)
        return {k: v / count for k, v in (epoch_sums.get("sums") or {}).items()}

    def _validate_start(self) -> None:
        """Validate before epoch 1 with ``train.validate_at_start``, and always when starting from
        ``train.pretrained`` weights: those are then the first candidate for ``best.pth`` (epoch 0),
        so fine-tuning never leaves a best.pth worse than its start."""
        pretrained = bool(self.tcfg.get("pretrained"))
        if self.epoch or self.batches_done or self.history.get("initial") is not None or self.valid_loader is None:
            return
        if not (self.tcfg.get("validate_at_start") or pretrained):
            return
        metrics = self.validate(0)
        self.history["initial"] = metrics
        self.logger.info(f"{'starting' if pretrained else 'untrained'} model: validation PSNR "
                         f"{metrics['psnr']:.3f} dB, "
                         f"SSIM {metrics['ssim']:.4f}, RAW PSNR {metrics['raw_psnr']:.3f} dB")
        if pretrained:
            self.best_metric, self.best_epoch = metrics["psnr"], 0
            self.save("best.pth")

    def _end_epoch(self, means: Mapping[str, float], t0: Optional[float]) -> bool:
        """Validation, the log line, ``best.pth`` then ``last.pth`` (so a recorded best always
        names a file that exists), ``epoch_XXXX.pth``; returns True on an early stop."""
        epochs = int(self.tcfg["epochs"])
        valid_every = max(1, int(self.tcfg.get("valid_per_epoch") or 1))
        save_every = int(self.tcfg.get("save_per_epoch") or 0)
        early = self.tcfg.get("early_stop")
        self.logger.scalars({"epoch_loss": means.get("total"), "lr": means.get("lr")}, self.step, prefix="epoch")
        taken, batches = int(means.get("steps", -1)), int(means.get("batches", 0))
        if taken == 0:
            loss = f"no step taken: all {batches} steps skipped as non-finite, the weights did not change"
        else:
            loss = (f"loss {means.get('total', float('nan')):.4f} (raw {means.get('raw', float('nan')):.4f}, "
                    f"rgb {means.get('rgb', float('nan')):.4f})")
            if 0 < taken < batches:
                loss += f" over {taken} steps ({batches - taken} of {batches} skipped as non-finite)"
        msg = (f"epoch {self.epoch}/{epochs} {loss} "
               f"lr {means.get('lr', float('nan')):.3e}" + (f" {time.time() - t0:.1f}s" if t0 else " (resumed)"))
        if self.prior.adaptive:
            msg += f" gamma {self.prior.gamma:.3f}"
        is_best = False
        if self.valid_loader is not None and (self.epoch % valid_every == 0 or self.epoch == epochs):
            metrics = self.validate(self.epoch - 1)
            self.history["last"] = dict(metrics, epoch=self.epoch)
            msg += f" | valid PSNR {metrics['psnr']:.3f} dB SSIM {metrics['ssim']:.4f} RAW {metrics['raw_psnr']:.3f} dB"
            if metrics["psnr"] > self.best_metric:
                self.best_metric, self.best_epoch, is_best = metrics["psnr"], self.epoch, True
                self.bad_validations = 0
                msg += " (best)"
            else:
                self.bad_validations += 1
        self.logger.info(msg)
        self.end_pending, self.epoch_sums = False, {}
        state = self.saveable_state("best.pth" if is_best else "last.pth")
        if is_best:
            self.save("best.pth", state)
        self.save("last.pth", state)
        if save_every and self.epoch % save_every == 0:
            self.save(f"epoch_{self.epoch:04d}.pth", state)
        self.logger.flush()
        if early and self.bad_validations >= int(early):
            self.logger.info(f"early stop: {self.bad_validations} validations without a new best")
            return True
        return False

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

    def close(self) -> None:
        """Close the logs and release the run folder's lock (safe to call twice)."""
        if self.logger is not None:
            self.logger.close()
        if self.lock is not None:
            self.lock.release()
            self.lock = None


__all__ = ["NonFiniteLossError", "Trainer", "build_optimizer", "build_scheduler", "cosine_lr", "seed_everything"]
