"""``RawPairDataset``: paired short / long captures from any camera LibRaw reads (your own sensor).

List file (``data.<split>.image_list_file``): ``short_file long_file [ratio]`` a line, paths relative
to ``data.data_path`` or absolute; without a ratio it comes from the metadata (:func:`metadata_ratio`,
``data.ratio_mode``, capped at ``data.max_ratio``). Levels, CFA and white balance come from each file;
the mosaics are cropped to the trained phase (RGGB, or the X-T2 X-Trans layout) so every pixel keeps
its colour (``scripts/infer.py`` pads instead, to keep the photo's size). Bayer: ``RawPairDataset``
(4 channels); X-Trans: ``XTransPairDataset`` (9). With ``data.load_npy: true`` samples come from the
caches of :func:`prepare_pairs` (SID's cache format plus ``raw_pairs.json``), identical to reading the
RAW files. User guide: docs/own_camera.md.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..cfa import BAYER_RGGB, XTRANS_PATTERN, pack_bayer, pack_xtrans, phase_crop, wb_vector
from ..errors import DiskFullError
from ..io.files import atomic_write_text
from ..io.raw import _raw_from_handle, open_raw, render_srgb16, shot_metadata
from ..registry import DATASETS
from .base import BadFileError, PairDataset
from .errors import DataError
from .lists import PairEntry, _read_lines
from .prepare import (
    CacheDiskFull,
    cache_path,
    check_cache_space,
    disk_full_error,
    rendering_chw,
    resolve,
    run_jobs,
    save_npy,
)

META_FILE = "raw_pairs.json"
META_VERSION = 1
DEFAULT_MAX_RATIO = 300.0
RATIO_MODES = ("exposure", "exposure_iso")


@dataclass
class FileMeta:
    """What the loader needs to know about one RAW file of a pair (JSON-serialisable).

    shape: (H, W) of the visible mosaic; pattern: CFA letters of the cell row by row ('GRBG',
    36 letters for X-Trans); crop: (cy, cx) rows / columns dropped to reach the model's phase;
    black: per packed channel (C values) after the crop; white: saturation level; wb: as-shot
    (R, G, B) gains, G = 1; exposure: seconds (0 = unknown); iso (0 = unknown); camera: the
    colour matrix and white level as text, to tell cameras apart.
    """
    shape: Tuple[int, int]
    pattern: str
    crop: Tuple[int, int]
    black: List[float]
    white: float
    wb: List[float]
    exposure: float
    iso: float
    camera: str

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "FileMeta":
        return cls(shape=tuple(d["shape"]), pattern=d["pattern"], crop=tuple(d["crop"]),
                   black=[float(v) for v in d["black"]], white=float(d["white"]),
                   wb=[float(v) for v in d["wb"]], exposure=float(d["exposure"]), iso=float(d["iso"]),
                   camera=str(d["camera"]))

    def to_json(self) -> Dict[str, Any]:
        return {"shape": list(self.shape), "pattern": self.pattern, "crop": list(self.crop),
                "black": self.black, "white": self.white, "wb": self.wb, "exposure": self.exposure,
                "iso": self.iso, "camera": self.camera}


@dataclass
class RawPairEntry(PairEntry):
    """A list line; ``fixed_ratio`` is the ratio written in the list (None: from the metadata);
    ``meta_ratio`` the metadata ratio used (capped at ``data.max_ratio``), ``uncapped_ratio`` the
    metadata ratio before the cap; ``clean``: a line of one clean file (``CleanFrameDataset``)."""
    fixed_ratio: Optional[float] = None
    meta_ratio: Optional[float] = None
    uncapped_ratio: Optional[float] = None
    clean: bool = False

    @property
    def ratio(self) -> float:
        if self.fixed_ratio is not None:
            return self.fixed_ratio
        if self.meta_ratio is None:
            raise DataError(f"{self.source}: ratio not resolved yet")
        return self.meta_ratio


# ---------------------------------------------------------------------------------------------
# Reading one file
# ---------------------------------------------------------------------------------------------

def _kind(block_size: int) -> Tuple[np.ndarray, Callable[[np.ndarray], np.ndarray], str]:
    if block_size == 2:
        return BAYER_RGGB, pack_bayer, "Bayer"
    return XTRANS_PATTERN, pack_xtrans, "X-Trans"


def _packed_black(black_cell: np.ndarray, crop: Tuple[int, int], pack) -> List[float]:
    """Black level of each packed channel, from the (p, p) per-site cell, after the phase crop."""
    packed = pack(np.roll(black_cell.astype(np.float64), (-crop[0], -crop[1]), axis=(0, 1)))
    return [float(v) for v in packed.reshape(packed.shape[0], -1).mean(axis=1)]


def read_pair_file(path: str, block_size: int, render: bool = False, pixels: bool = True):
    """Read one RAW file of a pair: ``(FileMeta, packed uint16 (C, h, w) or None, rendering uint16
    (3, h*b, w*b) or None)``; the packed image and the rendering are phase-cropped. DataError names
    the file for anything unreadable (:class:`BadFileError` for a file LibRaw cannot open) or of
    the wrong CFA kind."""
    reference, pack, kind = _kind(block_size)
    with open_raw(path) as rp:
        rf = _raw_from_handle(rp, path)
        exposure, iso, cm = shot_metadata(rp)
        rgb = render_srgb16(rp, path, user_flip=0) if render else None
    p = reference.shape[0]
    if rf.cfa.shape != (p, p):
        other = "XTransPairDataset" if block_size == 2 else "RawPairDataset"
        raise DataError(f"{path}: a {rf.cfa.shape[0]}x{rf.cfa.shape[1]} colour filter ('{rf.pattern[:8]}'); "
                        f"this data.type reads {kind} files (use data.type: {other} and a model with "
                        f"in_channel {9 if block_size == 2 else 4}, block_size {3 if block_size == 2 else 2})")
    try:
        crop = phase_crop(rf.cfa, reference)
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from None
    if not np.isfinite(rf.white) or rf.white <= float(rf.black.max()):
        raise DataError(f"{path}: white level {rf.white} is not above the black level {float(rf.black.max())}")
    h, w = rf.mosaic.shape
    if h - crop[0] < 2 * p or w - crop[1] < 2 * p:
        raise DataError(f"{path}: image of {h}x{w} is too small")
    camera = json.dumps({"matrix": np.round(cm, 4).tolist(), "white": rf.white})
    meta = FileMeta(shape=(h, w), pattern=rf.pattern, crop=crop, black=_packed_black(rf.black, crop, pack),
                    white=rf.white, wb=[float(v) for v in rf.wb],
                    exposure=exposure if math.isfinite(exposure) and exposure > 0 else 0.0,
                    iso=iso if math.isfinite(iso) and iso > 0 else 0.0, camera=camera)
    packed = None
    if pixels:
        packed = np.ascontiguousarray(pack(rf.mosaic[crop[0]:, crop[1]:]), dtype=np.uint16)
    if rgb is not None:
        shape = packed.shape if packed is not None else packed_size((h - crop[0], w - crop[1]), block_size)
        rgb = rendering_chw(np.asarray(rgb)[crop[0]:, crop[1]:], shape, block_size)
    return meta, packed, rgb


def packed_size(hw: Sequence[int], block_size: int) -> Tuple[int, int]:
    h, w = hw
    if block_size == 2:
        return h // 2, w // 2
    return h // 6 * 2, w // 6 * 2


# ---------------------------------------------------------------------------------------------
# Lists, ratios and pair checks
# ---------------------------------------------------------------------------------------------

def parse_pair_list(path: str, clean_files: bool = False) -> List[RawPairEntry]:
    """``short long [ratio]`` lines -> entries; DataError with ``file:line`` for a bad line.
    ``clean_files``: a line of one file is a clean frame (an entry whose short and long file are
    that file, ratio 1), as ``CleanFrameDataset`` lists them, so that its caches get prepared."""
    entries = []
    for number, text in _read_lines(path):
        where = f"{path}:{number}"
        tokens = text.split()
        if clean_files and len(tokens) == 1:
            entries.append(RawPairEntry(tokens[0], tokens[0], source=where, fixed_ratio=1.0, max_ratio=None,
                                        clean=True))
            continue
        if len(tokens) not in (2, 3):
            raise DataError(f"{where}: expected '<short RAW> <long RAW> [ratio]', got {text!r}")
        ratio = None
        if len(tokens) == 3:
            try:
                ratio = float(tokens[2])
            except ValueError:
                raise DataError(f"{where}: the third column must be the exposure ratio (a number), "
                                f"got {tokens[2]!r}") from None
            if not (math.isfinite(ratio) and ratio > 0):
                raise DataError(f"{where}: ratio {tokens[2]} must be a positive number")
        entries.append(RawPairEntry(tokens[0], tokens[1], source=where, fixed_ratio=ratio, max_ratio=None))
    return entries


def metadata_ratio(short: FileMeta, long: FileMeta, mode: str = "exposure",
                   max_ratio: Optional[float] = DEFAULT_MAX_RATIO, names: Tuple[str, str] = ("short", "long")) -> float:
    """The exposure ratio of a pair from its metadata; DataError when unknown.

    ``long exposure time / short exposure time`` (rawpy ``other.shutter_speed``), times
    ``long ISO / short ISO`` with ``mode="exposure_iso"``, capped at ``max_ratio`` (None: no cap).
    """
    if mode not in RATIO_MODES:
        raise DataError(f"data.ratio_mode: {mode!r} is not one of {list(RATIO_MODES)}")
    for meta, name in ((short, names[0]), (long, names[1])):
        if not meta.exposure > 0:
            raise DataError(f"{name}: no exposure time in the file's metadata; write the ratio as the "
                            f"third column of the list line")
    ratio = long.exposure / short.exposure
    if mode == "exposure_iso":
        for meta, name in ((short, names[0]), (long, names[1])):
            if not meta.iso > 0:
                raise DataError(f"{name}: no ISO in the file's metadata (data.ratio_mode: exposure_iso); "
                                f"use ratio_mode: exposure or write the ratio in the list")
        ratio *= long.iso / short.iso
    ratio = float(f"{ratio:.6g}")   # exposure times are stored as float32: 0.1 s reads 0.10000000149
    return ratio if max_ratio is None else min(ratio, float(max_ratio))


def capped_ratio_note(ratios: Sequence[float], pairs: int, max_ratio: Optional[float]) -> Optional[str]:
    """The warning for metadata ratios above ``data.max_ratio`` (None when there are none):
    ``ratios`` are those ratios before the cap, ``pairs`` the number of pairs looked at. A capped
    pair's input is amplified less than its exposures say: darker than the target, silently."""
    above = [r for r in ratios if max_ratio is not None and r > max_ratio]
    if not above:
        return None
    return (f"{len(above)} of {pairs} pairs have an exposure ratio above data.max_ratio={max_ratio:g} "
            f"(largest {max(above):g}): their input is amplified by {max_ratio:g} only")


