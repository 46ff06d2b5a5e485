"""What ``train.py`` does: data check, training, the before/after summary, the final test report."""
from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from typing import Any, Dict, Mapping, Optional

from ..config import ConfigError, default_output_dir, split_options
from ..config_checks import check_config
from ..data import DataError, build_dataset
from ..engine import distributed as du
from ..engine.checkpoint import CheckpointError, check_checkpoint_file, read_torch_file
from ..errors import USER_ERRORS, user_message
from ..evaluate.protocol import data_source
from ..evaluate.tester import run_test
from ..models import build_model
from ..outdirs import missing_folders, prepare_output_dir, remove_empty_folders
from ..synthetic import ensure_synthetic
from .rundir import resume_folder, resume_point
from .trainer import NonFiniteLossError, Trainer


def _fmt(metrics: Optional[Mapping[str, Any]], key: str, digits: int = 3) -> str:
    if not metrics or metrics.get(key) is None:
        return "n/a"
    return f"{metrics[key]:.{digits}f}"


def stop_reason(exc: BaseException, timeout_s: float) -> str:
    """What stopped a run, for its log: the signal's name, or, under several processes, a
    collective call that failed because another rank died or went silent (``train.dist_timeout``)."""
    if isinstance(exc, KeyboardInterrupt):
        name = exc.args[0] if exc.args and isinstance(exc.args[0], str) else "SIGINT or SIGTERM"
        under = (" (under torchrun: Ctrl-C, a pre-emption, or torchrun ending the job because another rank "
                 "failed: see torchrun's output)" if du.env_world_size() > 1 else " (Ctrl-C or SIGTERM)")
        return f"stopped: interrupted by {name}{under}"
    text = str(exc).lower()
    if du.env_world_size() > 1 and isinstance(exc, RuntimeError):
        if "timed out" in text or "timeout" in text:
            return (f"stopped: rank {du.get_rank()} waited more than train.dist_timeout={timeout_s:g} s for the other "
                    f"processes in a collective call: a rank stopped responding (hung, stopped or swapping)")
        if any(w in text for w in ("connection", "peer", "broken pipe", "closed", "nccl error", "gloo")):
            return (f"stopped: rank {du.get_rank()} lost the other processes in a collective call: another rank "
                    f"died (killed, out of memory, or an error; see its output)")
    return ""


def record_failure(cfg: Mapping[str, Any], exc: BaseException) -> None:
    """Append why a run stopped to ``<output_dir>/train.log`` (when the run folder exists): the
    one-line message of a user error, the cause of a stop (:func:`stop_reason`), the traceback
    of anything else. Every rank that fails says so (the log is shared)."""
    out = cfg.get("output_dir")
    if not out or not os.path.isdir(out):
        return
    reason = stop_reason(exc, cfg["train"]["dist_timeout"])
    if reason:
        if isinstance(exc, KeyboardInterrupt) and du.get_rank() != 0:
            return  # every rank was interrupted: rank 0 says so once
        text = ("INFO " if isinstance(exc, KeyboardInterrupt) else "ERROR ") + reason
        if isinstance(exc, RuntimeError):
            text += f" ({str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__})"
    elif du.get_rank() != 0:
        return
    elif isinstance(exc, USER_ERRORS):
        text = f"ERROR {user_message(exc)}"
    else:
        text = "ERROR " + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
    with contextlib.suppress(OSError):
        with open(os.path.join(out, "train.log"), "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")


