"""SID loaders: ``SonyDictSet`` (Bayer) and ``FujiDictSet`` (X-Trans); see docs/data.md.

Two reading modes give identical samples:

* ``load_npy: true``: the caches in the authors' format (uint16 packed RAW and 16-bit
  rendering; :mod:`cans.data.prepare`), opened with ``np.load(mmap_mode='r')`` so a training
  crop reads only its own bytes;
* ``load_npy: false``: the RAW files through rawpy, packed and rendered the same way.

Samples are normalised at load time with the camera's levels (Sony black 512, Fuji 1024,
white 16383), as the authors' loader does.
"""
from __future__ import annotations

import mmap
import os
from typing import List, Optional

import numpy as np

from ..cfa import wb_vector
from ..io.raw import check_raw_file, read_raw, read_raw_and_render
from ..registry import DATASETS
from .base import PairDataset, open_npy
from .cameras import FUJI, SONY, CameraSpec
from .errors import DataError, prepare_hint
from .lists import PairEntry, parse_sid_list
from .prepare import cache_path, legacy_cache_path, pack_raw, rendering_chw, resolve


def willneed_rows(arr: np.ndarray, axis: int, r0: int, r1: int) -> None:
    """``madvise(MADV_WILLNEED)`` the rows [r0, r1) along ``axis`` (0 or 1) of a C-ordered memory map.

    One read-ahead request per leading index instead of a page fault per touched page: a crop
    from a file that is not in the page cache loads faster. Does nothing for other arrays.
    """
    mm = getattr(arr, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise") or not arr.flags.c_contiguous or r1 <= r0:
        return
    try:
        delta = int(arr.offset) % mmap.ALLOCATIONGRANULARITY
        row = arr.strides[axis]
        leads = arr.shape[0] if axis == 1 else 1
        for c in range(leads):
            start = delta + c * (arr.strides[0] if axis == 1 else 0) + r0 * row
            end = min(start + (r1 - r0) * row, len(mm))
            aligned = start - start % mmap.PAGESIZE
            mm.madvise(mmap.MADV_WILLNEED, aligned, end - aligned)
    except (OSError, ValueError, AttributeError):
        pass


class SIDDictSet(PairDataset):
    spec: CameraSpec = SONY

    def prepare_hint(self) -> str:
        return prepare_hint(self.data_path, self.spec.name)

    def _entries(self) -> List[PairEntry]:
        return parse_sid_list(self.list_file)

    def _paths(self, entry: PairEntry):
        if self.load_npy:
            return (cache_path(self.data_path, entry.img_file, "pack"),
                    cache_path(self.data_path, entry.lbl_file, "pack"),
                    cache_path(self.data_path, entry.lbl_file, "post_int"))
        return resolve(self.data_path, entry.img_file), resolve(self.data_path, entry.lbl_file)

    def _check_entry(self, entry: PairEntry) -> None:
        for path in self._paths(entry):
            if self.load_npy:
                if not os.path.isfile(path):
                    self._check_legacy(entry)
                arr = open_npy(path)   # header and size: a truncated cache fails here
                self._check_cache_dtype(arr, path)
            else:
                check_raw_file(path)   # present, header readable, not truncated (without decoding)

    def _legacy_message(self, found: str) -> str:
        return (f"{found}: a cache in this project's old float32 layout; caches are now the authors' uint16 "
                f"format (<name>.ARW.npy). Rerun `python scripts/prepare_sid.py --data-path {self.data_path} "
                f"--camera {self.spec.name}` (it writes the new files next to the old ones, which can then be "
                f"deleted)")

    def _check_legacy(self, entry: PairEntry) -> None:
        """A missing cache whose old-layout file exists: say to prepare again, not 'not found'."""
        for rel, kind in ((entry.img_file, "pack"), (entry.lbl_file, "pack"), (entry.lbl_file, "post_int")):
            old = legacy_cache_path(self.data_path, rel, kind)
            if not os.path.isfile(cache_path(self.data_path, rel, kind)) and os.path.isfile(old):
                raise DataError(self._legacy_message(old))

    def _check_cache_dtype(self, arr: np.ndarray, path: str) -> None:
        if np.issubdtype(arr.dtype, np.floating):
            raise DataError(self._legacy_message(path))
        if not np.issubdtype(arr.dtype, np.integer):
            raise DataError(f"cache file {path}: dtype {arr.dtype}, expected uint16")

    def _check_cache_array(self, arr: np.ndarray, path: str) -> None:
        """A cache file as the loader opens it: (C, h, w) or (3, H, W) of integers."""
        if arr.ndim != 3:
            raise DataError(f"cache file {path}: expected 3 dimensions, got shape {arr.shape}")
        self._check_cache_dtype(arr, path)

    def _arrays(self, entry: PairEntry):
        if self.load_npy:
            return tuple(self._open_cached(path, self._check_cache_array) for path in self._paths(entry))
        short_p, long_p = self._paths(entry)
        noisy = pack_raw(read_raw(short_p), self.spec)
        rf, rgb = read_raw_and_render(long_p)
        clean = pack_raw(rf, self.spec)
        return noisy, clean, rendering_chw(rgb, clean.shape, self.block_size)

    def _levels(self, entry: PairEntry):
        levels = (self.spec.black, self.spec.white)   # the camera's fixed levels, both exposures
        return levels, levels

    def _prefetch(self, arrays, yy: int, ph: int) -> None:
        if self.load_npy and self.split != "test":
            b = self.block_size
            willneed_rows(arrays[0], 1, yy, yy + ph)
            willneed_rows(arrays[1], 1, yy, yy + ph)
            willneed_rows(arrays[2], 1, yy * b, (yy + ph) * b)

    def _wb(self, entry: PairEntry) -> Optional[np.ndarray]:
        return None if entry.wb is None else wb_vector(entry.wb, self.block_size)


@DATASETS.register
class SonyDictSet(SIDDictSet):
    """SID Sony A7S2, Bayer RGGB packed to 4 channels (block 2)."""
    spec = SONY
    packed_channels, block_size, camera = SONY.channels, SONY.block_size, SONY.name
    paper_camera = synthetic = "Sony"


@DATASETS.register
class FujiDictSet(SIDDictSet):
    """SID Fuji X-T2, X-Trans packed to 9 channels (block 3)."""
    spec = FUJI
    packed_channels, block_size, camera = FUJI.channels, FUJI.block_size, FUJI.name
    paper_camera = synthetic = "Fuji"
    base_config = "configs/base/Fuji.yaml"
