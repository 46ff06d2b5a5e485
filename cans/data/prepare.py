"""SID preparation: caches in the authors' format, white balance and list files (``scripts/prepare_sid.py``).

For every pair of the official lists (``<camera>_*_list.txt``) :func:`prepare_sid` writes, under
``data_path``, the same files as the authors' own preprocessing, so caches made by either work with
either: packed uint16 RAW (black not subtracted) in ``<camera>/short_pack/`` and ``long_pack/``,
LibRaw's 16-bit rendering in ``long_post_int/``, ``<camera>_wb.json`` and the lists with the white
balance appended (file layout: docs/data.md, "Caches"). A cache is exactly the sensor data:
normalisation happens when a sample is loaded. Files go to a temporary name and are renamed, and
existing files are skipped, so an interrupted run resumes.
"""
from __future__ import annotations

import glob
import json
import multiprocessing as mp
import os
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..files import atomic_write_text, atomic_writer
from .cameras import CameraSpec, camera_spec
from .errors import DataError
from .lists import MISALIGNED_SONY_SCENES, drop_scenes, format_sid_line, parse_sid_list
from .raw_io import RawFile, read_raw, read_raw_and_render

#: failures printed one per line in the summary (all of them are in the returned dict)
MAX_LISTED_FAILURES = 20
REPO_LISTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "datasets", "lists")


def cache_path(data_path: str, rel: str, kind: str) -> str:
    """Cache file of list entry ``rel`` (``./Sony/short/x.ARW``): kind 'pack' or 'post_int'.

    ``./Sony/short/x.ARW`` -> ``<data_path>/Sony/short_pack/x.ARW.npy``;
    ``./Sony/long/y.ARW`` -> ``<data_path>/Sony/long_pack/y.ARW.npy`` or ``.../long_post_int/y.ARW.npy``.
    """
    folder, name = os.path.split(os.path.normpath(rel))
    return os.path.join(data_path, f"{folder}_{kind}", name + ".npy")


def legacy_cache_path(data_path: str, rel: str, kind: str) -> str:
    """Where this project's earlier float32 caches were (``x.npy``: the extension dropped)."""
    folder, name = os.path.split(os.path.normpath(rel))
    return os.path.join(data_path, f"{folder}_{kind}", os.path.splitext(name)[0] + ".npy")


def resolve(data_path: str, rel: str) -> str:
    return rel if os.path.isabs(rel) else os.path.normpath(os.path.join(data_path, rel))


def check_cfa(rf: RawFile, spec: CameraSpec) -> None:
    period = 6 if spec.block_size == 3 else 2
    if rf.cfa.shape != (period, period):
        raise DataError(f"{rf.path}: a {rf.cfa.shape[0]}x{rf.cfa.shape[1]} colour filter ('{rf.pattern}'); the "
                        f"{spec.name} loader expects a {'6x6 X-Trans' if period == 6 else '2x2 Bayer'} mosaic")
    if spec.cfa is not None and rf.pattern != spec.cfa:
        raise DataError(f"{rf.path}: CFA pattern {rf.pattern}, the {spec.name} loader expects {spec.cfa}")


def pack_raw(rf: RawFile, spec: CameraSpec) -> np.ndarray:
    """The packed mosaic of a RAW file as stored: uint16 (C, H/b, W/b), black not subtracted."""
    check_cfa(rf, spec)
    return np.ascontiguousarray(spec.pack(rf.mosaic), dtype=np.uint16)


def rendering_chw(rgb_hwc: np.ndarray, packed_shape, block_size: int) -> np.ndarray:
    """LibRaw's (H, W, 3) rendering -> uint16 (3, h*b, w*b), cut to the packed image's size."""
    h, w = packed_shape[-2] * block_size, packed_shape[-1] * block_size
    return np.ascontiguousarray(np.asarray(rgb_hwc)[:h, :w].transpose(2, 0, 1), dtype=np.uint16)


def save_npy(path: str, array: np.ndarray) -> None:
    """``np.save``, whole or not at all (``cans.files``)."""
    with atomic_writer(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array))