def check_pair(short: FileMeta, long: FileMeta, names: Tuple[str, str]) -> None:
    """DataError naming both files when the two captures cannot be a pair."""
    a, b = names
    if tuple(short.shape) != tuple(long.shape):
        raise DataError(f"{a} ({short.shape[0]}x{short.shape[1]}) and {b} ({long.shape[0]}x{long.shape[1]}): "
                        f"the two files of a pair must have the same size")
    if short.pattern != long.pattern:
        raise DataError(f"{a} (CFA {short.pattern[:8]}) and {b} (CFA {long.pattern[:8]}): the two files of a "
                        f"pair must have the same colour filter layout")
    if short.camera != long.camera:
        raise DataError(f"{a} and {b}: different cameras (colour matrix or white level differ); a pair must "
                        f"come from one camera")


# ---------------------------------------------------------------------------------------------
# Caches (the prepare step)
# ---------------------------------------------------------------------------------------------

def load_meta_table(data_path: str) -> Dict[str, Any]:
    path = os.path.join(data_path, META_FILE)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, "r", encoding="utf-8") as fh:
            table = json.load(fh)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not readable JSON ({exc}); delete it and run scripts/prepare_pairs.py "
                        f"again") from None
    if not isinstance(table, dict) or table.get("version") != META_VERSION or \
            not isinstance(table.get("files"), dict):
        raise DataError(f"{path}: not a metadata file of this version; delete it and run "
                        f"scripts/prepare_pairs.py again")
    return table


