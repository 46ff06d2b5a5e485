"""Enhancing your own RAW photos: the logic behind ``scripts/infer.py`` (:mod:`cans.cli.infer`; user guide:
docs/inference.md).

A file is read with rawpy/LibRaw (:mod:`cans.io.raw`): mosaic, black per CFA site, white level
and CFA layout come from the file. It is normalised as in training (values below black stay
negative), multiplied by the ratio (``--ratio auto``: the mosaic's mean brought to ``--target-mean``,
clamped to ``[1, max_ratio]``), brought to the trained phase by padding one CFA period further in
(so the output keeps the photo's size and every site its colour), run through the model (whole, or in
tiles: :mod:`cans.tiling`) and cropped back to the visible area; ``--rotate`` applies the file's
orientation (LibRaw ``sizes.flip``: 3 = 180 degrees, 5 = 90 counter-clockwise, 6 = 90 clockwise).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from .cfa import BAYER_RGGB, XTRANS_PATTERN, pack_bayer, pack_xtrans, phase_offset, unpack_bayer, unpack_xtrans
from .config import load_config, split_options
from .data.errors import DataError
from .engine.failures import compiler_failure, cuda_failure
from .engine.fastpath import fast_model_for_test
from .engine.loading import check_checkpoint_path, load_model, pick_device
from .errors import InferenceError
from .io.dng import write_output_dng
from .io.png import write_png
from .io.raw import RAW_EXTENSIONS, normalize_mosaic, raw_files_in, read_raw, read_shot_info
from .models.published import git_blob_id, weights_line
from .onnx_model import (
    OnnxModel,
    config_for_export,
    default_onnx_path,
    exported_config,
    model_differences,
    read_metadata,
    require_runtime,
    weights_info,
)
from .outdirs import provisional_output_dir
from .tiling import DEFAULT_OVERLAP, check_tile_arguments, run_with_fallback, tile_for_model, tile_limits

DEFAULT_TARGET_MEAN = 0.1
DEFAULT_MAX_RATIO = 300.0


class DeviceFailure(RuntimeError):
    """A CUDA error while enhancing a file: the device is unusable for the rest of the process
    (CUDA errors are sticky), so the run stops there; the message names the file."""


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


@dataclass
class Mosaic:
    """A RAW file ready for the model.

    data: (H, W) float32 normalised mosaic in [0, ~1] (black removed, no gain).
    cfa: (p, p) colour of each site of the repeating cell, counted from the top-left of
         the visible area (0 R, 1 G, 2 B); p = 2 (Bayer) or 6 (X-Trans).
    wb: (3,) as-shot white balance (G = 1).
    flip: the orientation the file asks for (see :func:`apply_orientation`).
    black: (p, p) black level of each site of the cell, white: the saturation level (DN): what
    ``data`` was normalised with, and what a DNG of the output is written at.
    """
    data: np.ndarray
    cfa: np.ndarray
    wb: np.ndarray
    path: str
    flip: int = 0        # LibRaw's orientation flag (sizes.flip): 0, 3, 5 or 6
    black: Optional[np.ndarray] = None
    white: float = 1.0


    @property
    def period(self) -> int:
        return self.cfa.shape[0]

    @property
    def pattern(self) -> str:
        return "".join("RGB"[c] for c in self.cfa.reshape(-1))


def read_mosaic(path: str) -> Mosaic:
    """Read a Bayer or X-Trans RAW with its levels and CFA layout (:func:`cans.io.raw.read_raw`);
    InferenceError naming the file otherwise."""
    try:
        rf = read_raw(path)
    except DataError as exc:
        raise InferenceError(str(exc)) from None
    return Mosaic(data=normalize_mosaic(rf.mosaic, rf.black, rf.white), cfa=rf.cfa, wb=rf.wb, path=path,
                  flip=rf.flip, black=rf.black, white=rf.white)


def apply_orientation(image: torch.Tensor, flip: int) -> torch.Tensor:
    """Apply LibRaw's orientation flag to a (..., H, W) image, as LibRaw's own rendering does:
    bit 2 flips rows, bit 1 flips columns, bit 4 then transposes (3 = 180 degrees, 5 = 90
    counter-clockwise, 6 = 90 clockwise)."""
    out = image
    if flip & 2:
        out = out.flip(-2)
    if flip & 1:
        out = out.flip(-1)
    if flip & 4:
        out = out.transpose(-2, -1)
    return out.contiguous()


def periodic_pad(mosaic: np.ndarray, top: int, left: int, period: int) -> Tuple[np.ndarray, Tuple[int, int]]:
    """Pad ``top`` rows / ``left`` columns, then bottom / right up to whole cells, each pad copied
    from one CFA ``period`` further in, so every site keeps its colour. Returns (padded, (top, left))."""
    h, w = mosaic.shape
    bottom = (-(h + top)) % period
    right = (-(w + left)) % period
    if h < period or w < period:
        raise ValueError(f"image of {h}x{w} is too small to pad by a CFA period of {period}")
    rows = np.arange(-top, h + bottom)
    rows = np.where(rows < 0, rows + period, rows)
    rows = np.where(rows >= h, rows - period, rows)
    cols = np.arange(-left, w + right)
    cols = np.where(cols < 0, cols + period, cols)
    cols = np.where(cols >= w, cols - period, cols)
    return mosaic[np.ix_(rows, cols)], (top, left)


def output_mosaic(raw: torch.Tensor, period: int, offset: Tuple[int, int], size: Tuple[int, int]) -> np.ndarray:
    """The network's packed RAW output (C, h, w) of an input :func:`prepare_input` made, as a mosaic
    laid out like the input's visible area: (H, W) float32, normalised (0 black, 1 white) at the
    amplified exposure. Unpacked (Bayer or X-Trans), then the phase padding cropped off."""
    unpack = unpack_bayer if period == 2 else unpack_xtrans
    full = unpack(raw.detach().float().cpu().numpy())
    top, left = offset
    return np.ascontiguousarray(full[top:top + size[0], left:left + size[1]], dtype=np.float32)


def auto_ratio(data: np.ndarray, target_mean: float = DEFAULT_TARGET_MEAN,
               max_ratio: float = DEFAULT_MAX_RATIO) -> float:
    """The gain that brings the normalised mosaic's mean to ``target_mean``, clamped to [1, max_ratio]."""
    if not target_mean > 0:
        raise ValueError(f"target mean must be positive, got {target_mean}")
    mean = float(np.mean(data, dtype=np.float64))
    if not np.isfinite(mean) or mean <= 0:
        return float(max_ratio)
    return float(min(max(target_mean / mean, 1.0), max_ratio))


