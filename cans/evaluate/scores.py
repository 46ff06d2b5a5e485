"""Full-resolution evaluation: the paper's reconstruction and denoising reports.

:func:`evaluate` runs a model over a DataLoader of sample dicts and scores the RGB output against
``clean_rgb`` (reconstruction) and the packed RAW output against ``clean_raw`` (denoising, per ratio
group ``x<round(ratio)>``); :func:`summarize` forms the report (its docstring gives the layout,
docs/testing.md the metrics and the tables). Unreadable pairs left out by ``data.skip_bad_files``
are listed under ``skipped`` and are in no average. Under ``torch.distributed`` every rank returns
the same report. Writers: ``write_metrics_json``, ``write_metrics_csv`` (both atomic) and
``format_tables`` (Markdown, optionally beside the paper's numbers).
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional

import torch

from ..data import start_workers
from ..engine.fastpath import autocast_context, synchronize
from ..io.files import atomic_write_text
from ..io.png import write_png
from .images import raw_preview
from .metrics import psnr, ssim

PAPER_GROUPS = ("x100", "x250", "x300")
RECORD_FIELDS = ("img_file", "lbl_file", "ratio", "group", "rgb_psnr", "rgb_ssim", "raw_psnr",
                 "raw_ssim", "height", "width", "time_ms", "output")
REQUIRED_KEYS = ("noisy_raw", "clean_raw", "clean_rgb", "ratio", "img_file")


# ---------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------

def ratio_group(ratio: float) -> str:
    """The denoising report's group of an exposure ratio: ``x<rounded ratio>``."""
    return f"x{int(round(float(ratio)))}"


def _as_list(value, n: int) -> list:
    if isinstance(value, torch.Tensor):
        value = value.reshape(-1).tolist()
    elif isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        value = [value]
    value = list(value)
    if len(value) == 1 and n > 1:
        value = value * n
    return value


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(str(path)))[0]


def output_names(files: Iterable[str]) -> Dict[str, str]:
    """A PNG name (without extension) for each image file of a test list: the file's stem, or,
    where two files share a stem (``kitchen/IMG_0102.CR2`` and ``street/IMG_0102.CR2``), the
    stem with as many parent folders as make it unique (``kitchen_IMG_0102``). Computed from the
    whole list, so every rank of a distributed run picks the same names."""
    files = sorted({str(f) for f in files})
    parts = {f: [p for p in os.path.normpath(os.path.splitext(f)[0]).split(os.sep) if p not in ("", ".")]
             for f in files}
    depth = {f: 1 for f in files}
    while True:
        names = {f: "_".join(parts[f][-depth[f]:]) for f in files}
        seen: Dict[str, List[str]] = {}
        for f, name in names.items():
            seen.setdefault(name, []).append(f)
        clashes = [group for group in seen.values() if len(group) > 1]
        grown = False
        for group in clashes:
            for f in group:
                if depth[f] < len(parts[f]):
                    depth[f] += 1
                    grown = True
        if not clashes or not grown:
            break
    counts: Dict[str, int] = {}
    for f in files:  # still equal (the same path twice in other spellings): number them
        n = counts[names[f]] = counts.get(names[f], 0) + 1
        if n > 1:
            names[f] = f"{names[f]}_{n}"
    return names


def _mean(values: Iterable[float]) -> Optional[float]:
    values = [float(v) for v in values]
    return sum(values) / len(values) if values else None


def _dist_info():
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _unwrap(model):
    return getattr(model, "module", model)


# ---------------------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------------------

