"""The dataset logic shared by the SID, MCR and own-camera loaders: list filtering, crops, flips, bad files.

:class:`PairDataset` turns a subclass's stored arrays (packed noisy and clean RAW (C, h, w) as the
sensor recorded them, RGB (3, H, W) integers) into sample dicts, computed as the authors' loader
computes them: ``noisy_raw`` (C, h, w) float32, normalised, times the ratio and clipped;
``clean_raw`` (C, h, w) float32; ``clean_rgb`` (3, h*b, w*b) in [0, 1]; ``ratio`` and file names.
Train crops are random with random flips / transpose, valid the centre crop, test the full image
(docs/data.md). Random numbers come from torch's generator, so DataLoader workers draw different
crops and a seed reproduces them.
"""
from __future__ import annotations

import difflib
import os
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import split_options
from ..errors import BadFileError
from ..io.raw import normalize_mosaic
from .errors import DataError
from .lists import PairEntry, keep_first_capture

SPLITS = ("train", "valid", "test")
#: the split options (data.process / data.<split>) a PairDataset takes
SPLIT_KEYS = ("max_clip", "min_clip", "transpose", "h_flip", "v_flip", "only_00", "patch_size", "repeat",
              "max_samples")


def skipped_marker(entry: PairEntry, reason: str) -> Dict[str, Any]:
    """What a valid/test sample is replaced by when its files turn out unreadable at load time
    (``skip_bad_files``): no arrays, only the pair's names and the reason."""
    return {"skipped": reason, "img_file": entry.img_file, "lbl_file": entry.lbl_file, "source": entry.source}


def open_npy(path: str) -> np.ndarray:
    """``np.load(path, mmap_mode='r')`` with a :class:`DataError` naming a missing or broken file."""
    if not os.path.isfile(path):
        raise DataError(f"cache file not found: {path}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise DataError(f"cannot read cache file {path}: {type(exc).__name__}: {exc} "
                        f"(truncated or corrupt; delete it and run the preparation again)") from None


def missing_list_hint(written: str, list_file: str) -> Optional[str]:
    """Advice for a list file that does not exist, from the list files (``*.txt``) beside where it
    should be: the closest name, written as ``written`` was (``did you mean Sony_train_list.txt?``),
    and the ones there; None when that folder holds none (the data is not prepared: the caller
    gives the preparation advice instead)."""
    folder = os.path.dirname(list_file) or "."
    try:
        names = sorted(n for n in os.listdir(folder)
                       if n.lower().endswith(".txt") and os.path.isfile(os.path.join(folder, n)))
    except OSError:
        return None
    if not names:
        return None
    close = difflib.get_close_matches(os.path.basename(list_file), names, n=1, cutoff=0.6)
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    if not close:
        return f"the list files in {folder} are {shown}"
    return f"did you mean {os.path.join(os.path.dirname(written), close[0])}?" + \
        (f" (list files there: {shown})" if len(names) > 1 else "")


