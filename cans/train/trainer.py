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
from ..data import build_dataset
from ..engine import distributed as du
from ..engine import fastpath
from ..engine.checkpoint import CheckpointError, load_model_weights
from ..engine.fastpath import autocast_context
from ..errors import NonFiniteLossError
from ..evaluate.images import validation_panels
from ..evaluate.scores import evaluate
from ..io.files import atomic_write_text
from ..models import build_model, unwrap_model
from ..models.published import weights_line
from ..outdirs import prepare_output_dir
from ..signals import StopRequest
from .epoch import train_one_epoch
from .loaders import TrainLoader, valid_loader
from .logger import RunLogger
from .losses import build_objective
from .rundir import RunLock, remove_leftovers, resume_point
from .saving import CheckpointSaving
from .schedule import build_optimizer, build_scheduler, cosine_lr
from .seeding import seed_everything
from .steps import CheckedSteps, SyncFreeSteps, nonfinite_advice, sync_free_possible

# ---------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------

class Trainer(CheckpointSaving):
    """Train a CANS model from a resolved config.

    Keyword arguments (all optional, for tests and custom use): ``model`` (an nn.Module
    returning ``(rgb, raw)``; default ``cans.models.build_model(cfg)``), ``train_set`` /
    ``valid_set`` (datasets of sample dicts; default ``cans.data.build_dataset(cfg, split)``;
    ``valid_set=False`` disables validation), ``resume`` (a checkpoint path), ``progress``
    (tqdm bars), ``device``.

    What a step does after its backward is ``self.steps`` (``cans.train.steps``): the per-step
    read, or the sync-free mode (``sync_free``: fused AdamW, one process) whose counters are exact
    as of the last read (a log line, a stop, the epoch end: so at every log line and save).
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
        """Build the run in order: the run folder and its logs, the seed, the model, the
        optimisation, the data, the counters (a resume restores them last)."""
        resume = self._open_run_folder(resume)
        self._seed()
        self._build_model(cfg, model, resume)
        self._build_optimisation(cfg)
        self._build_data(cfg, train_set, valid_set)
        self._start_counters(cfg, resume)

    def _open_run_folder(self, resume: Optional[str]) -> Optional[str]:
        """Lock the run folder, decide the resume (a folder that holds a run is resumed when asked,
        else refused, on rank 0, before the logs open: a refused start writes nothing into the
        run's folder), open the logs; returns the checkpoint to resume from, if any."""
        if self.is_main:
            prepare_output_dir(self.output_dir, "output_dir")  # one line now, not an OSError later
            self.lock = RunLock(self.output_dir).acquire()  # before anything in the folder is written
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
        if self.device.type == "cpu":
            self.logger.warning("no CUDA device: training on the CPU, which is for demos and tests only (slow)")
        return resume

    def _seed(self) -> None:
        """The run's seed (``train.manual_seed``, else drawn and shared by all ranks), set before
        the model is built: the same initial weights on every rank."""
        if self.tcfg.get("num_threads"):
            torch.set_num_threads(int(self.tcfg["num_threads"]))
        self.seed = self.tcfg.get("manual_seed")
        if self.seed is None:
            self.seed = int(torch.empty((), dtype=torch.int64).random_(0, 2 ** 31 - 1).item())
            self.seed = du.broadcast_object(self.seed)
        self._setup_determinism()
        seed_everything(self.seed)  # same initial weights on every rank

    def _build_model(self, cfg, model: Optional[nn.Module], resume: Optional[str]) -> None:
        """The network (or ``model``) with ``train.pretrained`` weights unless resuming, on the
        device, its precision and the fast path's flags; ``self.model`` is the bare network."""
        device = self.device
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

    def _build_optimisation(self, cfg) -> None:
        """AdamW, the schedule, the objective, the step policy, and the training / evaluation
        wrappers (DDP, torch.compile)."""
        model, device = self.model, self.device
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.params, self.tcfg, fused=self.fast.fused_adamw)
        self.scheduler = build_scheduler(self.optimizer, self.tcfg)
        self.objective = build_objective(cfg)
        self.criterion, self.prior = self.objective.loss, self.objective.prior
        # skip non-finite steps without a host read when the optimiser can (cans.train.steps);
        # tests set sync_free False to compare with the per-step read
        self.sync_free = sync_free_possible(self.optimizer, self.scaler, self.prior, self.world_size)

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

    def _build_data(self, cfg, train_set: Optional[Dataset], valid_set) -> None:
        """The training and validation sets (given, or built here) and their loaders."""
        device = self.device
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

    def _start_counters(self, cfg, resume: Optional[str]) -> None:
        """The run's counters at their start, the config written to the run folder, then the
        resume's state restored over them (or per-rank augmentation streams seeded)."""
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

    # ----------------------------------------------------------------- training
    def agree(self, ok: torch.Tensor) -> bool:
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

    @property
    def sync_free(self) -> bool:
        """Whether steps run sync-free (``cans.train.steps.SyncFreeSteps``); settable (tests)."""
        return self.steps.sync_free

    @sync_free.setter
    def sync_free(self, on: bool) -> None:
        self.steps = SyncFreeSteps(self) if on else CheckedSteps(self)

    def train_step(self, batch: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        """One optimiser step on ``batch``; returns the logged values (0-dim tensors on the device
        and floats, read by the caller only when it logs), or None when skipped.

        Forward, loss, backward and gradient clipping here; the loss terms and the gradient norm
        are checked together on the device and ``self.steps`` takes or skips the step (one host
        read per step, or none in the sync-free mode; the adaptive prior, which reads the terms
        before the backward, adds one before it)."""
        x = self._to_device(batch["noisy_raw"])
        if self._probe is None:  # what outputs_finite feeds the model before each save
            self._probe = torch.nan_to_num(x[:1].detach(), nan=0.0, posinf=1.0, neginf=0.0)  # a copy
        targets = {k: self._to_device(batch[k]) for k in ("clean_raw", "clean_rgb")}
        with self._autocast():
            outputs = self.train_model(x)
        scale = self.scaler.get_scale() if self.scaler.is_enabled() and self.prior.adaptive else 1.0
        total, logs = self.objective(outputs, targets, self.step, self.train_model, scale=scale, agree=self.agree)
        if total is None:
            return self.steps.skip(logs, None)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        clip = self.tcfg.get("clip_grad")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, float(clip) if clip else float("inf"))
        # the fp16 scaler skips inf/nan gradients itself: only the loss is checked then
        terms = [logs[k] for k in ("raw", "rgb")]
        checked = terms + ([] if self.scaler.is_enabled() else [grad_norm.detach().reshape(())])
        ok = torch.stack(checked).isfinite().all()
        return self.steps.finish(ok, logs, total, grad_norm)

    def train_epoch(self, epoch: int) -> Optional[Dict[str, float]]:
        """One pass over the training data (``cans.train.epoch.train_one_epoch``)."""
        return train_one_epoch(self, epoch)

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

    def close(self) -> None:
        """Close the logs and release the run folder's lock (safe to call twice)."""
        if self.logger is not None:
            self.logger.close()
        if self.lock is not None:
            self.lock.release()
            self.lock = None


__all__ = ["NonFiniteLossError", "Trainer", "build_optimizer", "build_scheduler", "cosine_lr", "seed_everything"]