def _job(args) -> Tuple[str, str, str, Optional[List[float]], str]:
    """Worker: (kind, rel, status, wb, message). status: 'done', 'skipped' or 'failed'."""
    kind, rel, data_path, camera, need_wb = args
    spec = camera_spec(camera)
    src = resolve(data_path, rel)
    try:
        if kind == "short":
            dst = cache_path(data_path, rel, "pack")
            if os.path.isfile(dst):
                return kind, rel, "skipped", None, ""
            save_npy(dst, pack_raw(read_raw(src), spec))
            return kind, rel, "done", None, ""
        pack_dst = cache_path(data_path, rel, "pack")
        rgb_dst = cache_path(data_path, rel, "post_int")
        if os.path.isfile(pack_dst) and os.path.isfile(rgb_dst) and not need_wb:
            return kind, rel, "skipped", None, ""
        rf, rgb = read_raw_and_render(src)
        packed = pack_raw(rf, spec)
        save_npy(pack_dst, packed)
        save_npy(rgb_dst, rendering_chw(rgb, packed.shape, spec.block_size))
        return kind, rel, "done", [float(v) for v in rf.wb], ""
    except DataError as exc:
        return kind, rel, "failed", None, str(exc)
    except Exception as exc:  # keep going; reported in the summary
        return kind, rel, "failed", None, f"{src}: {type(exc).__name__}: {exc}"


def _write_text(path: str, text: str) -> None:
    atomic_write_text(path, text)


def official_lists(lists_dir: str, camera: str) -> List[str]:
    """Every ``<camera>_*_list.txt`` in ``lists_dir`` (official, "new" or a user's own subset)."""
    paths = sorted(glob.glob(os.path.join(lists_dir, f"{camera}_*_list.txt")))
    if not paths:
        raise DataError(f"no {camera}_*_list.txt in {lists_dir}; copy the official SID lists there "
                        f"(datasets/lists/ in this repository has them)")
    return paths