def prepare_input(mosaic: Mosaic, ratio: float, block_size: int, in_channel: int,
                  max_clip: Optional[float] = 1.0, min_clip: Optional[float] = None):
    """Mosaic -> (packed (1, C, h, w) float32 tensor, (top, left) offset, (H, W) input size)."""
    if block_size == 2 and in_channel == 4:
        if mosaic.period != 2:
            raise InferenceError(f"{mosaic.path}: an X-Trans file ({mosaic.pattern[:6]}...); "
                                 f"X-Trans files need a Fuji config (configs/*/Fuji.yaml, or configs/demo_fuji.yaml "
                                 f"for the demo)")
        reference, pack = BAYER_RGGB, pack_bayer
    elif block_size == 3 and in_channel == 9:
        if mosaic.period != 6:
            raise InferenceError(f"{mosaic.path}: a Bayer file ({mosaic.pattern}) cannot go through an X-Trans "
                                 f"(Fuji) model; use a Sony config")
        reference, pack = XTRANS_PATTERN, pack_xtrans
    else:
        raise InferenceError(f"model with in_channel {in_channel} and block_size {block_size}: expected 4/2 "
                             f"(Bayer) or 9/3 (X-Trans)")
    try:
        dy, dx = phase_offset(mosaic.cfa, reference)
    except ValueError as exc:
        raise InferenceError(f"{mosaic.path}: {exc}") from None
    p = mosaic.period
    data = mosaic.data * np.float32(ratio)
    if max_clip is not None:
        data = np.minimum(data, np.float32(max_clip))
    if min_clip is not None:
        data = np.maximum(data, np.float32(min_clip))
    try:
        padded, offset = periodic_pad(data, dy, dx, p)
    except ValueError as exc:
        raise InferenceError(f"{mosaic.path}: {exc}") from None
    packed = pack(padded)
    return torch.from_numpy(np.ascontiguousarray(packed, dtype=np.float32))[None], offset, data.shape


