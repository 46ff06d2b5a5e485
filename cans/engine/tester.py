"""``test.py``: the paper's two reports for a checkpoint, and the throughput mode.

``run_test(cfg, checkpoint, ...)`` builds the config's model, loads the weights, runs
:func:`cans.engine.evaluate.evaluate` over the test split at full resolution and writes, in
``<output_dir>/test/`` (or ``out_dir``):

* ``metrics.json``: the report plus ``config`` (the resolved config), ``checkpoint``, ``weights``
  (path and git blob id: the authors' published files are recognised) and ``protocol`` (data set,
  list, ``only_00``, image count; with ``--compare-paper`` how it differs from the paper's);
* ``metrics.csv``: one row per image;
* ``tables.md``: the two Markdown tables (also printed);
* ``images/<input stem>.png`` (8-bit, 16-bit with ``test.save_16bit``) and, with
  ``test.save_grid``, ``images/grid/<stem>_grid.png``: input | output | target; one file per
  test image (the scores are in metrics.csv / metrics.json), the PNGs of an earlier run in the
  same folder are removed first.

The config's keys are checked together first (``cans.config_checks``). Pairs left out by
``data.skip_bad_files`` are listed under ``skipped`` in metrics.json and under the tables.

``run_throughput(cfg, checkpoint, ...)``: milliseconds per full-resolution image (the first
test image, or a random input of a given packed size) after ``test.throughput_warmup``
warm-up passes, averaged over ``test.throughput_iters`` passes, each timed with CUDA
synchronisation; written to ``throughput.json``.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from typing import Any, Dict, Mapping, Optional, Sequence

import torch

from ..outdirs import prepare_output_dir
from ..tiling import DEFAULT_OVERLAP, FallbackModel
from .evaluate import (atomic_write_text, synchronize, autocast_context, evaluate, format_tables, write_metrics_csv,
                       write_metrics_json)
from .fastpath import fast_model_for_test
from .paper import DISPLAY_NAMES, PAPER_DATASET, paper_numbers
from .protocol import describe_protocol, paper_differences

CAMERA_OF_TYPE = {"SonyDictSet": "Sony", "FujiDictSet": "Fuji", "MCRDictSet": "MCR"}


class TestSetupError(RuntimeError):
    """A test run that cannot start (missing checkpoint, data); the message says what to do."""


def camera_name(cfg: Mapping[str, Any]) -> str:
    return cfg["data"].get("camera") or CAMERA_OF_TYPE.get(cfg["data"]["type"], "Sony")


def default_checkpoint(cfg: Mapping[str, Any]) -> str:
    """``test.checkpoint``, else where the README puts the authors' weights:
    ``pretrained_weights/<model.type>/<camera>.pth``."""
    return cfg["test"].get("checkpoint") or os.path.join("pretrained_weights", cfg["model"]["type"],
                                                         f"{camera_name(cfg)}.pth")


def pick_device(name: Optional[str] = None) -> torch.device:
    """``name`` ('cpu', 'cuda', 'cuda:1', ...), else CUDA when available; a clear error for a bad name."""
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TestSetupError(f"--device {name}: not a device name; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise TestSetupError(f"--device {name}: {count} CUDA device(s) visible; use "
                                 + ("cpu" if count == 0 else f"cuda:0..cuda:{count - 1} or cpu"))
    return device


def check_amp(amp: Optional[str], device: torch.device) -> None:
    if amp == "fp16" and device.type != "cuda":
        raise TestSetupError(f"test.amp: fp16 needs a CUDA device (this run uses {device}); use bf16 or off")


def check_checkpoint_path(checkpoint: str) -> None:
    """TestSetupError, one line, when ``checkpoint`` is a folder or no file (before any work)."""
    from .checkpoint import CheckpointError, check_checkpoint_file

    try:
        check_checkpoint_file(os.path.abspath(checkpoint), example="best.pth")
    except FileNotFoundError as exc:
        raise TestSetupError(f"{exc}. Pass --checkpoint PATH (a run's checkpoints/best.pth), or put the authors' "
                             "published weights there (see docs/testing.md).") from None
    except CheckpointError as exc:
        raise TestSetupError(str(exc)) from None


def load_model(cfg: Mapping[str, Any], checkpoint: str, device: torch.device, channels_last: bool = False):
    from ..models import build_model
    from .checkpoint import CheckpointError, load_model_weights

    check_checkpoint_path(checkpoint)
    model = build_model(cfg)
    try:
        load_model_weights(model, checkpoint, cfg)
    except CheckpointError as exc:
        raise TestSetupError(str(exc)) from None
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _loader(cfg: Mapping[str, Any]):
    from ..data import build_dataloader, ensure_synthetic

    ensure_synthetic(cfg)
    return build_dataloader(cfg, "test")


def _clear_images(folder: str) -> None:
    """Remove the PNGs of an earlier test run in ``folder`` and ``folder/grid`` (only those), so
    that a run leaves exactly one image per test image, whatever ran there before."""
    for sub in (folder, os.path.join(folder, "grid")):
        if not os.path.isdir(sub):
            continue
        for name in os.listdir(sub):
            path = os.path.join(sub, name)
            if name.lower().endswith(".png") and os.path.isfile(path):
                os.remove(path)


def run_test(cfg: Mapping[str, Any], checkpoint: Optional[str] = None, *, device: Optional[str] = None,
             out_dir: Optional[str] = None, compare_paper: Optional[bool] = None, save_images: Optional[bool] = None,
             max_images: Optional[int] = None, progress: bool = True, loader=None, print_fn=print,
             tile=None, overlap: int = DEFAULT_OVERLAP, two_pass: bool = True) -> Dict[str, Any]:
    """Score ``checkpoint`` on the test split; returns the report (see the module docstring).

    ``tile`` (packed pixels, or 'auto'), ``overlap``, ``two_pass``: tiled inference
    (:mod:`cans.tiling`); without ``tile`` whole frames, retried in tiles on a GPU out-of-memory.
    """
    from ..config_checks import check_config

    check_config(cfg)
    test = cfg["test"]
    checkpoint = checkpoint or default_checkpoint(cfg)
    max_images = test.get("max_images") if max_images is None else max_images
    if max_images is not None and max_images < 1:
        raise TestSetupError(f"--max-images / test.max_images: expected a number >= 1, got {max_images}")
    dev = pick_device(device)
    check_amp(test.get("amp"), dev)
    if dev.type == "cpu":
        print("note: testing on the CPU: fine for the demo, slow for full-resolution SID", file=sys.stderr)
    what = "--out" if out_dir else "output_dir"
    out_dir = out_dir or os.path.join(cfg["output_dir"], "test")
    check_checkpoint_path(checkpoint)  # before the result folder is made
    prepare_output_dir(out_dir, what)  # before the model and the data
    model = load_model(cfg, checkpoint, dev, test.get("channels_last", False))
    from ..models.published import describe_weights, weights_line
    weights = describe_weights(checkpoint)
    print_fn(f"weights: {weights_line(weights)}")
    model, _ = fast_model_for_test(cfg, model, dev, print_fn)  # test.fast: CUDA only
    try:
        model = FallbackModel(model, tile, overlap, two_pass, log=print_fn)
    except ValueError as exc:
        raise TestSetupError(str(exc)) from None
    loader = loader if loader is not None else _loader(cfg)
    save_images = test["save_images"] if save_images is None else save_images
    compare_paper = test["compare_paper"] if compare_paper is None else compare_paper
    print_fn(f"testing {os.path.abspath(checkpoint)} on {os.path.abspath(cfg['data']['data_path'])}; "
             f"results in {os.path.abspath(out_dir)}")
    if save_images or test["save_grid"]:
        _clear_images(os.path.join(out_dir, "images"))
    report = evaluate(model, loader, dev, amp=test.get("amp", "off"), channels_last=test.get("channels_last", False),
                      save_dir=os.path.join(out_dir, "images"), save_images=save_images,
                      save_16bit=test["save_16bit"], save_grid=test["save_grid"], progress=progress,
                      max_images=max_images)
    protocol = describe_protocol(cfg, camera_name(cfg), report["reconstruction"]["images"])
    paper, paper_label = None, "paper"
    if compare_paper:
        paper = paper_numbers(cfg["model"]["type"])
        paper_label = f"paper {DISPLAY_NAMES.get(cfg['model']['type'], cfg['model']['type'])}"
        if paper is None:
            print_fn(f"(no paper numbers for model type {cfg['model']['type']})")
        else:
            protocol["differs_from_paper"] = paper_differences(protocol, camera_name(cfg), max_images)  # in the header
    tables = format_tables(report, paper, paper_label)
    header = (f"## {cfg.get('name')}: {report['reconstruction']['images']} test images\n\n"
              f"protocol: {protocol['name']}\n\n"
              f"checkpoint: `{checkpoint}` (git blob `{weights['git_blob']}`"
              + (f", {weights['published']})" if weights["published"] else ")") + "\n\n"
              + "".join(f"warning: not the paper's protocol: {n}\n\n" for n in protocol.get("differs_from_paper", [])))
    os.makedirs(out_dir, exist_ok=True)
    tiling = {"tile": tile, "overlap": overlap, "two_pass": two_pass} if tile is not None else None
    if tiling:
        header += f"tiled inference: tiles of {tile} packed pixels, overlap {overlap}" + \
            (", two-pass global statistics" if two_pass else ", one pass (tile statistics)") + "\n\n"
    write_metrics_json(os.path.join(out_dir, "metrics.json"), report, config=dict(cfg), checkpoint=checkpoint,
                       weights=weights, protocol=protocol, **({"tiling": tiling} if tiling else {}),
                       **({"paper": {"method": cfg["model"]["type"], "dataset": PAPER_DATASET, **paper}}
                          if paper else {}))
    write_metrics_csv(os.path.join(out_dir, "metrics.csv"), report["per_image"])
    atomic_write_text(os.path.join(out_dir, "tables.md"), header + tables)
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


@torch.no_grad()
def run_throughput(cfg: Mapping[str, Any], checkpoint: Optional[str] = None, *, device: Optional[str] = None,
                   size: Optional[Sequence[int]] = None, warmup: Optional[int] = None, iters: Optional[int] = None,
                   out_dir: Optional[str] = None, random_weights: bool = False, print_fn=print) -> Dict[str, Any]:
    """Milliseconds per full-resolution image (see the module docstring).

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
    channels_last = test.get("channels_last", False)
    what = "--out" if out_dir else "output_dir"
    out_dir = out_dir or os.path.join(cfg["output_dir"], "test")
    if not random_weights:
        checkpoint = checkpoint or default_checkpoint(cfg)
        check_checkpoint_path(checkpoint)  # before the result folder is made
    prepare_output_dir(out_dir, what)  # before the model
    if random_weights:
        from ..models import build_model
        model = build_model(cfg).to(dev).eval()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        checkpoint = None
    else:
        model = load_model(cfg, checkpoint, dev, channels_last)
    if size:
        smallest = int(getattr(model, "min_input_size", 1))
        if min(int(size[0]), int(size[1])) < smallest:
            raise TestSetupError(f"--size {int(size[0])} {int(size[1])}: the model needs a packed input of at least "
                                 f"{smallest} x {smallest} (a full Sony frame is 1424 x 2128)")
        x = torch.rand(1, cfg["model"]["in_channel"], int(size[0]), int(size[1]))
        source = f"random input {int(size[0])}x{int(size[1])} (packed)"
    else:
        batch = next(iter(_loader(cfg)))
        x = batch["noisy_raw"][:1]
        source = str(batch["img_file"][0])
    model, fast = fast_model_for_test(cfg, model, dev, print_fn)  # test.fast: CUDA only
    x = x.to(dev)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    amp = test.get("amp", "off")
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for _ in range(warmup):
        with autocast_context(dev, amp):
            model(x)
    synchronize(dev)
    times = []
    for _ in range(iters):
        synchronize(dev)
        start = time.perf_counter()
        with autocast_context(dev, amp):
            model(x)
        synchronize(dev)
        times.append((time.perf_counter() - start) * 1000.0)
    result = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "model": cfg["model"]["type"], "config": cfg.get("name"), "checkpoint": checkpoint,
        "input": source, "packed_size": list(x.shape[-2:]),
        "rgb_size": [int(s) * int(cfg["model"]["block_size"]) for s in x.shape[-2:]],
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


__all__ = ["run_test", "run_throughput", "default_checkpoint", "load_model", "pick_device", "TestSetupError"]
