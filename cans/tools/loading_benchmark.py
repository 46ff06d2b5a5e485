"""Loader throughput: training crops from full-size SID caches, memory-mapped vs read whole.

:func:`run_benchmark` writes ``pairs`` fake cache triples of full Sony size (packed short and
long uint16 (4, 1424, 2128), RGB uint16 (3, 2848, 4256): the sizes ``prepare_sid`` writes) with
a list file into a temporary folder, then times ``SonyDictSet`` training samples (patch 1024)
two ways in one run: the project's memory-mapped caches, and the reference's way (every cache
read whole with ``np.load`` and then cropped). Both run in the main process.

Two page-cache states: *warm* (the files were read before and sit in RAM: the headline numbers)
and *cold* (before every sample the files are dropped from the page cache with
``posix_fadvise(DONTNEED)``, as for a data set larger than RAM such as the full SID, about
160 GB of Sony caches). Cold numbers depend on the disk.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Dict, Optional

import numpy as np
import torch

from ..data.prepare import cache_path, save_npy
from ..data.sid import SonyDictSet

SONY_H, SONY_W = 2848, 4256


class FullReadSonyDictSet(SonyDictSet):
    """The reference's way: each cache file is read whole, then cropped."""

    def _arrays(self, entry):
        short_p, long_p, rgb_p = self._paths(entry)
        return np.load(short_p), np.load(long_p), np.load(rgb_p)


def write_fake_sid(folder: str, pairs: int, height: int = SONY_H, width: int = SONY_W, seed: int = 0) -> str:
    """Fake caches of ``pairs`` pairs and ``Sony_bench_list.txt`` in ``folder``; returns the list name."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(pairs):
        short_rel = f"./Sony/short/{i:05d}_00_0.1s.ARW"
        long_rel = f"./Sony/long/{i:05d}_00_10s.ARW"
        packed = (4, height // 2, width // 2)
        save_npy(cache_path(folder, short_rel, "pack"), rng.integers(400, 700, packed, dtype=np.uint16))
        save_npy(cache_path(folder, long_rel, "pack"), rng.integers(400, 16383, packed, dtype=np.uint16))
        save_npy(cache_path(folder, long_rel, "post_int"),
                 rng.integers(0, 65535, (3, height, width), dtype=np.uint16))
        lines.append(f"{short_rel} {long_rel} ISO100 F8 2.0 1.0 1.5")
    name = "Sony_bench_list.txt"
    with open(os.path.join(folder, name), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return name


def _evict(paths) -> None:
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _time(ds, samples: int, cold: bool = False) -> float:
    torch.manual_seed(0)
    ds[0]  # warm-up
    n = len(ds)
    files = [p for e in ds.entries for p in ds._paths(e)]
    total = 0.0
    for i in range(samples):
        if cold:
            ds._mmaps.clear()
            _evict(files)
        t0 = time.perf_counter()
        s = ds[i % n]
        total += time.perf_counter() - t0
        assert s["noisy_raw"].shape[-1] == ds.patch_size // 2
    return samples / total


def run_benchmark(samples: int = 20, pairs: int = 3, patch_size: int = 1024, folder: Optional[str] = None,
                  keep: bool = False, cold: bool = True, log=print) -> Dict[str, float]:
    """Samples per second both ways; returns the dict that the script prints as JSON."""
    own = folder is None
    folder = folder or tempfile.mkdtemp(prefix="cans_bench_data_")
    try:
        t0 = time.perf_counter()
        list_name = write_fake_sid(folder, pairs)
        log(f"wrote {pairs} full-size cache triples in {time.perf_counter() - t0:.1f} s ({folder})")
        kwargs = dict(split="train", load_npy=True, patch_size=patch_size, log=log)
        mmap_ds = SonyDictSet(folder, list_name, **kwargs)
        full_ds = FullReadSonyDictSet(folder, list_name, **kwargs)
        mmap_rate = _time(mmap_ds, samples)
        full_rate = _time(full_ds, max(3, samples // 4))
        res = {"patch_size": patch_size, "image": f"{SONY_H}x{SONY_W}", "samples": samples,
               "mmap_samples_per_s": round(mmap_rate, 2), "full_read_samples_per_s": round(full_rate, 2),
               "speedup": round(mmap_rate / full_rate, 2)}
        if cold and hasattr(os, "posix_fadvise"):
            n_cold = max(3, samples // 4)
            mmap_cold = _time(mmap_ds, n_cold, cold=True)
            full_cold = _time(full_ds, n_cold, cold=True)
            res.update({"mmap_cold_samples_per_s": round(mmap_cold, 2),
                        "full_read_cold_samples_per_s": round(full_cold, 2),
                        "speedup_cold": round(mmap_cold / full_cold, 2)})
        return res
    finally:
        if own and not keep:
            shutil.rmtree(folder, ignore_errors=True)
