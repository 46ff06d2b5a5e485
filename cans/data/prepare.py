"""SID preparation: caches in the authors' format, white balance and list files (``scripts/prepare_sid.py``).

For every pair of the official lists (``<camera>_*_list.txt``) :func:`prepare_sid` writes, under
``data_path``, the same files as the authors' own preprocessing, so caches made by either work with
either: packed uint16 RAW (black not subtracted) in ``<camera>/short_pack/`` and ``long_pack/``,
LibRaw's 16-bit rendering in ``long_post_int/``, ``<camera>_wb.json`` and the lists with the white
balance appended (file layout: docs/data.md, "Caches"). A cache is exactly the sensor data:
normalisation happens when a sample is loaded. Files go to a temporary name and are renamed, and
existing files are skipped, so an interrupted run resumes. A disk too small for the caches to
write is one :class:`DiskFullError` line, before the work when the free space is short already,
else when it fills: the run stops, the caches written are complete, a rerun goes on.
"""
from __future__ import annotations

import contextlib
import glob
import json
import multiprocessing as mp
import os
import shutil
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import DiskFullError
from ..io.files import atomic_write_text, atomic_writer, check_free_space, remove_orphaned_temps
from ..io.raw import RawFile, open_raw, read_raw, read_raw_and_render
from ..machine import usable_cpus
from .cameras import CameraSpec, camera_spec
from .errors import DataError
from .lists import MISALIGNED_SONY_SCENES, drop_scenes, format_sid_line, parse_sid_list

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
    """``np.save``, whole or not at all (``cans.io.files``). A full disk is a :class:`DiskFullError`
    naming the folder: ENOSPC (``cans.io.files``), or numpy's short write ("N requested and M
    written", an OSError without an errno, which is how ``np.save`` reports a full disk)."""
    try:
        with atomic_writer(path, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array))
    except OSError as exc:
        if exc.errno is None and "requested and" in str(exc):
            raise DiskFullError(f"no space left in {os.path.dirname(os.path.abspath(path))} while writing "
                                f"{os.path.basename(path)} ({exc})") from None
        raise


@dataclass
class CacheDiskFull:
    """What a preparation job returns when the disk is full (the caller stops): the RAW file
    (as listed) and the :class:`DiskFullError` line."""
    rel: str
    message: str


def cache_bytes(path: str, long: bool) -> Optional[int]:
    """About the bytes of the caches of one RAW file, from the image size in its header: the packed
    mosaic 2 bytes a pixel, a long exposure's rendering 6 more; None when the header is unreadable
    (the preparation names the file)."""
    try:
        with open_raw(path) as rp:
            pixels = int(rp.sizes.height) * int(rp.sizes.width)
    except Exception:  # noqa: BLE001 - unreadable: reported by the job that reads it
        return None
    return pixels * (8 if long else 2)


def needed_bytes(data_path: str, files: Sequence[Tuple[str, bool]]) -> int:
    """About the bytes the caches of ``files`` ((list entry, long exposure?) pairs) take: the
    :func:`cache_bytes` of the first readable file of each kind times their number (a camera's
    frames have one size; reading every header would cost a seek a file on a cold disk)."""
    total = 0
    for long in (False, True):
        kind = [rel for rel, is_long in files if is_long == long]
        each = next((b for b in (cache_bytes(resolve(data_path, rel), long) for rel in kind) if b), 0)
        total += each * len(kind)
    return total


def check_cache_space(data_path: str, files: Sequence[Tuple[str, bool]], cached: int) -> None:
    """:class:`DiskFullError` before any work when the disk of the caches of ``files`` has not the
    room for them (:func:`needed_bytes`); ``cached``: files cached already (kept)."""
    if not files:
        return
    folder = os.path.dirname(os.path.dirname(cache_path(data_path, files[0][0], "pack")))
    try:
        check_free_space(folder, needed_bytes(data_path, files), f"the caches of {len(files)} RAW file(s)")
    except DiskFullError as exc:
        raise DiskFullError(f"{exc} (disk full); free space, or prepare in a folder on another disk"
                            + (f"; the {cached} file(s) cached already are kept, a rerun skips them" if cached else "")
                            ) from None