def prepare_sid(data_path: str, camera: str = "Sony", lists_dir: Optional[str] = None,
                workers: Optional[int] = None, log: Callable[[str], None] = print,
                progress: bool = True, display_path: Optional[str] = None) -> Dict[str, object]:
    """Build the caches and list files of a SID folder (module docstring); return a summary dict.

    lists_dir: where the official lists are (default: :func:`default_lists_dir`: the set's own
    lists for a synthetic set, else the repository's ``datasets/lists`` when it exists, else
    ``data_path``). A list whose every pair failed is not written (an existing file is kept).
    workers: processes (default: CPU count; 0 or 1 = in-process).
    display_path: the folder name used in the log (default ``data_path``).
    """
    from tqdm import tqdm

    camera_spec(camera)  # an unknown camera fails here, before any work
    if not os.path.isdir(data_path):
        raise DataError(f"SID folder not found: {data_path} (expected {data_path}/{camera}/short and "
                        f"{data_path}/{camera}/long; see datasets/README.md)")
    if lists_dir is None:
        lists_dir = default_lists_dir(data_path, camera)
    list_paths = official_lists(lists_dir, camera)
    lists = {os.path.basename(p): parse_sid_list(p) for p in list_paths}
    folders = sorted({os.path.dirname(resolve(data_path, e.img_file)) for es in lists.values() for e in es} |
                     {os.path.dirname(resolve(data_path, e.lbl_file)) for es in lists.values() for e in es})
    if folders and not any(os.path.isdir(f) for f in folders):
        raise DataError(f"none of the RAW folders named by the lists in {lists_dir} exists: "
                        f"{', '.join(folders[:4])}{' ...' if len(folders) > 4 else ''} "
                        f"(expected {data_path}/{camera}/short and {data_path}/{camera}/long; wrong --data-path "
                        f"or --lists-dir? see datasets/README.md)")
    wb_path = os.path.join(data_path, f"{camera}_wb.json")
    wb_table: Dict[str, List[float]] = {}
    if os.path.isfile(wb_path):
        try:
            with open(wb_path, "r", encoding="utf-8") as fh:
                wb_table = json.load(fh)
        except (OSError, ValueError):
            wb_table = {}
    shorts = sorted({e.img_file for entries in lists.values() for e in entries})
    longs = sorted({e.lbl_file for entries in lists.values() for e in entries})
    jobs = [("long", rel, data_path, camera, rel not in wb_table) for rel in longs] + \
           [("short", rel, data_path, camera, False) for rel in shorts]
    if workers is None:
        workers = os.cpu_count() or 1
    counts = {"done": 0, "skipped": 0, "failed": 0}
    failed: Dict[str, str] = {}
    bar = tqdm(total=len(jobs), desc=f"prepare {camera}", unit="file", disable=not progress)
    try:
        if workers > 1 and len(jobs) > 1:
            # spawn, not fork: LibRaw's OpenMP threads in this process would deadlock a forked child
            with mp.get_context("spawn").Pool(workers) as pool:
                results = pool.imap_unordered(_job, jobs, chunksize=1)
                for res in results:
                    _collect(res, counts, failed, wb_table)
                    bar.update(1)
        else:
            for job in jobs:
                _collect(_job(job), counts, failed, wb_table)
                bar.update(1)
    finally:
        bar.close()
        _write_text(wb_path, json.dumps(wb_table, indent=1, sort_keys=True) + "\n")

    written, not_written = [], []
    dropped = 0
    for name, entries in lists.items():
        good = [e for e in entries if e.img_file not in failed and e.lbl_file not in failed]
        dropped += len(entries) - len(good)
        if entries and not good:
            # never replace a list with an empty one (e.g. lists of another data set)
            not_written.append(name)
            continue
        text = "\n".join(format_sid_line(e, tuple(wb_table[e.lbl_file])) for e in good) + "\n"
        _write_text(os.path.join(data_path, name), text)
        written.append(name)
        if camera == "Sony" and name == "Sony_test_list.txt" and "Sony_new_test_list.txt" not in lists:
            new = drop_scenes(good, MISALIGNED_SONY_SCENES)
            _write_text(os.path.join(data_path, "Sony_new_test_list.txt"),
                        "\n".join(format_sid_line(e, tuple(wb_table[e.lbl_file])) for e in new) + "\n")
            written.append("Sony_new_test_list.txt")
    summary = {"data_path": data_path, "camera": camera, "files": len(jobs), "written": counts["done"],
               "skipped_existing": counts["skipped"], "failed": failed, "pairs_dropped": dropped,
               "lists": written, "lists_not_written": not_written, "lists_dir": lists_dir}
    shown_lists = (display_path or data_path) if lists_dir == data_path else lists_dir
    log(f"prepare {camera} in {display_path or data_path}: {len(jobs)} RAW files, {counts['done']} cached, "
        f"{counts['skipped']} already cached (skipped), {counts['failed']} failed; "
        f"lists (from {shown_lists}) written: {', '.join(written) or 'none'}")
    for rel, msg in sorted(failed.items())[:MAX_LISTED_FAILURES]:
        log(f"  FAILED {rel}: {msg}")
    if len(failed) > MAX_LISTED_FAILURES:
        log(f"  ... and {len(failed) - MAX_LISTED_FAILURES} more failures (all of them: --summary-json)")
    missing = sum(1 for msg in failed.values() if msg.startswith("RAW file not found"))
    if missing:
        log(f"  {missing} RAW file(s) named by the lists are not in {display_path or data_path}: an incomplete "
            f"download, or a wrong --data-path / --lists-dir?")
    if dropped:
        log(f"  {dropped} list pair(s) left out of the written lists because a file failed")
    if not_written:
        log(f"  NOT written (every pair failed; an existing file is left as it was): {', '.join(not_written)}")
    return summary


def default_lists_dir(data_path: str, camera: str) -> str:
    """Where ``prepare_sid`` finds the lists when none is given: a synthetic set
    (``synthetic_sid.json``) carries its own lists; otherwise the repository's official lists
    (``datasets/lists``) when they exist, else ``data_path``."""
    if os.path.isfile(os.path.join(data_path, "synthetic_sid.json")) and official_lists_exist(data_path, camera):
        return data_path
    return REPO_LISTS if official_lists_exist(REPO_LISTS, camera) else data_path


def official_lists_exist(folder: str, camera: str) -> bool:
    return os.path.isdir(folder) and bool(glob.glob(os.path.join(folder, f"{camera}_*_list.txt")))


def _collect(res, counts, failed, wb_table) -> None:
    kind, rel, status, wb, message = res
    counts[status] += 1
    if status == "failed":
        failed[rel] = message
    elif wb is not None:
        wb_table[rel] = wb