def train_main(cfg: Mapping[str, Any], resume: Optional[str] = None, progress: bool = True) -> int:
    """Train with ``cfg`` (resolved config); returns a process exit code.

    The config's keys are checked together first (``cans.config_checks``); rank 0 creates the
    synthetic data set when the config asks for it (``data.synthetic.auto_create``); a run that
    fails says why at the end of ``train.log``, except a start that fails its checks (data, the
    pretrained file) before anything is written: the run folder it made is removed again; with
    ``train.test_at_end`` the best checkpoint (else the last) is scored on the test split and the
    paper's two tables are printed.
    """

    t0 = time.time()
    check_config(cfg)  # keys that do not fit together: one line, before any work
    check_model(cfg)
    cfg, moved = run_folder(cfg, resume)  # before anything is written: a refusal leaves no trace in a run's folder
    device = du.init_distributed(timeout_s=cfg["train"]["dist_timeout"])
    trainer, built = None, {}
    made = []  # the run folder (and parents) this start creates: removed again if it fails while they are empty
    try:
        if du.is_main_process():
            if cfg.get("output_dir"):  # a folder that cannot be made: one line, before the data set is made
                made = missing_folders(cfg["output_dir"])
                prepare_output_dir(cfg["output_dir"], "output_dir")
            ensure_synthetic(cfg)
            built = preflight(cfg)
        du.barrier()
        # the sets the checks built are the run's (on rank 0; the other ranks build their own)
        trainer = Trainer(cfg, resume=resume, progress=progress, device=device,
                          train_set=built.get("train"), valid_set=built.get("valid"))
        if moved:
            trainer.logger.info(moved)
        if "data" in cfg:
            trainer.logger.info(f"data: {data_source(cfg)}")
        summary = trainer.fit()  # Ctrl-C / SIGTERM (torchrun, a pre-emption): fit saves last.pth and re-raises
    except NonFiniteLossError as exc:
        trainer.logger.error(str(exc))
        trainer.close()
        print(f"error: {exc}", file=sys.stderr)
        du.cleanup_distributed()
        return 1
    except BaseException as exc:
        remove_empty_folders(made)  # a start that failed before writing leaves no new folder (nor a log in one)
        record_failure(cfg, exc)
        if trainer is not None:
            trainer.close()
        raise
    log = trainer.logger.info
    initial, final = summary.get("initial"), summary.get("final")
    log(f"done: {summary['epochs_done']} epoch(s), {summary['steps']} step(s), "
        f"{summary['nonfinite_steps']} skipped non-finite step(s), training {summary['wall_s']:.0f} s")
    best = (f"; best {summary['best_psnr']:.3f} dB at epoch {summary['best_epoch']}"
            if summary.get("best_epoch") is not None else "")
    skipped = trainer.skipped_pairs()
    if skipped:
        log(f"skipped {len(skipped)} pair(s) with bad files (data.skip_bad_files): "
            + "; ".join(f"{split} {name} ({reason.splitlines()[0][:120]})" for split, name, reason in skipped[:10])
            + (" ..." if len(skipped) > 10 else ""))
    if initial and final:
        start = "starting" if summary.get("started_from") else "untrained"
        log(f"validation PSNR: {start} {_fmt(initial, 'psnr')} dB -> final {_fmt(final, 'psnr')} dB "
            f"({final['psnr'] - initial['psnr']:+.3f} dB); SSIM {_fmt(initial, 'ssim', 4)} -> "
            f"{_fmt(final, 'ssim', 4)}; RAW PSNR {_fmt(initial, 'raw_psnr')} -> {_fmt(final, 'raw_psnr')} dB" + best)
    elif final:
        log(f"validation: PSNR {_fmt(final, 'psnr')} dB, SSIM {_fmt(final, 'ssim', 4)}, "
            f"RAW PSNR {_fmt(final, 'raw_psnr')} dB (epoch {final.get('epoch')})" + best)
    checkpoint, why = final_checkpoint(trainer.ckpt_dir, summary)
    if cfg["train"].get("test_at_end"):
        (log if checkpoint else trainer.logger.warning)(why)
    trainer.close()
    du.cleanup_distributed()

    if cfg["train"].get("test_at_end") and checkpoint and du.get_rank() == 0 and int(os.environ.get("RANK", "0")) == 0:
        print("", flush=True)
        run_test(cfg, checkpoint, device=str(device), progress=progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"total wall time {time.time() - t0:.0f} s", flush=True)
    return 0


def final_checkpoint(ckpt_dir: str, summary: Mapping[str, Any]):
    """``(path, line)``: the checkpoint the end-of-run test scores and why: ``best.pth`` when the run
    recorded a best (a warning when that file is missing), else ``last.pth``; ``None`` if neither exists."""
    best, last = os.path.join(ckpt_dir, "best.pth"), os.path.join(ckpt_dir, "last.pth")
    if summary.get("best_epoch") is not None:
        what = f"epoch {summary['best_epoch']}, validation PSNR {summary['best_psnr']:.3f} dB"
        if os.path.isfile(best):
            return best, f"test at end: {best} (the best validation: {what})"
        if os.path.isfile(last):
            return last, f"test at end: {last}, since the best ({what}) has no {best}"
    elif os.path.isfile(last):
        return last, f"test at end: {last} (no validation recorded a best)"
    return None, f"test at end: skipped, {ckpt_dir} holds neither best.pth nor last.pth"