#: the first bytes of image formats a camera or an editor writes beside (or from) a RAW file
_PROCESSED_FORMATS = ((b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG\r\n\x1a\n", "a PNG image"))
_HEIF_BRANDS = {b"heic": "a HEIC image", b"heix": "a HEIC image", b"mif1": "a HEIF image", b"avif": "an AVIF image"}


def processed_image_kind(path: str) -> Optional[str]:
    """'a JPEG image' (PNG, WebP, HEIC, AVIF) when the file ``path``, whose extension is not
    a RAW one (:data:`RAW_EXTENSIONS`), starts as such an image does; None otherwise (LibRaw decides)."""
    if os.path.splitext(path)[1].lower() in RAW_EXTENSIONS:
        return None
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    for magic, kind in _PROCESSED_FORMATS:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if head[4:8] == b"ftyp":
        return _HEIF_BRANDS.get(head[8:12])
    return None


def find_inputs(inputs: Sequence[str], log=print) -> List[str]:
    """Files as given, plus the RAW files (by extension) directly inside any folder given
    (hidden files such as macOS's ``._IMG_0001.ARW`` resource forks are left out). Sub-folders
    are not entered (a folder of results or of other cameras would be swept in); ``log`` gets one
    line per folder that has some, saying how many. A path that does not exist, a folder
    without RAW files, or a file that is a JPEG (PNG, HEIC, ...: :func:`processed_image_kind`)
    raises :class:`InferenceError` before any work."""
    files: List[str] = []
    for item in inputs:
        if os.path.isdir(item):
            found = raw_files_in(item)
            subdirs = sorted(n for n in os.listdir(item)
                             if not n.startswith(".") and os.path.isdir(os.path.join(item, n)))
            shown = ", ".join(subdirs[:3]) + (", ..." if len(subdirs) > 3 else "")
            if not found and subdirs:
                raise InferenceError(f"{item}: no RAW files directly in this folder, and its {len(subdirs)} "
                                     f"sub-folder(s) ({shown}) are not entered; name them as inputs, e.g. "
                                     f"{os.path.join(item, subdirs[0])}")
            if not found:
                raise InferenceError(f"{item}: no RAW files in this folder (extensions "
                                     f"{', '.join(sorted(RAW_EXTENSIONS))})")
            if subdirs:
                log(f"note: {item}: {len(subdirs)} sub-folder(s) not entered ({shown}); name them as inputs "
                    f"to enhance their files too")
            files.extend(found)
        elif not os.path.exists(item):
            raise InferenceError(f"input {item}: no such file or folder")
        else:
            kind = processed_image_kind(item)
            if kind:
                raise InferenceError(f"input {item}: {kind}, not a camera RAW file; CANS enhances the RAW file the "
                                     f"camera wrote (ARW, DNG, NEF, CR2, RAF, ...), before any processing")
            files.append(item)
    return files


@torch.no_grad()
def enhance(model: torch.nn.Module, path: str, ratio, device, *, amp: str = "off",
            target_mean: float = DEFAULT_TARGET_MEAN, max_ratio: float = DEFAULT_MAX_RATIO,
            max_clip: Optional[float] = 1.0, min_clip: Optional[float] = None, tile=None,
            overlap: int = DEFAULT_OVERLAP, two_pass: bool = True, rotate: bool = False,
            log=print, auto_tiles: Optional[dict] = None, raw_mosaic: bool = False,
            max_memory_gb: Optional[float] = None,
            tile_progress: Optional[Callable[[int, int], None]] = None) -> Dict[str, object]:
    """Enhance one RAW file: ``{"rgb": (3, H, W) float tensor in [0, 1] on the CPU, "ratio": float,
    "pattern": str, "raw": (C, h, w) denoised packed RAW, "tile": tile used or None, "mosaic": the
    input (:class:`Mosaic`)}``; H, W = the input mosaic's size (swapped when ``rotate`` applies a
    90-degree orientation). ``raw_mosaic``: also ``"raw_mosaic"``, the RAW output as the input's
    mosaic (:func:`output_mosaic`), for a DNG.
    ``tile``: None (whole frame), packed pixels a side, or 'auto' (see :mod:`cans.tiling`); on the
    CPU 'auto' keeps the process within ``max_memory_gb`` (:func:`cans.tiling.cpu_memory_limit`);
    ``auto_tiles``: the sizes 'auto' already chose, kept across the files of a run
    (:func:`cans.tiling.run_with_fallback`); ``tile_progress``: called with (tile passes done, in
    all) as tiles run."""

    mosaic = read_mosaic(path)
    if isinstance(ratio, str):
        if ratio != "auto":
            raise InferenceError(f"ratio: expected a number or 'auto', got {ratio!r}")
        ratio = auto_ratio(mosaic.data, target_mean, max_ratio)
    ratio = float(ratio)
    if not ratio > 0:
        raise InferenceError(f"ratio must be positive, got {ratio}")
    net = getattr(model, "module", model)
    b = int(net.block_size)
    packed, (top, left), (h, w) = prepare_input(mosaic, ratio, b, int(net.in_channel), max_clip, min_clip)
    if min(packed.shape[-2:]) < net.min_input_size:
        raise InferenceError(f"{path}: image of {h}x{w} pixels is too small; the model needs at least "
                             f"{net.min_input_size * b}x{net.min_input_size * b}")
    device = torch.device(device)
    rgb, raw, used = run_with_fallback(model, packed.to(device), tile=tile, overlap=overlap, two_pass=two_pass,
                                       amp=amp, log=log, name=path, auto_tiles=auto_tiles,
                                       max_memory_gb=max_memory_gb, progress=tile_progress)
    rgb = rgb[0, :, top:top + h, left:left + w].float().clamp(0, 1).cpu()
    if rotate and mosaic.flip:
        rgb = apply_orientation(rgb, mosaic.flip)
    out = {"rgb": rgb, "ratio": ratio, "pattern": mosaic.pattern if mosaic.period == 2 else "X-Trans",
           "raw": raw[0].float().cpu(), "tile": used, "mosaic": mosaic}
    if raw_mosaic:
        out["raw_mosaic"] = output_mosaic(raw[0], mosaic.period, (top, left), (h, w))
    return out


class TileBar:
    """A photo's tile passes as a second progress bar under the files' one, shown only while a
    photo runs in tiles (a 24 MP photo in tiles takes over a minute on 2 CPU cores); called as
    ``tile_progress(done, total)``."""

    def __init__(self, enabled: bool = True):
        self.enabled, self.bar = enabled, None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None or self.bar.total != total or done < self.bar.n:   # a new photo, or a retry
            self.close()
            self.bar = tqdm(total=total, desc="tiles", unit="tile", leave=False, dynamic_ncols=True)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run_inference(model: torch.nn.Module, inputs: Iterable[str], out_dir: str, ratio, device, *,
                  amp: str = "off", bits: int = 8, target_mean: float = DEFAULT_TARGET_MEAN,
                  max_ratio: float = DEFAULT_MAX_RATIO, max_clip: Optional[float] = 1.0,
                  min_clip: Optional[float] = None, progress: bool = True, tile=None, overlap: int = DEFAULT_OVERLAP,
                  two_pass: bool = True, rotate: bool = False, dng: bool = False,
                  max_memory_gb: Optional[float] = None) -> Dict[str, list]:
    """Enhance every file, writing ``<out_dir>/<stem>.png`` (and with ``dng`` the denoised RAW as
    ``<stem>.dng``: :func:`cans.io.dng.write_output_dng`); a failing file is reported and skipped.
    Files whose names differ only in the folder or extension (``a.dng``, ``a.kdc``) would write the
    same PNG: the later ones get ``<stem>_1.png``, ``<stem>_2.png``, ... in input order, each with
    a note naming the file that took the name.
    With ``tile='auto'`` (on the CPU also ``tile=None``) the memory is measured once per packed input
    size, not once per file; ``max_memory_gb``: the CPU's bound (:func:`enhance`).
    A failure of ``torch.compile`` (:func:`compiler_failure`) or a CUDA error (:func:`cuda_failure`)
    would fail every file the same way (and recompile for each), so the first one stops the run:
    the compiler's error is raised as a ``TorchDynamoException`` (``cans.cli.common.run_cli`` turns it
    into one line naming ``--set test.fast=false``), a CUDA error as :class:`DeviceFailure`.

    Returns ``{"done": [(input, output png, ratio)], "failed": [(input, message)], "seconds": float,
    "tiles": {input: tile used or None}, "dngs": {input: the DNG written}}``.
    """
    files = list(inputs)
    model.eval()
    tile = cpu_default_tile(tile, device)
    done, failed, used, tiles, auto_tiles, dngs = [], [], {}, {}, {}, {}
    start = time.perf_counter()
    bar = tqdm(files, desc="infer", unit="file", disable=not progress, dynamic_ncols=True)
    tile_bar = TileBar(enabled=progress)
    for path in bar:
        bar.set_postfix_str(os.path.basename(path))
        try:
            result = enhance(model, path, ratio, device, amp=amp, target_mean=target_mean, max_ratio=max_ratio,
                             max_clip=max_clip, min_clip=min_clip, tile=tile, overlap=overlap, two_pass=two_pass,
                             rotate=rotate, log=tqdm.write, auto_tiles=auto_tiles, raw_mosaic=dng,
                             max_memory_gb=max_memory_gb, tile_progress=tile_bar)
            tiles[path] = result["tile"]
            name = output_name(path, used, log=tqdm.write)
            out = write_png(os.path.join(out_dir, name + ".png"), result["rgb"], bits)
            if dng:
                dngs[path] = write_raw_dng(os.path.join(out_dir, name + ".dng"), result)
            done.append((path, out, result["ratio"]))
            result = None   # the next file's memory bound (cans.tiling.cpu_tile) counts what is held
        except (InferenceError, DataError, ValueError, OSError, RuntimeError) as exc:
            if compiler_failure(exc) or cuda_failure(exc):
                bar.close()
                _stop_run(exc, path, len(done), len(files))
            message = str(exc) if path in str(exc) else f"{path}: {exc}"
            failed.append((path, message))
            tqdm.write(f"FAILED {message}")
        finally:
            tile_bar.close()
    return {"done": done, "failed": failed, "seconds": time.perf_counter() - start, "tiles": tiles, "dngs": dngs}


def cpu_default_tile(tile, device):
    """``tile`` as given; None on the CPU becomes 'auto': the CPU has no out-of-memory error to fall
    back on, so photos keep to the memory bound (:func:`cans.tiling.cpu_tile`) unless told a tile."""
    return "auto" if tile is None and torch.device(device).type == "cpu" else tile


def output_name(path: str, used: Dict[str, str], log=print) -> str:
    """The file stem an input's outputs get: its own, or for a second input of that stem (``a.dng``
    and ``a.kdc``, ``x/a.dng`` and ``y/a.dng``) ``<stem>_1``, ``<stem>_2``, ... in input order, with
    a note. ``used``: the stems taken so far in this output folder (updated)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    name, k = stem, 1
    while name in used:
        name, k = f"{stem}_{k}", k + 1
    used[name] = path
    if name != stem:
        log(f"note: {stem}.png is taken by {used[stem]}: {path} -> {name}.png")
    return name


def write_raw_dng(path: str, result: Mapping[str, object]) -> str:
    """The denoised RAW of an :func:`enhance` result (made with ``raw_mosaic=True``) as a DNG with
    the input's layout, levels and metadata (:func:`cans.io.dng.write_output_dng`)."""
    mosaic = result["mosaic"]
    try:
        info = read_shot_info(mosaic.path)
    except DataError as exc:
        raise InferenceError(str(exc)) from None
    return write_output_dng(path, result["raw_mosaic"], mosaic.cfa, mosaic.black, mosaic.white, mosaic.wb, info)


def _stop_run(exc: BaseException, path: str, done: int, total: int) -> None:
    """Raise the error that stops a run at ``path`` (see :func:`run_inference`)."""
    from torch._dynamo.exc import TorchDynamoException

    if compiler_failure(exc):
        if isinstance(exc, TorchDynamoException):
            raise exc
        raise TorchDynamoException(f"{type(exc).__name__}: {_first_line(exc)}") from exc
    raise DeviceFailure(f"{path}: {type(exc).__name__}: {_first_line(exc)} (stopped there: {done} of {total} "
                        f"file(s) enhanced before it, the rest not tried)") from exc


def check_tiling(model: torch.nn.Module, tile, overlap: int) -> None:
    """InferenceError for a --tile / --overlap the model cannot use, before any file is read."""

    try:
        check_tile_arguments(model, tile, overlap)
    except ValueError as exc:
        raise InferenceError(str(exc)) from None


def check_not_an_export(checkpoint: str) -> None:
    """InferenceError when ``checkpoint`` is an ONNX export (an ``.onnx`` file that is no PyTorch zip
    archive): said first, before a tip about exporting it is printed."""
    if not checkpoint.lower().endswith(".onnx") or not os.path.isfile(checkpoint):
        return
    with open(checkpoint, "rb") as fh:
        if fh.read(4) == b"PK\x03\x04":   # a PyTorch checkpoint, oddly named: its loading decides
            return
    raise InferenceError(f"cannot read checkpoint {checkpoint}: an ONNX export, not a PyTorch checkpoint; "
                         f"run it with --onnx {checkpoint}")


def find_export(checkpoint: str, cfg, log=print, runtime: str = "auto",
                config_path: str = "CONFIG") -> Optional[Tuple[str, Dict[str, str]]]:
    """On the CPU without ``--onnx``: the ONNX export beside ``checkpoint`` (``<checkpoint>.onnx``,
    :func:`cans.onnx_model.default_onnx_path`) and its metadata, when it was exported from these
    very weights (its git blob id) and this model; otherwise None, with one line saying why or how
    to make it."""

    candidate = default_onnx_path(checkpoint)
    export = f"python scripts/export_onnx.py -c {config_path} --checkpoint {checkpoint}"
    if not os.path.isfile(candidate):
        log(f"tip: on the CPU, an ONNX export runs this model faster than PyTorch (about 9 times on a full "
            f"Sony frame; docs/performance.md): {export} writes {candidate}, which infer.py then uses")
        return None
    try:
        require_runtime(runtime)
        meta = read_metadata(candidate)
    except InferenceError as exc:   # MissingPackageError included: "... is not installed ..."
        log(f"note: not using {candidate}: {exc}")
        return None
    if meta.get("weights_git_blob") != git_blob_id(checkpoint) or model_differences(exported_config(meta), cfg):
        log(f"note: {candidate} was exported from other weights or another model; running PyTorch "
            f"(export again: {export})")
        return None
    return candidate, meta


@dataclass
class Runner:
    """What enhances the files: ``model`` (PyTorch, or an :class:`OnnxModel`), its ``cfg`` and
    ``device``, ``weights`` (the checkpoint path, or :func:`weights_info` of an export) and ``how``
    (the end of the weights line: why an export runs)."""
    model: torch.nn.Module
    cfg: dict
    device: torch.device
    weights: object
    how: str = ""


def load_runner(*, config: Optional[str] = None, overrides: Sequence[str] = (), checkpoint: Optional[str] = None,
                onnx: Optional[str] = None, runtime: str = "auto", threads: Optional[int] = None,
                use_export: bool = True, device: Optional[str] = None, amp: Optional[str] = None,
                precision: str = "f32", log=print) -> Runner:
    """The model that enhances the files: the ``onnx`` export, the export found beside ``checkpoint``
    on the CPU (unless ``use_export`` is False, or ``amp`` asks for other than float32), or the
    checkpoint in PyTorch (``checkpoint`` None: the config's ``test.checkpoint``). ``config``: the
    config file (with ``onnx``: optional, checked against the export's own); ``overrides``: its
    ``--set`` words; ``device`` None: CUDA when available; ``precision``: an export's (OpenVINO's
    bfloat16 with 'bf16'; PyTorch takes it as ``amp``: :func:`run_settings`)."""

    if onnx:
        if device not in (None, "cpu"):
            raise InferenceError(f"--onnx runs on the CPU (OpenVINO or ONNX Runtime); --device {device} is "
                                 f"for PyTorch (leave --onnx out to run the checkpoint there)")
        model = OnnxModel(onnx, threads, runtime, precision=precision)
        if checkpoint:
            log(f"note: --checkpoint is not used with --onnx: {onnx} holds its own weights (exported "
                f"from {model.meta.get('checkpoint') or 'a checkpoint'})")
        cfg = config_for_export(model, config, overrides)
        return Runner(model, cfg, torch.device("cpu"), weights_info(model))
    if not config:
        raise InferenceError("-c/--config is required (without --onnx, whose file holds its config)")
    cfg = load_config(config, overrides)
    checkpoint = checkpoint or cfg["test"].get("checkpoint")
    if not checkpoint:
        raise InferenceError("no checkpoint: pass --checkpoint PATH (or set test.checkpoint in the config)")
    check_checkpoint_path(checkpoint)
    check_not_an_export(checkpoint)
    torch_device = pick_device(device)
    if torch_device.type == "cpu" and use_export:
        found = find_export(checkpoint, cfg, log=log, runtime=runtime, config_path=config)
        amp = amp or cfg["test"]["amp"]
        if found and amp != "off":
            log(f"note: not using {found[0]}: it runs float32, and --amp / test.amp asks for {amp} (PyTorch "
                f"runs it)")
        elif found:
            model = OnnxModel(found[0], threads, runtime, meta=found[1], precision=precision)
            how = " (the export beside the checkpoint; --no-onnx runs PyTorch)"
            return Runner(model, cfg, torch_device, weights_info(model), how)
    model = load_model(cfg, checkpoint, torch_device)
    model, _ = fast_model_for_test(cfg, model, torch_device)  # test.fast: CUDA only
    return Runner(model, cfg, torch_device, checkpoint)


def run_settings(runner: Runner, amp: Optional[str], tile, overlap: int, log=print,
                 precision: str = "f32") -> Dict[str, object]:
    """Log the weights line, check ``amp`` and the tiles against the runner's model, and return the
    keyword arguments of an :func:`enhance` that follow from its config: ``amp`` (None: the config's
    ``test.amp``; 'off' for an export; 'bf16' for PyTorch with ``precision`` 'bf16'), ``max_clip``
    and ``min_clip``."""
    model = runner.model
    is_onnx = isinstance(model, OnnxModel)
    log(f"weights: {weights_line(runner.weights)}"
        + (f", as ONNX {runner.weights['onnx']} run by {model.runtime_name}"
           + (f" in {model.precision}" if model.precision != "f32" else "") + runner.how if is_onnx else ""))
    opts = split_options(runner.cfg, "test")
    if is_onnx and amp not in (None, "off"):
        raise InferenceError(f"--amp {amp}: {model.runtime_name} runs the float32 export; leave --amp out "
                             f"(--precision bf16 asks OpenVINO for bfloat16)")
    if not is_onnx and precision == "bf16":
        if amp not in (None, "bf16"):
            raise InferenceError(f"--precision bf16 and --amp {amp} contradict each other (PyTorch runs "
                                 f"--precision bf16 as --amp bf16)")
        log("note: PyTorch runs --precision bf16 as --amp bf16 (autocast)")
        amp = "bf16"
    check_tiling(model, tile, overlap)
    if isinstance(tile, int) and tile_for_model(model, tile, overlap) != tile:
        log(f"--tile {tile}: tiles are a multiple of {tile_limits(model)[0]} packed pixels; "
            f"using {tile_for_model(model, tile, overlap)}")
    return {"amp": "off" if is_onnx else (amp or runner.cfg["test"]["amp"]), "max_clip": opts.get("max_clip"),
            "min_clip": opts.get("min_clip")}


def enhance_files(inputs: Sequence[str], out_dir: str, *, config: Optional[str] = None,
                  overrides: Sequence[str] = (), checkpoint: Optional[str] = None, onnx: Optional[str] = None,
                  runtime: str = "auto", threads: Optional[int] = None, use_export: bool = True,
                  device: Optional[str] = None, amp: Optional[str] = None, ratio="auto",
                  target_mean: float = DEFAULT_TARGET_MEAN, max_ratio: float = DEFAULT_MAX_RATIO, bits: int = 8,
                  tile=None, overlap: int = DEFAULT_OVERLAP, two_pass: bool = True, rotate: bool = False,
                  dng: bool = False, precision: str = "f32", progress: bool = True, log=print,
                  max_memory_gb: Optional[float] = None) -> Dict[str, object]:
    """Enhance the RAW files and folders ``inputs`` (:func:`find_inputs`) into ``out_dir``, with the
    model :func:`load_runner` picks (its keyword parameters); ``amp`` None: the config's ``test.amp``;
    the other parameters as :func:`run_inference` takes them. ``out_dir`` is made before the model
    loads and removed again when nothing was written in it. ``log`` gets the notes and the weights line.

    Returns :func:`run_inference`'s dict plus ``"files"`` (the inputs found). Bad usage raises a
    user error; a CUDA error raises :class:`DeviceFailure` (the GPU is unusable afterwards)."""

    files = find_inputs(inputs, log=log)
    if onnx is None and checkpoint:
        check_checkpoint_path(checkpoint)  # before the result folder is made
        check_not_an_export(checkpoint)
    # made before the model (not one failure per file at the end); removed again if nothing was written in it
    with provisional_output_dir(out_dir, "--out"):
        runner = load_runner(config=config, overrides=overrides, checkpoint=checkpoint, onnx=onnx, runtime=runtime,
                             threads=threads, use_export=use_export, device=device, amp=amp, precision=precision,
                             log=log)
        settings = run_settings(runner, amp, tile, overlap, log, precision)
        result = run_inference(runner.model, files, out_dir, ratio, runner.device, bits=bits,
                               target_mean=target_mean, max_ratio=max_ratio, progress=progress, tile=tile,
                               overlap=overlap, two_pass=two_pass, rotate=rotate, dng=dng,
                               max_memory_gb=max_memory_gb, **settings)
    result["files"] = files
    return result


__all__ = ["Mosaic", "InferenceError", "DeviceFailure", "read_mosaic",
           "apply_orientation", "phase_offset", "periodic_pad", "auto_ratio",
           "prepare_input", "processed_image_kind", "find_inputs", "enhance", "check_tiling", "run_inference",
           "DEFAULT_TARGET_MEAN", "DEFAULT_MAX_RATIO", "check_not_an_export", "enhance_files", "find_export",
           "load_runner", "Runner", "output_mosaic", "output_name", "run_settings", "write_raw_dng",
           "cpu_default_tile"]