def summarize(records: List[Mapping[str, Any]]) -> Dict[str, Any]:
    """Per-image records -> ``{"reconstruction": {"psnr", "ssim", "images"}, "denoising": {...}}``.

    ``denoising`` has one entry per ratio group (x100, x250, x300 always listed, ``psnr`` / ``ssim``
    None when a group has no image; other groups as present), ``average`` (the mean of the
    non-empty group means: how the paper's "average" row is formed) and ``all_images`` (the plain
    mean over every image). :func:`evaluate` adds ``per_image`` (these records: ``img_file``,
    ``lbl_file``, ``ratio``, ``group``, ``rgb_psnr``, ``rgb_ssim``, ``raw_psnr``, ``raw_ssim``,
    ``height``, ``width`` of the RGB output, ``time_ms`` (CUDA-synchronised forward per image),
    ``output`` (saved PNG or None)) and ``skipped`` (``img_file``, ``lbl_file``, ``source``, ``reason``).
    """
    recon = {"psnr": _mean(r["rgb_psnr"] for r in records), "ssim": _mean(r["rgb_ssim"] for r in records),
             "images": len(records)}
    groups: Dict[str, list] = {g: [] for g in PAPER_GROUPS}
    for r in records:
        groups.setdefault(r["group"], []).append(r)
    order = sorted(groups, key=lambda g: float(g[1:]) if g[1:].replace(".", "", 1).isdigit() else math.inf)
    denoising: Dict[str, Any] = {}
    for g in order:
        rs = groups[g]
        denoising[g] = {"psnr": _mean(r["raw_psnr"] for r in rs), "ssim": _mean(r["raw_ssim"] for r in rs),
                        "images": len(rs)}
    filled = [v for v in denoising.values() if v["images"]]
    denoising["average"] = {"psnr": _mean(v["psnr"] for v in filled), "ssim": _mean(v["ssim"] for v in filled),
                            "images": len(records)}
    denoising["all_images"] = {"psnr": _mean(r["raw_psnr"] for r in records),
                               "ssim": _mean(r["raw_ssim"] for r in records), "images": len(records)}
    return {"reconstruction": recon, "denoising": denoising}


def _gather_records(records: List[dict]) -> List[dict]:
    """Every rank's records (``all_gather_object``), de-duplicated by (img_file, lbl_file): a
    DistributedSampler pads the last batch with repeats. The same list on every rank."""
    rank, world = _dist_info()
    if world == 1:
        return records
    gathered: List[Optional[List[dict]]] = [None] * world
    torch.distributed.all_gather_object(gathered, records)
    seen, merged = set(), []
    for part in gathered:
        for r in part or []:
            key = (r["img_file"], r.get("lbl_file"))
            if key in seen:
                continue
            seen.add(key)
            merged.append(r)
    merged.sort(key=lambda r: (str(r["img_file"]), str(r.get("lbl_file"))))
    return merged