class PairDataset(Dataset):
    """The in-tree data sets' common logic (module docstring). The class attributes are the camera
    facts the rest of the project reads from the registered class (``cans.registry.DATASETS``):
    the config checks, the tester's protocol and the synthetic stand-in.

    A subclass provides ``_entries()`` (the parsed list), ``_check_entry(entry)`` (a cheap check run
    once per pair at construction), ``_levels(entry)`` (black and white levels of the two exposures)
    and ``_arrays(entry)``: noisy (C, h, w) and clean (C, h, w) packed as stored (e.g. uint16), rgb
    (3, H, W) integers with H >= h * b, W >= w * b, divided by ``rgb_scale``; numpy arrays or
    read-only memory maps (slicing a memory map reads only the slice). ``noisy_raw`` = clip((noisy -
    black) / (white - black) * ratio, min_clip, max_clip), a ``None`` bound not applied;
    ``clean_raw`` = (clean - black) / (white - black), times the list's white balance when given.
    """
    #: packed channels (4 Bayer, 9 X-Trans) and mosaic pixels per packed pixel (2, 3)
    packed_channels = 4
    block_size = 2
    rgb_scale = 65535.0
    #: the camera's name in messages and reports
    camera = "Sony"
    #: the camera of the paper's tables and of pretrained_weights/<model>/<camera>.pth, or None
    paper_camera: Optional[str] = None
    #: pairs from the user's own camera (cans/data/rawpair.py)
    own_camera = False
    #: the synthetic set that stands in for it (data.synthetic.auto_create): a camera of
    #: cans.synthetic ("Sony", "Fuji"), "bayer" / "xtrans" (own-camera sets), or None
    synthetic: Optional[str] = None
    #: a config whose model keys fit this data (named by the cross-key checks)
    base_config = "configs/base/Sony.yaml"
    #: whether workers read RAW files through LibRaw (then they are spawned, not forked)
    reads_raw = True

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], split: str, log: Callable[[str], None] = print) -> "PairDataset":
        """The data set of ``split`` from the resolved config (``data.*`` and the split's options)."""
        data = cfg["data"]
        opts = split_options(cfg, split)
        kwargs = {k: opts[k] for k in SPLIT_KEYS if k in opts}
        kwargs["load_npy"] = data["load_npy"]
        kwargs.update(cls.data_options(data))
        return cls(data["data_path"], opts.get("image_list_file"), split, skip_bad_files=data["skip_bad_files"],
                   log=log, **kwargs)

    @staticmethod
    def data_options(data: Mapping[str, Any]) -> Dict[str, Any]:
        """The ``data.*`` keys this data set takes besides the split options (none)."""
        return {}
    #: cache memory maps kept open per process (page tables survive between samples of the same file)
    mmap_cache_size = 24

    def __init__(self, data_path: str, image_list_file: Optional[str], split: str = "train", *,
                 load_npy: bool = True, max_clip: Optional[float] = 1.0, min_clip: Optional[float] = None,
                 transpose: bool = False, h_flip: bool = True, v_flip: bool = True, only_00: bool = False,
                 patch_size: Optional[int] = None, repeat: int = 1, max_samples: Optional[int] = None,
                 skip_bad_files: bool = False, batch_size: Any = None, log: Callable[[str], None] = print,
                 config_prefix: str = "data"):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self._mmaps: "OrderedDict[str, np.ndarray]" = OrderedDict()
        self.data_path = data_path
        self.split = split
        self.load_npy = load_npy
        self.max_clip, self.min_clip = max_clip, min_clip
        self.transpose, self.h_flip, self.v_flip = transpose, h_flip, v_flip
        self.patch_size = patch_size
        self.repeat = repeat
        self.skip_bad_files = skip_bad_files
        self.log = log
        self.key = f"{config_prefix}.{split}"
        self.skipped: List[Tuple[str, str]] = []   # (list line, reason) dropped at construction
        self.runtime_skipped = 0                    # bad files met while loading (this process)
        self._skipped_files: List[Tuple[str, str]] = []   # (img_file, reason): see skipped_pairs()
        if repeat < 1:
            raise DataError(f"{self.key}.repeat must be >= 1, got {repeat}")
        if patch_size is not None and split != "test":
            if patch_size <= 0 or patch_size % self.block_size:
                raise DataError(f"{self.key}.patch_size: {patch_size} must be a positive multiple of "
                                f"the block size {self.block_size} (mosaic pixels)")
        if not os.path.isdir(data_path):
            raise DataError(f"data.data_path: folder not found: {data_path}; {self.prepare_hint()}")
        if not image_list_file:
            raise DataError(f"{self.key}.image_list_file is not set (a list file relative to data.data_path)")
        self.list_file = image_list_file if os.path.isabs(image_list_file) else \
            os.path.join(data_path, image_list_file)
        if not os.path.isfile(self.list_file):
            raise DataError(f"{self.key}.image_list_file: list file not found: {self.list_file}; "
                            f"{missing_list_hint(image_list_file, self.list_file) or self.prepare_hint()}")
        entries = self._entries()
        if only_00:
            entries = keep_first_capture(entries)
        if max_samples is not None:
            entries = entries[:max_samples]
        self.entries = self._check_all(entries)
        if not self.entries:
            raise DataError(f"{self.list_file}: no usable pairs for split {split!r}"
                            + (" after only_00" if only_00 else ""))

    # -- to be provided by subclasses ----------------------------------------------------
    def prepare_hint(self) -> str:
        raise NotImplementedError

    def _entries(self) -> List[PairEntry]:
        raise NotImplementedError

    def _check_entry(self, entry: PairEntry) -> None:
        """Raise DataError if a file of ``entry`` is missing or unreadable (cheap checks only)."""

    def _arrays(self, entry: PairEntry):
        raise NotImplementedError

    def _wb(self, entry: PairEntry) -> Optional[np.ndarray]:
        return None

    def _levels(self, entry: PairEntry) -> Tuple[Tuple[Any, float], Tuple[Any, float]]:
        """``((black, white) of the short exposure, (black, white) of the long one)`` as stored:
        black a number or a (C, 1, 1) array per packed channel. A camera's black level can depend
        on the ISO, so the two files of a pair may differ."""
        raise NotImplementedError

    def _prefetch(self, arrays, yy: int, ph: int) -> None:
        """Hint the OS about the rows a crop will read (packed rows yy .. yy + ph); optional."""

    # -- construction --------------------------------------------------------------------
    def _check_all(self, entries: List[PairEntry]) -> List[PairEntry]:
        good, bad, unreadable = [], [], 0
        for e in entries:
            try:
                self._check_entry(e)
                good.append(e)
            except DataError as exc:
                bad.append((e, str(exc)))
                unreadable += isinstance(exc, BadFileError)
        if bad:
            listing = "\n  ".join(f"{e.source}: {msg}" for e, msg in bad[:5])
            more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
            if not self.skip_bad_files:
                if unreadable == len(bad):   # preparing again would fail on the same files
                    raise DataError(f"{self.list_file}: {len(bad)} of {len(entries)} pairs have unreadable "
                                    f"files:\n  {listing}{more}\nreplace them, or set data.skip_bad_files: "
                                    f"true to leave these pairs out")
                raise DataError(f"{self.list_file}: {len(bad)} of {len(entries)} pairs have missing or "
                                f"unreadable files:\n  {listing}{more}\n{self.prepare_hint()}; or set "
                                f"data.skip_bad_files: true to leave them out")
            self.skipped = [(e.source, msg) for e, msg in bad]
            self._skipped_files.extend((e.img_file, msg) for e, msg in bad)
            self.log(f"[data] {self.key}: skipped {len(bad)} of {len(entries)} pairs with bad files "
                     f"(data.skip_bad_files: true):\n  {listing}{more}")
        return good

    def skipped_pairs(self, seen: Iterable[Mapping[str, Any]] = ()) -> List[Tuple[str, str]]:
        """``[(img_file, reason), ...]``: the pairs this dataset left out (``data.skip_bad_files``),
        each once (first reason kept), ``img_file`` as written in the list.

        Covers the pairs dropped at construction and those found unreadable at load time in this
        process (all of them with ``data.num_workers: 0``). A DataLoader worker process loads on its
        own copy of the dataset, so its finds are not here: for valid/test they reach the main
        process as the markers of ``batch["skipped"]`` (``evaluate()``'s ``report["skipped"]``), which
        ``seen`` adds (dicts with ``img_file`` and ``reason``; those without an ``img_file`` are
        skipped); a train pair a worker finds bad is replaced by another and only logged.
        """
        out: Dict[str, str] = {}
        for img_file, reason in self._skipped_files:
            out.setdefault(img_file, reason)
        for marker in seen:
            if marker.get("img_file"):
                out.setdefault(str(marker["img_file"]), str(marker.get("reason", "")))
        return list(out.items())

    # -- sampling ------------------------------------------------------------------------
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_mmaps"] = OrderedDict()   # DataLoader workers open their own maps
        return state

    def _open_cached(self, path: str, check: Optional[Callable[[np.ndarray, str], None]] = None) -> np.ndarray:
        """The cache file ``path`` memory-mapped (:func:`open_npy`), kept open for the next samples;
        ``check(array, path)`` (raising DataError) runs when the file is opened, not on every sample."""
        arr = self._mmaps.get(path)
        if arr is None:
            arr = open_npy(path)
            if check is not None:
                check(arr, path)
            self._mmaps[path] = arr
            while len(self._mmaps) > self.mmap_cache_size:
                self._mmaps.popitem(last=False)
        else:
            self._mmaps.move_to_end(path)
        return arr

    def __len__(self) -> int:
        return len(self.entries) * self.repeat

    def __getitem__(self, index: int) -> Dict[str, Any]:
        n = len(self.entries)
        start = index % n
        for attempt in range(n):
            entry = self.entries[(start + attempt) % n]
            try:
                return self.load(entry)
            except DataError as exc:
                if not self.skip_bad_files:
                    raise
                self.runtime_skipped += 1
                self._skipped_files.append((entry.img_file, str(exc)))
                self.log(f"[data] {self.key}: skipped a bad pair ({self.runtime_skipped} so far in this "
                         f"process): {exc}")
                if self.split != "train":
                    # scored splits leave the pair out (no stand-in: the tables count each image once);
                    # cans.data.collate_samples drops this marker and evaluate() lists it as skipped
                    return skipped_marker(entry, str(exc))
        raise DataError(f"{self.list_file}: every pair failed to load")

    def _randint(self, high: int) -> int:
        return int(torch.randint(0, max(1, high), (1,)).item())

    def _coin(self) -> bool:
        return bool(torch.rand(1).item() < 0.5)

    def crop_window(self, h: int, w: int, entry: PairEntry) -> Tuple[int, int, int, int]:
        """(yy, xx, ph, pw) packed crop for an image whose packed size is (h, w)."""
        b = self.block_size
        if self.split == "test" or not self.patch_size:
            return 0, 0, h, w
        ps = self.patch_size
        H, W = h * b, w * b
        if ps > H or ps > W:
            raise DataError(f"{self.key}.patch_size {ps} is larger than the image {H}x{W} of "
                            f"{entry.img_file} ({entry.source})")
        p = ps // b
        if self.split == "train":
            yy = self._randint((H - ps) // b)
            xx = self._randint((W - ps) // b)
        else:
            yy, xx = (h - p) // 2, (w - p) // 2
        return yy, xx, p, p

    def load(self, entry: PairEntry) -> Dict[str, Any]:
        """The sample of one list entry (module docstring)."""
        b = self.block_size
        noisy, clean, rgb = self._arrays(entry)
        c, h, w = noisy.shape
        if c != self.packed_channels or tuple(clean.shape) != (c, h, w):
            raise DataError(f"{entry.source}: packed shapes {tuple(noisy.shape)} ({entry.img_file}) and "
                            f"{tuple(clean.shape)} ({entry.lbl_file}) differ or do not have "
                            f"{self.packed_channels} channels")
        if rgb.ndim != 3 or rgb.shape[0] != 3 or rgb.shape[1] < h * b or rgb.shape[2] < w * b:
            raise DataError(f"{entry.source}: RGB target {tuple(rgb.shape)} of {entry.lbl_file} does not "
                            f"cover the packed image {h}x{w} x block {b} (expected (3, >= {h * b}, >= {w * b}))")
        yy, xx, ph, pw = self.crop_window(h, w, entry)
        self._prefetch((noisy, clean, rgb), yy, ph)
        flip_h = flip_v = swap = False
        if self.split == "train":
            flip_h = self.h_flip and self._coin()
            flip_v = self.v_flip and self._coin()
            swap = self.transpose and self._coin()
        # Flips and transpose are folded into views, so that each output array is made in one
        # pass of a numpy ufunc (fast with negative strides, unlike a plain copy). The RGB crop
        # is first copied forward (a memory map reads only the crop's rows), then viewed.
        sy = slice(yy + ph - 1, yy - 1 if yy > 0 else None, -1) if flip_v else slice(yy, yy + ph)
        sx = slice(xx + pw - 1, xx - 1 if xx > 0 else None, -1) if flip_h else slice(xx, xx + pw)
        noisy_v, clean_v = noisy[:, sy, sx], clean[:, sy, sx]
        rgb_v = np.array(rgb[:, yy * b:(yy + ph) * b, xx * b:(xx + pw) * b])
        is_int = np.issubdtype(rgb_v.dtype, np.integer)
        rgb_v = rgb_v[:, ::-1 if flip_v else 1, ::-1 if flip_h else 1]
        if swap:
            noisy_v, clean_v, rgb_v = (noisy_v.transpose(0, 2, 1), clean_v.transpose(0, 2, 1),
                                       rgb_v.transpose(0, 2, 1))
        ratio = float(entry.ratio)
        (short_black, short_white), (long_black, long_white) = self._levels(entry)
        # (float32(raw) - black) / float32(white - black), then * ratio: the authors' order of
        # float32 operations, so that samples agree with theirs to the last bit.
        noisy = normalize_mosaic(noisy_v, short_black, short_white)
        noisy *= np.float32(ratio)
        if self.max_clip is not None:
            np.minimum(noisy, np.float32(self.max_clip), out=noisy)
        if self.min_clip is not None:
            np.maximum(noisy, np.float32(self.min_clip), out=noisy)
        clean = normalize_mosaic(clean_v, long_black, long_white)
        wb = self._wb(entry)
        if wb is not None:
            clean *= wb.astype(np.float32)[:, None, None]
        rgb = rgb_v.astype(np.float32, order="C")
        rgb /= np.float32(self.rgb_scale)
        if not is_int:
            np.clip(rgb, 0.0, 1.0, out=rgb)
        return {
            "noisy_raw": torch.from_numpy(noisy),
            "clean_raw": torch.from_numpy(clean),
            "clean_rgb": torch.from_numpy(rgb),
            "ratio": ratio,
            "input_exposure": float(entry.input_exposure),
            "gt_exposure": float(entry.gt_exposure),
            "img_file": entry.img_file,
            "lbl_file": entry.lbl_file,
        }