def _prepare_job(args):
    """Worker: ``(rel, metadata as JSON or None, error, unreadable?)``, or a :class:`CacheDiskFull`."""
    data_path, rel, block_size, is_long = args
    try:
        pack_dst = cache_path(data_path, rel, "pack")
        rgb_dst = cache_path(data_path, rel, "post_int")
        meta, packed, rgb = read_pair_file(resolve(data_path, rel), block_size, render=is_long)
        save_npy(pack_dst, packed)
        if is_long:
            save_npy(rgb_dst, rgb)
        return rel, meta.to_json(), "", False
    except DiskFullError as exc:
        return CacheDiskFull(rel, str(exc))
    except DataError as exc:
        return rel, None, str(exc), isinstance(exc, BadFileError)
    except Exception as exc:  # reported in the summary, the other files go on
        return rel, None, f"{rel}: {type(exc).__name__}: {exc}", False


SENSOR_NAMES = {2: "Bayer", 3: "X-Trans"}


def detect_block_size(data_path: str, rels: Sequence[str]) -> Optional[int]:
    """The block size of the first readable file among ``rels``: 2 for a 2x2 (Bayer) colour
    filter, 3 for a 6x6 (X-Trans) one; None when no file can be read (each is reported later)."""
    for rel in rels:
        try:
            with open_raw(resolve(data_path, rel)) as rp:
                pattern = rp.raw_pattern
        except Exception:  # noqa: BLE001 - unreadable (DataError) or not described by LibRaw: the prepare step names it
            continue
        if pattern is not None:
            return 3 if np.asarray(pattern).shape[0] == 6 else 2
    return None