def run_folder(cfg: Mapping[str, Any], resume: Optional[str]):
    """``(cfg, note)``: ``cfg`` with the folder this start writes as ``output_dir``, and a line to
    log when a resume moved it there (``note`` else None). A resume writes the run folder of its
    checkpoint (``cans.train.rundir.resume_folder``); a folder that holds a run without a resume
    asked for is refused (``resume_point``). Both refusals are one line, before anything is written."""
    out, note = cfg["output_dir"], None
    if resume:
        check_checkpoint_file(resume)
        out = resume_folder(resume, out, default_dir=default_output_dir(cfg["name"]))
        if out != cfg["output_dir"]:
            note = (f"--resume {resume}: continuing in its run folder {out} (a new run of this config would "
                    f"write {cfg['output_dir']})")
    resume_point(out, resume, bool(cfg["train"].get("auto_resume")))
    return dict(cfg, output_dir=out), note


def check_model(cfg: Mapping[str, Any]) -> None:
    """Build the configured network on the ``meta`` device (no memory, no time): a user's class
    that does not take its options, or lacks ``block_size``, is one line before any work."""
    import torch

    with torch.device("meta"):
        build_model(cfg)


def preflight(cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """Everything a run would otherwise find late, checked within seconds, all problems in one
    :class:`ConfigError`: every list the run reads (the test list too with ``train.test_at_end``),
    its files present and prepared, the training patch against the smallest training image, the
    ``train.pretrained`` file. (Output folder, lock, disk space: the Trainer, before any work.)
    Returns the data sets it built, ``{split: dataset}``, for the run to use."""
    built: Dict[str, Any] = {}
    if "data" not in cfg:
        return built
    problems = []
    splits = ["train", "valid"] + (["test"] if cfg["train"].get("test_at_end") else [])
    for split in splits:
        try:
            dataset = built[split] = build_dataset(cfg, split)
        except (DataError, ConfigError) as exc:
            text = str(exc).strip() if str(exc).startswith("data.") else f"data.{split}: {str(exc).strip()}"
            if str(exc).strip() not in " ".join(problems):  # one missing data_path, not one per split
                problems.append(text)
            continue
        if split == "train":
            problems += patch_problems(cfg, dataset)
    pretrained = cfg["train"].get("pretrained")
    if pretrained:
        try:
            read_torch_file(pretrained)  # trust: --trust-checkpoint only (cans.cli.common.run_cli)
        except (CheckpointError, FileNotFoundError) as exc:
            problems.append(f"train.pretrained: {exc}")
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} problems found before training: "
                          + " | ".join(f"({i}) {p}" for i, p in enumerate(problems, 1)))
    return built


def patch_problems(cfg: Mapping[str, Any], dataset) -> list:
    """``data.train.patch_size`` against the training images' packed sizes (read from the caches'
    headers; with ``load_npy: false``, from the first pair only, as reading RAW files is slow)."""
    patch = split_options(cfg, "train").get("patch_size")
    entries = getattr(dataset, "entries", None)
    if not patch or not entries or not hasattr(dataset, "_arrays"):
        return []
    block = getattr(dataset, "block_size", 2)
    smallest = None
    for entry in entries if getattr(dataset, "load_npy", True) else entries[:1]:
        try:
            noisy = dataset._arrays(entry)[0]
        except Exception:  # an unreadable file is the dataset's to report (skip_bad_files)
            continue
        size = min(noisy.shape[-2:]) * block
        if smallest is None or size < smallest[0]:
            smallest = (size, entry.img_file)
    if smallest is not None and patch > smallest[0]:
        return [f"data.train.patch_size: {patch} is larger than the smallest training image ({smallest[1]}: "
                f"{smallest[0]} pixels on its short side); set data.train.patch_size to at most {smallest[0]}"]
    return []


__all__ = ["check_model", "final_checkpoint", "preflight", "run_folder", "stop_reason", "train_main"]