def disk_full_error(data_path: str, full: CacheDiskFull, left: Sequence[Tuple[str, bool]],
                    cached: int) -> DiskFullError:
    """The one line for a disk that filled during the preparation: where, how much the ``left``
    files ((list entry, long exposure?), the full one included) still need, and that the ``cached``
    files are complete and a rerun goes on."""
    folder = os.path.dirname(cache_path(data_path, full.rel, "pack"))
    try:
        free = f", {_size(shutil.disk_usage(folder).free)} free"
    except OSError:
        free = ""
    return DiskFullError(f"{full.message} (disk full): {len(left)} RAW file(s) are not cached yet and need about "
                         f"{_size(needed_bytes(data_path, left))} more{free}; the {cached} file(s) cached are "
                         f"complete and valid: free space and run the preparation again, it goes on where it "
                         f"stopped")


def _size(n: int) -> str:
    return f"{n / 2 ** 30:,.1f} GiB" if n >= 2 ** 30 else f"{n / 2 ** 20:,.1f} MiB"


def run_jobs(fn: Callable[[Any], Any], jobs: Sequence[Any], workers: int, folders: Iterable[str] = ()) -> Iterator:
    """``fn(job)`` of every job, in order in this process (``workers`` 0 or 1), else in any order
    from a pool of ``workers`` spawned processes (LibRaw's OpenMP threads would deadlock a forked
    child). Use under ``contextlib.closing``: leaving early terminates the pool and removes the
    temporary files its killed workers left in ``folders`` (their targets are untouched)."""
    if workers <= 1 or len(jobs) <= 1:
        yield from map(fn, jobs)
        return
    finished = False
    pool = mp.get_context("spawn").Pool(workers)
    try:
        yield from pool.imap_unordered(fn, jobs, chunksize=1)
        finished = True
    finally:
        pool.terminate()
        pool.join()
        if not finished:
            for folder in folders:
                remove_orphaned_temps(folder)


def _cached(job) -> bool:
    """Whether a :func:`_job`'s caches exist (and, for a long exposure, its white balance is known)."""
    kind, rel, data_path, _, need_wb = job
    if kind == "short":
        return os.path.isfile(cache_path(data_path, rel, "pack"))
    return not need_wb and all(os.path.isfile(cache_path(data_path, rel, k)) for k in ("pack", "post_int"))


def _job(args):
    """Worker: ``(kind, rel, status, wb, message)`` with status 'done' or 'failed', or a
    :class:`CacheDiskFull`."""
    kind, rel, data_path, camera, need_wb = args
    spec = camera_spec(camera)
    src = resolve(data_path, rel)
    try:
        if kind == "short":
            save_npy(cache_path(data_path, rel, "pack"), pack_raw(read_raw(src), spec))
            return kind, rel, "done", None, ""
        rf, rgb = read_raw_and_render(src)
        packed = pack_raw(rf, spec)
        save_npy(cache_path(data_path, rel, "pack"), packed)
        save_npy(cache_path(data_path, rel, "post_int"), rendering_chw(rgb, packed.shape, spec.block_size))
        return kind, rel, "done", [float(v) for v in rf.wb], ""
    except DiskFullError as exc:
        return CacheDiskFull(rel, str(exc))
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
        workers = usable_cpus()
    todo = [job for job in jobs if not _cached(job)]
    counts = {"done": 0, "skipped": len(jobs) - len(todo), "failed": 0}
    check_cache_space(data_path, [(rel, kind == "long") for kind, rel, *_ in todo], counts["skipped"])
    failed: Dict[str, str] = {}
    finished, full = set(), None
    caches = {os.path.dirname(cache_path(data_path, rel, k)) for _, rel, *_ in todo for k in ("pack", "post_int")}
    bar = tqdm(total=len(todo), desc=f"prepare {camera}", unit="file", disable=not progress)
    try:
        with contextlib.closing(run_jobs(_job, todo, workers, sorted(caches))) as results:
            for res in results:
                if isinstance(res, CacheDiskFull):
                    full = res
                    break
                _collect(res, counts, failed, wb_table)
                finished.add((res[0], res[1]))
                bar.update(1)
    finally:
        bar.close()
        try:
            _write_text(wb_path, json.dumps(wb_table, indent=1, sort_keys=True) + "\n")
        except DiskFullError:
            if full is None:
                raise   # else: the disk-full line below says it all (the rerun reads those white balances again)
    if full is not None:
        left = [(rel, kind == "long") for kind, rel, *_ in todo if (kind, rel) not in finished]
        raise disk_full_error(data_path, full, left, counts["done"] + counts["skipped"])

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