def prepare_pairs(data_path: str, list_files: Sequence[str], block_size: Optional[int] = None, workers: int = 0,
                  log: Callable[[str], None] = print, progress: bool = True, ratio_mode: str = "exposure",
                  max_ratio: Optional[float] = DEFAULT_MAX_RATIO) -> Dict[str, Any]:
    """Write the caches and ``raw_pairs.json`` for every file named by ``list_files``.

    Caches, in the SID format: ``<folder>_pack/<file name>.npy`` (packed uint16 RAW after the phase
    crop, black not subtracted) for every file and ``<folder>_post_int/<file name>.npy`` (uint16
    (3, H, W) rendering) for every long file, ``<folder>`` being the file's folder in the list
    (:func:`cans.data.prepare.cache_path`). ``<data_path>/raw_pairs.json`` holds each file's
    metadata (black per packed channel, white, CFA, white balance, exposure, ISO, camera, phase crop),
    so normalisation happens at load time, and under ``failed`` each unreadable file with why (the
    loader then raises :class:`cans.data.base.BadFileError` for it, not "not prepared").

    ``block_size``: 2 (Bayer, ``RawPairDataset``) or 3 (X-Trans, ``XTransPairDataset``); None
    (default): the one of an existing ``raw_pairs.json``, else the colour filter of the first
    readable file (a file of the other kind then fails, naming it). Files already cached (cache
    present and listed in the JSON) are skipped. Pairs are checked (sizes, CFA, camera) and their
    metadata ratio computed where the list gives none (``ratio_mode``, as ``data.ratio_mode``), so a
    bad pair fails here, before training; metadata ratios above ``max_ratio`` (``data.max_ratio``)
    are reported, with each pair's ratio (the loader caps them). Returns ``{"files", "written",
    "skipped", "failed": {rel: msg}, "bad_pairs": [msg], "capped": [(list line, ratio)],
    "block_size"}``.
    """
    from tqdm import tqdm

    if ratio_mode not in RATIO_MODES:
        raise DataError(f"prepare_pairs: ratio_mode {ratio_mode!r} is not one of {list(RATIO_MODES)}")
    if not os.path.isdir(data_path):
        raise DataError(f"data path not found: {data_path}")
    if block_size not in (None, 2, 3):
        raise DataError(f"prepare_pairs: block_size must be 2 (Bayer), 3 (X-Trans) or None (detect), "
                        f"got {block_size!r}")
    lists = []
    for lf in list_files:
        path = lf if os.path.isabs(lf) else os.path.join(data_path, lf)
        lists.append(parse_pair_list(path, clean_files=True))
    longs = {e.lbl_file for es in lists for e in es}
    table = load_meta_table(data_path)
    if table and not table.get("files"):
        table = {}          # left by a run where every file failed: it holds nothing to keep
    if block_size is None:
        block_size = table.get("block_size") if table else None
        if block_size is None:
            block_size = detect_block_size(data_path, sorted(longs)) or 2
    table = table or {"version": META_VERSION, "block_size": block_size, "files": {}}
    if table.get("block_size") != block_size:
        made = SENSOR_NAMES.get(table.get("block_size"), f"block size {table.get('block_size')}")
        raise DataError(f"{os.path.join(data_path, META_FILE)} was written for {made} files, not "
                        f"{SENSOR_NAMES[block_size]} ones; prepare with the sensor it was written for "
                        f"(scripts/prepare_pairs.py --sensor auto), or delete it to prepare again")
    shorts = {e.img_file for es in lists for e in es} - longs
    jobs = []
    skipped = 0
    for rel in sorted(longs) + sorted(shorts):
        is_long = rel in longs
        done = rel in table["files"] and os.path.isfile(cache_path(data_path, rel, "pack")) and \
            (not is_long or os.path.isfile(cache_path(data_path, rel, "post_int")))
        if done:
            skipped += 1
        else:
            jobs.append((data_path, rel, block_size, is_long))
    check_cache_space(data_path, [(rel, is_long) for _, rel, _, is_long in jobs], skipped)
    failed: Dict[str, str] = {}
    full, results = None, []
    caches = {os.path.dirname(cache_path(data_path, rel, k)) for _, rel, _, _ in jobs for k in ("pack", "post_int")}
    bar = tqdm(total=len(jobs), desc="prepare pairs", unit="file", disable=not progress or not jobs)
    try:
        with contextlib.closing(run_jobs(_prepare_job, jobs, workers, sorted(caches))) as done:
            for res in done:
                if isinstance(res, CacheDiskFull):
                    full = res
                    break
                results.append(res)
                bar.update(1)
    finally:
        bar.close()
    unreadable = set()
    for rel, meta, message, bad_file in results:
        if meta is None:
            failed[rel] = message
            if bad_file:
                unreadable.add(rel)
        else:
            table["files"][rel] = meta
    # the files that failed and why, so that the loader says so instead of "not prepared"
    # (kept until a later run reads them)
    table["failed"] = {rel: rec for rel, rec in {**(table.get("failed") or {}), **{
        rel: {"error": msg, "unreadable": rel in unreadable} for rel, msg in failed.items()}}.items()
        if rel not in table["files"]}
    if not table["failed"]:
        del table["failed"]
    try:
        atomic_write_text(os.path.join(data_path, META_FILE), json.dumps(table, indent=1, sort_keys=True))
    except DiskFullError:
        if full is None:
            raise   # else: the line below says it (the rerun prepares this run's files again)
    if full is not None:
        finished = {res[0] for res in results}
        left = [(rel, is_long) for _, rel, _, is_long in jobs if rel not in finished]
        raise disk_full_error(data_path, full, left, len(table["files"]))
    bad_pairs, capped, good = [], [], 0
    for entries in lists:
        for e in entries:
            if e.img_file in failed or e.lbl_file in failed:
                continue
            s, l_ = FileMeta.from_json(table["files"][e.img_file]), FileMeta.from_json(table["files"][e.lbl_file])
            try:
                check_pair(s, l_, (e.img_file, e.lbl_file))
                if e.fixed_ratio is None:
                    ratio = metadata_ratio(s, l_, ratio_mode, None, (e.img_file, e.lbl_file))
                    if max_ratio is not None and ratio > max_ratio:
                        capped.append((e.source, ratio))
                good += 1
            except DataError as exc:
                bad_pairs.append(f"{e.source}: {exc}")
    kind = "XTransPairDataset" if block_size == 3 else "RawPairDataset"
    log(f"prepare pairs in {data_path} ({SENSOR_NAMES[block_size]}, {kind}): "
        f"{len(jobs) + skipped} RAW files, {len(jobs) - len(failed)} cached, "
        f"{skipped} already cached, {len(failed)} failed")
    for rel, msg in sorted(failed.items())[:20]:
        log(f"  FAILED {msg if rel in msg else rel + ': ' + msg}")
    if unreadable:
        log(f"  ({len(unreadable)} unreadable: replace them, or train with data.skip_bad_files: true to leave "
            f"their pairs out)")
    if any("colour filter" in msg and "this data.type reads" in msg for msg in failed.values()):
        log(f"  (these files were prepared as {SENSOR_NAMES[block_size]}: Bayer and X-Trans files need folders "
            f"of their own, each with its own raw_pairs.json; scripts/prepare_pairs.py --sensor picks the kind)")
    for msg in bad_pairs[:20]:
        log(f"  BAD PAIR {msg}")
    note = capped_ratio_note([r for _, r in capped], good, max_ratio)
    if note:
        log(f"  warning: {note} (data.ratio_mode: {ratio_mode}; write the ratio in the list, or raise "
            f"data.max_ratio, to amplify them fully)")
        for where, ratio in capped[:20]:
            log(f"  RATIO ABOVE {max_ratio:g} {where}: {ratio:g}")
        if len(capped) > 20:
            log(f"  ... and {len(capped) - 20} more")
    return {"files": len(jobs) + skipped, "written": len(jobs) - len(failed), "skipped": skipped,
            "failed": failed, "bad_pairs": bad_pairs, "capped": capped, "block_size": block_size}


