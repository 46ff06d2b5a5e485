"""``test.py``: the paper's two reports for a checkpoint, and the throughput mode.

:func:`run_test` builds the config's model (keys checked together first, ``cans.config_checks``),
loads the weights, runs :func:`cans.evaluate.scores.evaluate` over the test split at full resolution
and writes ``metrics.json``, ``metrics.csv``, ``tables.md`` and the PNGs into ``<output_dir>/test/``
(docs/testing.md lists them). The report is built in a stage folder ``.report-partial-<random>/`` and
swapped in when complete, so an interrupted or failed run leaves the previous report whole.
:func:`run_throughput`: milliseconds per full-resolution image, CUDA-synchronised, to ``throughput.json``.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Dict, Mapping, Optional, Sequence

import torch

from ..config_checks import check_config
from ..data import build_dataloader
from ..engine import fastpath
from ..engine.fastpath import autocast_context, synchronize
from ..engine.loading import camera_name, check_amp, check_checkpoint_path, default_checkpoint, load_model, pick_device
from ..errors import TestSetupError
from ..io.files import atomic_write_text
from ..io.locks import FileLock, held_by_someone
from ..models import build_model
from ..models.published import describe_weights, weights_line
from ..onnx_model import OnnxModel, check_same_model, weights_info
from ..outdirs import provisional_output_dir
from ..signals import signals_deferred
from ..synthetic import ensure_synthetic
from ..tiling import DEFAULT_OVERLAP, FallbackModel, tile_for_model
from .paper import DISPLAY_NAMES, PAPER_DATASET, paper_numbers
from .protocol import data_source, describe_protocol, paper_differences
from .scores import evaluate, format_tables, write_metrics_csv, write_metrics_json


def _loader(cfg: Mapping[str, Any]):

    ensure_synthetic(cfg)
    return build_dataloader(cfg, "test")


#: the report's members in the result folder; a run writes them in a stage folder and swaps them in
REPORT_FILES = ("metrics.json", "metrics.csv", "tables.md")
REPORT_IMAGES = "images"
#: a run's stage folder inside the result folder: <out_dir>/.report-partial-<random>/ (unique per run)
STAGE_PREFIX = ".report-partial-"
#: the lock file in a stage folder, held (flock) while its run lives: an unlocked one is a dead run's
STAGE_LOCK = ".lock"
#: the lock file in the result folder, held while a run swaps its report in
SWAP_LOCK = ".report.lock"


def _remove_dead_stages(out_dir: str) -> None:
    """Remove the stage folders of earlier runs that died before finishing (killed, power loss):
    those whose lock file nobody holds (``cans.io.locks``). A stage being set up (no lock file
    yet) or of a live run (its lock held, by this process or another) is left alone; without
    ``fcntl`` (Windows) every stage is left alone (they are hidden and ignored)."""
    for name in os.listdir(out_dir):
        path = os.path.join(out_dir, name)
        if not name.startswith(STAGE_PREFIX) or not os.path.isdir(path) or os.path.islink(path):
            continue
        lock = os.path.join(path, STAGE_LOCK)
        if os.path.isfile(lock) and not held_by_someone(lock):
            shutil.rmtree(path, ignore_errors=True)


def _make_stage(out_dir: str):
    """A new stage folder in ``out_dir`` with its lock held: ``(path, FileLock)``. The lock file is
    locked before it takes its name, so another run never sees this stage unlocked."""
    path = tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=out_dir)
    lock = FileLock(os.path.join(path, STAGE_LOCK))
    lock.acquire_new()
    return path, lock


def _drop_stage(path: str, lock: FileLock) -> None:
    shutil.rmtree(path, ignore_errors=True)
    lock.release()


def _commit_report(stage: str, out_dir: str) -> None:
    """Move the report written in ``stage`` into ``out_dir``, replacing the previous one.

    The files (``REPORT_FILES``) are replaced one by one (``os.replace``); ``images/`` is replaced
    whole when the run wrote one (the PNGs of the previous report go with it), keeping the files
    of the old ``images/`` and ``images/grid/`` that are not PNGs (a user's notes). Signals wait
    until the swap is done; two runs do not swap at the same time (``<out_dir>/.report.lock``).
    """
    lock = FileLock(os.path.join(out_dir, SWAP_LOCK))
    with signals_deferred():
        lock.acquire(blocking=True)
        try:
            _swap(stage, out_dir)
        finally:
            lock.release()


def _swap(stage: str, out_dir: str) -> None:
    """The renames of :func:`_commit_report`."""
    new_images, old_images = os.path.join(stage, REPORT_IMAGES), os.path.join(out_dir, REPORT_IMAGES)
    if os.path.isdir(new_images):
        if os.path.isdir(old_images):
            for sub in (".", "grid"):   # carry over what is not the report's (not a PNG, not grid/)
                src = os.path.join(old_images, sub)
                if not os.path.isdir(src) or os.path.islink(src):
                    continue
                for name in os.listdir(src):
                    path, dst = os.path.join(src, name), os.path.join(new_images, sub, name)
                    ours = (name.lower().endswith(".png") and os.path.isfile(path)) or (sub == "." and name == "grid")
                    if not ours and not os.path.lexists(dst):
                        os.makedirs(os.path.dirname(dst), exist_ok=True)
                        os.replace(path, dst)
            os.replace(old_images, os.path.join(stage, "old-images"))   # removed with the stage
        os.replace(new_images, old_images)
    for name in REPORT_FILES[::-1]:   # metrics.json last
        os.replace(os.path.join(stage, name), os.path.join(out_dir, name))


def run_test(cfg: Mapping[str, Any], checkpoint: Optional[str] = None, *, device: Optional[str] = None,
             out_dir: Optional[str] = None, compare_paper: Optional[bool] = None, save_images: Optional[bool] = None,
             max_images: Optional[int] = None, progress: bool = True, loader=None, print_fn=print,
             tile=None, overlap: int = DEFAULT_OVERLAP, two_pass: bool = True,
             onnx: Optional[str] = None, runtime: str = "auto") -> Dict[str, Any]:
    """Score ``checkpoint`` on the test split; returns the report of :func:`cans.evaluate.scores.evaluate`.

    ``metrics.json`` adds ``config`` (resolved), ``checkpoint``, ``weights`` (path and git blob id,
    so the authors' published files are recognised) and ``protocol`` (data set, list, ``only_00``,
    image count; with ``compare_paper`` how it differs from the paper's). PNGs go to
    ``images/<input stem>.png`` (16-bit with ``test.save_16bit``; ``test.save_grid`` adds
    ``images/grid/<stem>_grid.png``: input | output | target).

    ``tile`` (packed pixels, or 'auto'), ``overlap``, ``two_pass``: tiled inference
    (:mod:`cans.tiling`); without ``tile`` whole frames, retried in tiles on a GPU out-of-memory.
    ``onnx``: score this export (scripts/export_onnx.py) on the CPU with ``runtime`` ('auto':
    OpenVINO, else ONNX Runtime) instead of a checkpoint; the report names the checkpoint it was
    exported from (its git blob id), the file and the runtime.
    """

    check_config(cfg)
    test = cfg["test"]
    checkpoint = checkpoint or default_checkpoint(cfg)
    max_images = test.get("max_images") if max_images is None else max_images
    if max_images is not None and max_images < 1:
        raise TestSetupError(f"--max-images / test.max_images: expected a number >= 1, got {max_images}")
    if onnx is not None and device not in (None, "cpu"):
        raise TestSetupError(f"--onnx runs on the CPU (OpenVINO or ONNX Runtime); --device {device} is for PyTorch")
    dev = pick_device("cpu" if onnx is not None else device)
    amp = "off" if onnx is not None else test.get("amp")
    check_amp(amp, dev)
    if dev.type == "cpu":
        print("note: testing on the CPU: fine for the demo, slow for full-resolution SID", file=sys.stderr)
    what = "--out" if out_dir else "output_dir"
    # an export's report goes beside the checkpoint's, not over it
    out_dir = out_dir or os.path.join(cfg["output_dir"], "test" if onnx is None else "test_onnx")
    if onnx is None:
        check_checkpoint_path(checkpoint)  # before the result folder is made
    with provisional_output_dir(out_dir, what):  # before the model and the data; a failed run leaves no empty folder
        if onnx is not None:
            model = OnnxModel(onnx, runtime=runtime)
            check_same_model(model, cfg, "the config")
            weights = {**weights_info(model), "runtime": model.runtime_name}
            checkpoint = weights["path"] or onnx
        else:
            model = load_model(cfg, checkpoint, dev, test["channels_last"])
            weights = describe_weights(checkpoint)
            model, _ = fastpath.fast_model_for_test(cfg, model, dev, print_fn)  # test.fast: CUDA only
        print_fn(f"weights: {weights_line(weights)}"
                 + (f", as ONNX {weights['onnx']} run by {weights['runtime']}" if onnx is not None else ""))
        try:
            model = FallbackModel(model, tile, overlap, two_pass, log=print_fn)
        except ValueError as exc:
            raise TestSetupError(str(exc)) from None
        loader = loader if loader is not None else _loader(cfg)
        save_images = test["save_images"] if save_images is None else save_images
        compare_paper = test["compare_paper"] if compare_paper is None else compare_paper
        print_fn(f"testing {os.path.abspath(onnx or checkpoint)} on {data_source(cfg)}; "
                 f"results in {os.path.abspath(out_dir)}")
        # the report is written in a stage folder and swapped in when complete: an interrupted or failed
        # run leaves the previous report as it was (and its stage goes; a killed run's goes next time)
        _remove_dead_stages(out_dir)
        stage, lock = _make_stage(out_dir)
        try:
            report = evaluate(model, loader, dev, amp=amp,
                              channels_last=test["channels_last"] and onnx is None,
                              save_dir=os.path.join(stage, REPORT_IMAGES), save_images=save_images,
                              save_16bit=test["save_16bit"], save_grid=test["save_grid"], progress=progress,
                              max_images=max_images)
            for rec in report["per_image"]:   # where the images will be once swapped in
                if rec.get("output"):
                    rec["output"] = os.path.join(out_dir, os.path.relpath(rec["output"], stage))
            protocol = describe_protocol(cfg, camera_name(cfg), report["reconstruction"]["images"])
            paper, paper_label = None, "paper"
            if compare_paper:
                paper = paper_numbers(cfg["model"]["type"])
                paper_label = f"paper {DISPLAY_NAMES.get(cfg['model']['type'], cfg['model']['type'])}"
                if paper is None:
                    print_fn(f"(no paper numbers for model type {cfg['model']['type']})")
                else:  # in the header
                    protocol["differs_from_paper"] = paper_differences(protocol, camera_name(cfg), max_images)
            tables = format_tables(report, paper, paper_label)
            header = (f"## {cfg.get('name')}: {report['reconstruction']['images']} test images\n\n"
                      f"protocol: {protocol['name']}\n\n"
                      f"checkpoint: `{checkpoint}` (git blob `{weights['git_blob']}`"
                      + (f", {weights['published']})" if weights["published"] else ")") + "\n\n"
                      + (f"run by {weights['runtime']} on the CPU from `{weights['onnx']}`\n\n"
                         if onnx is not None else "")
                      + "".join(f"warning: not the paper's protocol: {n}\n\n"
                                for n in protocol.get("differs_from_paper", [])))
            tiling = {"tile": tile, "overlap": overlap, "two_pass": two_pass} if tile is not None else None
            if tiling:
                runs = tile_for_model(model, tile, overlap) if isinstance(tile, int) else tile  # rounded to a multiple
                header += f"tiled inference: tiles of {runs} packed pixels, overlap {overlap}" + \
                    (", two-pass global statistics" if two_pass else ", one pass (tile statistics)") + "\n\n"
            write_metrics_json(os.path.join(stage, "metrics.json"), report, config=dict(cfg), checkpoint=checkpoint,
                               weights=weights, protocol=protocol, **({"tiling": tiling} if tiling else {}),
                               **({"paper": {"method": cfg["model"]["type"], "dataset": PAPER_DATASET, **paper}}
                                  if paper else {}))
            write_metrics_csv(os.path.join(stage, "metrics.csv"), report["per_image"])
            atomic_write_text(os.path.join(stage, "tables.md"), header + tables)
            _commit_report(stage, out_dir)
        finally:
            _drop_stage(stage, lock)
        print_fn(header + tables)
        print_fn(f"written: {os.path.abspath(os.path.join(out_dir, 'metrics.json'))}, metrics.csv, tables.md"
                 + (", images/" if save_images or test["save_grid"] else ""))
        report["config"] = dict(cfg)
        report["checkpoint"] = checkpoint
        report["weights"] = weights
        report["protocol"] = protocol
        if tiling:
            report["tiling"] = tiling
        return report


def _device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type


def _duration(seconds: float) -> str:
    """``seconds`` as a person reads it: '8.2 s', '4 min 05 s', '1 h 12 min'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes = int(round(seconds)) // 60
    if minutes < 60:
        return f"{minutes} min {int(round(seconds)) % 60:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _timed_passes(model, x: torch.Tensor, dev: torch.device, amp: str, warmup: int, iters: int,
                  progress: bool, print_fn) -> list:
    """``warmup`` untimed then ``iters`` timed forward passes of ``model`` on ``x``; returns the
    timed ones in milliseconds (each between CUDA synchronisations). A tqdm bar counts the passes;
    on the CPU, where a full frame takes tens of seconds, the first pass's time and what the
    others will take are printed after it."""
    from tqdm import tqdm

    total = warmup + iters
    times = []
    bar = tqdm(total=total, desc="warm-up" if warmup else "timed", unit="pass", disable=not progress,
               dynamic_ncols=True)
    try:
        for k in range(total):
            if k == warmup and warmup:
                bar.set_description("timed")
            synchronize(dev)
            start = time.perf_counter()
            with autocast_context(dev, amp):
                model(x)
            synchronize(dev)
            seconds = time.perf_counter() - start
            if k >= warmup:
                times.append(seconds * 1000.0)
            bar.update(1)
            if k == 0 and dev.type == "cpu" and total > 1:
                with tqdm.external_write_mode(file=sys.stdout):
                    print_fn(f"the first pass took {_duration(seconds)} on the CPU; the other {total - 1} will "
                             f"take about {_duration(seconds * (total - 1))}")
    finally:
        bar.close()
    return times


@torch.no_grad()
def run_throughput(cfg: Mapping[str, Any], checkpoint: Optional[str] = None, *, device: Optional[str] = None,
                   size: Optional[Sequence[int]] = None, warmup: Optional[int] = None, iters: Optional[int] = None,
                   out_dir: Optional[str] = None, random_weights: bool = False, progress: bool = True,
                   print_fn=print) -> Dict[str, Any]:
    """Milliseconds per full-resolution image: ``test.throughput_warmup`` warm-up passes, then the
    mean over ``test.throughput_iters`` passes, each timed with CUDA synchronisation.

    Says first what it times (model, device, input size, pass counts); ``progress`` shows a
    bar over the passes.

    ``size`` (packed h, w) times a random input of that size instead of the first test image;
    ``random_weights`` skips loading a checkpoint (timing does not depend on the weights).
    """
    test = cfg["test"]
    dev = pick_device(device)
    check_amp(test.get("amp"), dev)
    warmup = test["throughput_warmup"] if warmup is None else warmup
    iters = test["throughput_iters"] if iters is None else iters
    if iters < 1:
        raise ValueError(f"throughput iterations must be >= 1, got {iters}")
    channels_last = test["channels_last"]
    what = "--out" if out_dir else "output_dir"
    out_dir = out_dir or os.path.join(cfg["output_dir"], "test")
    if not random_weights:
        checkpoint = checkpoint or default_checkpoint(cfg)
        check_checkpoint_path(checkpoint)  # before the result folder is made
    with provisional_output_dir(out_dir, what):  # before the model; a failed run leaves no empty folder
        if random_weights:
            model = build_model(cfg).to(dev).eval()
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            checkpoint = None
        else:
            model = load_model(cfg, checkpoint, dev, channels_last)
        if size:
            smallest = int(getattr(model, "min_input_size", 1))
            if min(int(size[0]), int(size[1])) < smallest:
                raise TestSetupError(f"--size {int(size[0])} {int(size[1])}: the model needs a packed input of "
                                     f"at least {smallest} x {smallest} (a full Sony frame is 1424 x 2128)")
            x = torch.rand(1, cfg["model"]["in_channel"], int(size[0]), int(size[1]))
            source = f"random input {int(size[0])}x{int(size[1])} (packed)"
        else:
            batch = next(iter(_loader(cfg)))
            x = batch["noisy_raw"][:1]
            source = str(batch["img_file"][0])
        model, fast = fastpath.fast_model_for_test(cfg, model, dev, print_fn)  # test.fast: CUDA only
        x = x.to(dev)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        amp = test["amp"]
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        block = int(cfg["model"]["block_size"])
        print_fn(f"throughput of {cfg['model']['type']} ({'random weights' if random_weights else checkpoint}) on "
                 f"{_device_name(dev)}: {source}, RGB {x.shape[-2] * block}x{x.shape[-1] * block}; "
                 f"{warmup} warm-up and {iters} timed pass(es)")
        times = _timed_passes(model, x, dev, amp, warmup, iters, progress, print_fn)
        result = {
            "device": _device_name(dev),
            "model": cfg["model"]["type"], "config": cfg.get("name"), "checkpoint": checkpoint,
            "input": source, "packed_size": list(x.shape[-2:]),
            "rgb_size": [int(s) * block for s in x.shape[-2:]],
            "amp": amp, "channels_last": channels_last, "fast": fast.describe(), "warmup": warmup, "iters": iters,
            "ms_mean": statistics.fmean(times), "ms_median": statistics.median(times), "ms_min": min(times),
            "images_per_s": 1000.0 / statistics.fmean(times),
            "peak_memory_gb": (torch.cuda.max_memory_allocated(dev) / 1e9) if dev.type == "cuda" else None,
            "torch": torch.__version__,
        }
        atomic_write_text(os.path.join(out_dir, "throughput.json"), json.dumps(result, indent=2) + "\n")
        print_fn(f"throughput on {result['device']} ({source}, packed {x.shape[-2]}x{x.shape[-1]}, amp {amp}, "
                 f"{result['fast']}): "
                 f"{result['ms_mean']:.1f} ms/image mean, {result['ms_median']:.1f} median, {result['ms_min']:.1f} min "
                 f"over {iters} runs after {warmup} warm-up; {result['images_per_s']:.2f} images/s"
                 + (f"; peak memory {result['peak_memory_gb']:.2f} GB" if result["peak_memory_gb"] is not None else ""))
        return result


__all__ = ["run_test", "run_throughput"]