# ---------------------------------------------------------------------------------------
# The evaluation loop
# ---------------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: Iterable[Mapping[str, Any]], device, *, amp: str = "off",
             channels_last: bool = False, save_dir: Optional[str] = None, save_images: bool = False,
             save_16bit: bool = False, save_grid: bool = False, progress: bool = True,
             max_images: Optional[int] = None, desc: str = "test") -> Dict[str, Any]:
    """Run ``model`` at full resolution over ``loader`` and score both outputs.

    ``loader`` yields batches of sample dicts: ``noisy_raw`` (B, C, h, w), ``clean_raw``
    (B, C, h, w), ``clean_rgb`` (B, 3, h*b, w*b) in [0, 1], ``ratio`` (B,), ``img_file``
    and ``lbl_file`` (lists of str). The model returns ``(rgb, raw)`` and pads inside.
    ``save_images`` writes ``<save_dir>/<input stem>.png`` (16-bit with
    ``save_16bit``); ``save_grid`` writes ``<save_dir>/grid/<stem>_grid.png``: the input
    (packed RAW shown as colour, gamma 2.2) | the output | the target. ``max_images``
    stops after that many images (per process); ``desc`` labels the progress bar ('test',
    'valid'), which shows the running means ``rgb_psnr_mean`` and ``raw_psnr_mean`` of this
    process's images so far. The model is put in eval mode and returned to its previous mode afterwards.
    """
    device = torch.device(device)
    if (save_images or save_grid) and not save_dir:
        raise ValueError("evaluate: save_images/save_grid need a save_dir")
    rank, _ = _dist_info()
    net = _unwrap(model)
    block = int(getattr(net, "block_size", 0) or 0)
    was_training = model.training
    model.eval()
    records: List[dict] = []
    # pairs the dataset left out (data.skip_bad_files): at construction, and at load time (batch["skipped"])
    skipped: List[dict] = [{"img_file": "", "lbl_file": "", "source": src, "reason": why}
                           for src, why in getattr(getattr(loader, "dataset", None), "skipped", None) or []]
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm
        total = None
        with contextlib.suppress(TypeError):
            # this process's images (a sharded validation sampler gives each rank a part)
            total = len(loader.sampler) if hasattr(loader, "sampler") else len(loader)
        if max_images is not None and total is not None:
            total = min(total, max_images)
        bar = tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True, leave=desc == "test")
    entries = getattr(getattr(loader, "dataset", None), "entries", None)
    names = output_names(e.img_file for e in entries) if entries and hasattr(entries[0], "img_file") else {}
    try:
        for batch in start_workers(loader):
            if max_images is not None and len(records) >= max_images:
                break
            skipped.extend(batch.get("skipped") or [])
            if "noisy_raw" not in batch and batch.get("skipped"):
                continue
            missing = [k for k in REQUIRED_KEYS if k not in batch]
            if missing:
                raise KeyError(f"evaluate: the batch lacks {missing}; it has {sorted(batch)}")
            noisy = batch["noisy_raw"].to(device, non_blocking=True)
            if channels_last:
                noisy = noisy.contiguous(memory_format=torch.channels_last)
            n = noisy.shape[0]
            img_files = [str(f) for f in _as_list(batch["img_file"], n)]
            lbl_files = [str(f) for f in _as_list(batch.get("lbl_file", [""] * n), n)]
            ratios = [float(r) for r in _as_list(batch["ratio"], n)]
            synchronize(device)
            start = time.perf_counter()
            with autocast_context(device, amp):
                rgb, raw = model(noisy)
            synchronize(device)
            elapsed_ms = (time.perf_counter() - start) * 1000.0 / n
            rgb = rgb.float()
            raw = raw.float()
            clean_rgb = batch["clean_rgb"].to(device, non_blocking=True).float()
            clean_raw = batch["clean_raw"].to(device, non_blocking=True).float()
            if rgb.shape != clean_rgb.shape or raw.shape != clean_raw.shape:
                raise ValueError(f"evaluate: {img_files[0]}: the model returned rgb {tuple(rgb.shape)} and raw "
                                 f"{tuple(raw.shape)}, but the targets are rgb {tuple(clean_rgb.shape)} and raw "
                                 f"{tuple(clean_raw.shape)}")
            rgb_p, rgb_s = psnr(rgb, clean_rgb).tolist(), ssim(rgb, clean_rgb).tolist()
            raw_p = psnr(raw, clean_raw, data_range=1.0).tolist()
            raw_s = ssim(raw, clean_raw, data_range=1.0).tolist()
            for i in range(n):
                if max_images is not None and len(records) >= max_images:
                    break
                rec = {"img_file": img_files[i], "lbl_file": lbl_files[i], "ratio": ratios[i],
                       "group": ratio_group(ratios[i]), "rgb_psnr": rgb_p[i], "rgb_ssim": rgb_s[i],
                       "raw_psnr": raw_p[i], "raw_ssim": raw_s[i], "height": int(rgb.shape[-2]),
                       "width": int(rgb.shape[-1]), "time_ms": elapsed_ms, "output": None}
                out_rgb = rgb[i].clamp(0, 1)
                stem = names.get(img_files[i]) or _stem(img_files[i])
                if save_images:
                    name = f"{stem}.png"  # one file per image; the PSNR is in the report
                    rec["output"] = write_png(os.path.join(save_dir, name), out_rgb, 16 if save_16bit else 8)
                if save_grid:
                    preview = raw_preview(noisy[i], block or rgb.shape[-1] // noisy.shape[-1])
                    grid = torch.cat([preview.to(out_rgb.device), out_rgb, clean_rgb[i].clamp(0, 1)], dim=-1)
                    write_png(os.path.join(save_dir, "grid", f"{stem}_grid.png"), grid)
                records.append(rec)
                if bar is not None:
                    bar.update(1)
                    # the running means (the report's reconstruction PSNR and RAW "over all images"),
                    # not the last image's scores, which swing by several dB from image to image
                    bar.set_postfix(rgb_psnr_mean=f"{_mean(r['rgb_psnr'] for r in records):.2f}",
                                    raw_psnr_mean=f"{_mean(r['raw_psnr'] for r in records):.2f}")
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    records = _gather_records(records)
    report = summarize(records)
    report["per_image"] = records
    report["skipped"] = _gather_skipped(skipped)
    return report


def _gather_skipped(skipped: List[dict]) -> List[dict]:
    """The skipped pairs of all ranks, each once (construction-time skips are seen by every rank)."""
    _, world = _dist_info()
    if world > 1:
        gathered: List[Optional[List[dict]]] = [None] * world
        torch.distributed.all_gather_object(gathered, skipped)
        skipped = [s for part in gathered for s in part or []]
    seen, out = set(), []
    for s in skipped:
        key = (s.get("source"), s.get("img_file"))
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out


# ---------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------

def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_metrics_json(path: str, report: Mapping[str, Any], **extra: Any) -> str:
    """Write ``report`` (plus ``extra`` keys such as config, checkpoint) as JSON, atomically.

    Non-finite numbers (a PSNR of inf for identical images, NaN outputs) become null.
    """
    payload = dict(report)
    payload.update(extra)
    return atomic_write_text(path, json.dumps(_json_safe(payload), indent=2, allow_nan=False) + "\n")


def write_metrics_csv(path: str, records: List[Mapping[str, Any]]) -> str:
    """One row per image with the columns of ``RECORD_FIELDS``, atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(RECORD_FIELDS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in RECORD_FIELDS})
    return atomic_write_text(path, buf.getvalue())


def _fmt(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _diff(ours, paper, digits: int) -> str:
    if ours is None or paper is None or not math.isfinite(ours):
        return "-"
    return f"{ours - paper:+.{digits}f}"


def format_tables(report: Mapping[str, Any], paper: Optional[Mapping[str, Any]] = None,
                  paper_name: str = "paper") -> str:
    """The two reports as Markdown tables; with ``paper`` (an entry of ``cans.evaluate.paper.PAPER``)
    each row also shows the paper's PSNR / SSIM and the difference (ours - paper). A ratio group
    without images has a row only when the paper has a figure for it."""
    lines = ["### Reconstruction (sRGB): PSNR / SSIM", ""]
    rec = report["reconstruction"]
    if paper:
        pp, ps = paper["reconstruction"]
        lines += [f"| images | PSNR (dB) | SSIM | {paper_name} PSNR | {paper_name} SSIM | ΔPSNR | ΔSSIM |",
                  "|---:|---:|---:|---:|---:|---:|---:|",
                  f"| {rec['images']} | {_fmt(rec['psnr'], 3)} | {_fmt(rec['ssim'], 4)} | {pp:.3f} | {ps:.3f} | "
                  f"{_diff(rec['psnr'], pp, 3)} | {_diff(rec['ssim'], ps, 4)} |"]
    else:
        lines += ["| images | PSNR (dB) | SSIM |", "|---:|---:|---:|",
                  f"| {rec['images']} | {_fmt(rec['psnr'], 3)} | {_fmt(rec['ssim'], 4)} |"]
    lines += ["", "### Denoising (RAW): PSNR / SSIM by exposure ratio", ""]
    if paper:
        lines += [f"| ratio | images | PSNR (dB) | SSIM | {paper_name} PSNR | {paper_name} SSIM | ΔPSNR | ΔSSIM |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
    else:
        lines += ["| ratio | images | PSNR (dB) | SSIM |", "|---|---:|---:|---:|"]
    for group, row in report["denoising"].items():
        if group == "all_images" or (not row["images"] and not (paper and group in paper["denoising"])):
            continue  # a ratio without images: a row only to show the paper's figure beside it
        label = "**average**" if group == "average" else group
        line = f"| {label} | {row['images']} | {_fmt(row['psnr'], 3)} | {_fmt(row['ssim'], 4)} |"
        if paper:
            ref = paper["denoising"].get(group)
            if ref:
                line += (f" {ref[0]:.3f} | {ref[1]:.3f} | {_diff(row['psnr'], ref[0], 3)} | "
                         f"{_diff(row['ssim'], ref[1], 4)} |")
            else:
                line += " - | - | - | - |"
        lines.append(line)
    lines += ["", "average = mean of the ratio groups' means (as the paper); over all images: "
              f"{_fmt(report['denoising']['all_images']['psnr'], 3)} dB / "
              f"{_fmt(report['denoising']['all_images']['ssim'], 4)}"]
    skipped = report.get("skipped") or []
    if skipped:
        lines += ["", f"left out (data.skip_bad_files, unreadable files): {len(skipped)} pair(s): "
                  + ", ".join(s.get("source") or s.get("img_file") for s in skipped[:10])
                  + (" ..." if len(skipped) > 10 else "")]
    return "\n".join(lines) + "\n"


__all__ = ["evaluate", "summarize", "format_tables", "write_metrics_json", "write_metrics_csv",
           "ratio_group", "autocast_context", "PAPER_GROUPS", "RECORD_FIELDS"]
