"""What ``train.py`` does: data check, training, the before/after summary, the final test report."""
from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from typing import Any, Mapping, Optional

from . import distributed as du


def _fmt(metrics: Optional[Mapping[str, Any]], key: str, digits: int = 3) -> str:
    if not metrics or metrics.get(key) is None:
        return "n/a"
    return f"{metrics[key]:.{digits}f}"


def record_failure(cfg: Mapping[str, Any], exc: BaseException) -> None:
    """Append why a run stopped to ``<output_dir>/train.log`` (when the run folder exists): the
    one-line message of a user error, the traceback of anything else, a line for Ctrl-C."""
    if du.get_rank() != 0:
        return
    out = cfg.get("output_dir")
    if not out or not os.path.isdir(out):
        return
    from ..cli import USER_ERRORS, user_message
    if isinstance(exc, KeyboardInterrupt):
        text = "INFO stopped: interrupted (Ctrl-C or SIGTERM)"
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
    fails says why at the end of ``train.log``; with ``train.test_at_end`` the best checkpoint (else
    the last) is scored on the test split and the paper's two tables are printed.
    """
    from ..config_checks import check_config
    from .signals import sigterm_as_interrupt
    from .trainer import NonFiniteLossError, Trainer

    t0 = time.time()
    check_config(cfg)  # keys that do not fit together: one line, before any work
    device = du.init_distributed()
    trainer = None
    try:
        if du.is_main_process():
            from ..data import ensure_synthetic
            from ..outdirs import prepare_output_dir
            if cfg.get("output_dir"):  # a folder that cannot be made: one line, before the data set is made
                prepare_output_dir(cfg["output_dir"], "output_dir")
            ensure_synthetic(cfg)
        du.barrier()
        trainer = Trainer(cfg, resume=resume, progress=progress, device=device)
        if "data" in cfg:
            trainer.logger.info(f"data: {os.path.abspath(cfg['data']['data_path'])} ({cfg['data']['type']})")
        with sigterm_as_interrupt():  # a SIGTERM (torchrun on Ctrl-C, pre-emption) saves last.pth too
            summary = trainer.fit()
    except NonFiniteLossError as exc:
        trainer.logger.error(str(exc))
        trainer.close()
        print(f"error: {exc}", file=sys.stderr)
        du.cleanup_distributed()
        return 1
    except BaseException as exc:
        record_failure(cfg, exc)
        if trainer is not None:
            trainer.close()
        raise
    log = trainer.logger.info
    initial, final = summary.get("initial"), summary.get("final")
    log(f"done: {summary['epochs_done']} epoch(s), {summary['steps']} step(s), "
        f"{summary['nonfinite_steps']} skipped non-finite step(s), training {summary['wall_s']:.0f} s")
    best = (f"; best {summary['best_psnr']:.3f} dB at epoch {summary['best_epoch']}"
            if summary.get("best_epoch") else "")
    if initial and final:
        log(f"validation PSNR: untrained {_fmt(initial, 'psnr')} dB -> final {_fmt(final, 'psnr')} dB "
            f"({final['psnr'] - initial['psnr']:+.3f} dB); SSIM {_fmt(initial, 'ssim', 4)} -> "
            f"{_fmt(final, 'ssim', 4)}; RAW PSNR {_fmt(initial, 'raw_psnr')} -> {_fmt(final, 'raw_psnr')} dB" + best)
    elif final:
        log(f"validation: PSNR {_fmt(final, 'psnr')} dB, SSIM {_fmt(final, 'ssim', 4)}, "
            f"RAW PSNR {_fmt(final, 'raw_psnr')} dB (epoch {final.get('epoch')})" + best)
    ckpt_dir = trainer.ckpt_dir
    trainer.close()
    du.cleanup_distributed()

    if cfg["train"].get("test_at_end") and du.get_rank() == 0 and int(os.environ.get("RANK", "0")) == 0:
        from .tester import run_test
        best = os.path.join(ckpt_dir, "best.pth")
        checkpoint = best if os.path.isfile(best) else os.path.join(ckpt_dir, "last.pth")
        print("", flush=True)
        run_test(cfg, checkpoint, device=str(device), progress=progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"total wall time {time.time() - t0:.0f} s", flush=True)
    return 0


__all__ = ["train_main"]