# ---------------------------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------------------------

@DATASETS.register
class RawPairDataset(PairDataset):
    """Pairs of Bayer RAW files from any camera (module docstring); packed to 4 channels.

    The phase crop drops the first ``cy`` rows and ``cx`` columns (0 or 1; X-Trans 0..5) of both
    images and of the RGB target. ``noisy_raw = min((float32(raw) - black) / (white - black) * ratio,
    max_clip)`` with black per packed channel (values below black stay negative); ``clean_raw`` is
    the long file normalised the same way times its own as-shot white balance; ``clean_rgb`` is
    LibRaw's 16-bit rendering of the long file in [0, 1], exactly as for SID.
    """
    packed_channels, block_size = 4, 2
    camera = "own camera"
    own_camera = True
    synthetic = "bayer"
    base_config = "configs/finetune_own_camera.yaml"

    def __init__(self, data_path: str, image_list_file: Optional[str], split: str = "train", *,
                 ratio_mode: str = "exposure", max_ratio: Optional[float] = DEFAULT_MAX_RATIO, **kwargs):
        if ratio_mode not in RATIO_MODES:
            raise DataError(f"data.ratio_mode: {ratio_mode!r} is not one of {list(RATIO_MODES)}")
        if max_ratio is not None and not max_ratio >= 1:
            raise DataError(f"data.max_ratio: expected a number >= 1 or null, got {max_ratio}")
        self.ratio_mode, self.max_ratio = ratio_mode, max_ratio
        self._meta: Dict[str, FileMeta] = {}
        self._levels_of: Dict[str, Tuple[np.ndarray, float]] = {}
        self._table: Optional[Dict[str, Any]] = None
        super().__init__(data_path, image_list_file, split, **kwargs)
        #: (list line, metadata ratio before the cap) of the pairs whose ratio data.max_ratio capped
        self.capped_ratios: List[Tuple[str, float]] = [
            (e.source, e.uncapped_ratio) for e in self.entries
            if e.fixed_ratio is None and e.uncapped_ratio is not None and e.uncapped_ratio > e.meta_ratio]
        note = capped_ratio_note([r for _, r in self.capped_ratios], len(self.entries), max_ratio)
        if note:
            self.log(f"[data] {self.key}: warning: {note}")

    @staticmethod
    def data_options(data: Mapping[str, Any]) -> Dict[str, Any]:
        """The ``data.*`` keys this dataset takes besides the split options."""
        return {"ratio_mode": data["ratio_mode"],
                "max_ratio": data["max_ratio"]}

    def prepare_hint(self) -> str:
        return (f"write the list file(s) and, with data.load_npy: true, cache the files with `python "
                f"scripts/prepare_pairs.py --data-path {self.data_path} --lists LIST...` (see docs/own_camera.md)")

    def _entries(self) -> List[PairEntry]:
        return parse_pair_list(self.list_file)

    def _file_meta(self, rel: str) -> FileMeta:
        meta = self._meta.get(rel)
        if meta is not None:
            return meta
        if self.load_npy:
            if self._table is None:
                self._table = load_meta_table(self.data_path)
                if self._table and self._table.get("block_size") != self.block_size:
                    raise DataError(f"{os.path.join(self.data_path, META_FILE)}: prepared for block size "
                                    f"{self._table.get('block_size')}, data.type {type(self).__name__} needs "
                                    f"{self.block_size}; prepare again")
            d = (self._table.get("files") or {}).get(rel)
            failed = (self._table.get("failed") or {}).get(rel)
            if d is None and isinstance(failed, dict) and failed.get("error"):
                # prepare_pairs failed on it: say why (running it again fails the same way)
                error = str(failed["error"])
                raise (BadFileError if failed.get("unreadable") else DataError)(
                    error if rel in error else f"{rel}: {error}")
            if d is None:
                raise DataError(f"{rel}: not in {os.path.join(self.data_path, META_FILE)} (not prepared); run "
                                f"`python scripts/prepare_pairs.py --data-path {self.data_path} --lists "
                                f"{os.path.relpath(self.list_file, self.data_path)}`")
            for kind in ("pack",):
                path = cache_path(self.data_path, rel, kind)
                if not os.path.isfile(path):
                    raise DataError(f"cache file not found: {path}; run scripts/prepare_pairs.py again")
            meta = FileMeta.from_json(d)
        else:
            path = resolve(self.data_path, rel)
            if not os.path.isfile(path):
                raise DataError(f"RAW file not found: {path}")
            meta = read_pair_file(path, self.block_size, pixels=False)[0]
        self._meta[rel] = meta
        return meta

    def _check_entry(self, entry: PairEntry) -> None:
        short, long = self._file_meta(entry.img_file), self._file_meta(entry.lbl_file)
        names = (resolve(self.data_path, entry.img_file), resolve(self.data_path, entry.lbl_file))
        check_pair(short, long, names)
        if self.load_npy and not os.path.isfile(cache_path(self.data_path, entry.lbl_file, "post_int")):
            raise DataError(f"cache file not found: {cache_path(self.data_path, entry.lbl_file, 'post_int')}; "
                            f"run scripts/prepare_pairs.py again")
        if entry.fixed_ratio is None:
            entry.uncapped_ratio = metadata_ratio(short, long, self.ratio_mode, None, names)
            entry.meta_ratio = metadata_ratio(short, long, self.ratio_mode, self.max_ratio, names)
        entry.input_exposure, entry.gt_exposure = short.exposure, long.exposure

    def _file_levels(self, rel: str) -> Tuple[np.ndarray, float]:
        """(black per packed channel (C, 1, 1) float32 after the phase crop, read-only; white) of one
        file, built on first use and kept (each DataLoader worker keeps its own copy)."""
        levels = self._levels_of.get(rel)
        if levels is None:
            meta = self._file_meta(rel)
            black = np.asarray(meta.black, dtype=np.float32).reshape(-1, 1, 1)
            black.flags.writeable = False
            levels = self._levels_of[rel] = (black, meta.white)
        return levels

    def _levels(self, entry: PairEntry):
        """Each file's own levels (:meth:`_file_levels`) for the short and the long file."""
        return self._file_levels(entry.img_file), self._file_levels(entry.lbl_file)

    def _raw_arrays(self, entry: PairEntry):
        """(short packed uint16, long packed uint16, rendering uint16 (3, H, W)) as stored."""
        if self.load_npy:
            return (self._open_cached(cache_path(self.data_path, entry.img_file, "pack")),
                    self._open_cached(cache_path(self.data_path, entry.lbl_file, "pack")),
                    self._open_cached(cache_path(self.data_path, entry.lbl_file, "post_int")))
        _, noisy, _ = read_pair_file(resolve(self.data_path, entry.img_file), self.block_size)
        _, clean, rgb = read_pair_file(resolve(self.data_path, entry.lbl_file), self.block_size, render=True)
        return noisy, clean, rgb

    def _arrays(self, entry: PairEntry):
        noisy, clean, rgb = self._raw_arrays(entry)
        if noisy.ndim != 3 or rgb.ndim != 3 or rgb.shape[0] != 3:
            raise DataError(f"{entry.source}: cache shapes {noisy.shape} / {rgb.shape} are not packed (C, h, w) "
                            f"and (3, H, W); prepare again")
        return noisy, clean, rgb

    def _wb(self, entry: PairEntry) -> Optional[np.ndarray]:
        return wb_vector(self._file_meta(entry.lbl_file).wb, self.block_size)


@DATASETS.register
class XTransPairDataset(RawPairDataset):
    """Pairs of X-Trans RAW files (Fuji) from any camera; packed to 9 channels (block 3)."""
    packed_channels, block_size = 9, 3
    camera = "own X-Trans camera"
    synthetic = "xtrans"
    base_config = "configs/base/Fuji.yaml"


__all__ = ["RawPairDataset", "XTransPairDataset", "FileMeta", "RawPairEntry", "parse_pair_list", "metadata_ratio",
           "capped_ratio_note",
           "check_pair", "read_pair_file", "prepare_pairs", "detect_block_size", "phase_crop", "META_FILE"]
