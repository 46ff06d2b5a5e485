"""MCR loader (Mono-Colored RAW, CVPR 2022; docs/data.md).

List lines ``raw_input raw_gt rgb_gt`` (PNG files, relative to data.data_path): the input and
ground-truth mosaics (Bayer RGGB, black 0, white 255) are packed to 4 channels; the RGB target
is the PNG / 255. Exposures: see :func:`cans.data.lists.mcr_exposures`; ratio = gt / input
exposure, not capped at 300 as SID's is (docs/data.md). There is no cache mode
(``load_npy`` is ignored): the PNGs are small and read whole. No white balance.
"""
from __future__ import annotations

import os
from typing import List

import numpy as np

from ..cfa import pack_bayer
from ..registry import DATASETS
from .base import PairDataset
from .errors import DataError, prepare_hint
from .lists import PairEntry, parse_mcr_list
from .prepare import resolve


def read_png(path: str) -> np.ndarray:
    """PNG -> numpy array, with a :class:`DataError` naming a missing or unreadable file."""
    if not os.path.isfile(path):
        raise DataError(f"image file not found: {path}")
    try:
        import imageio.v3 as iio
        return np.asarray(iio.imread(path))
    except Exception as exc:
        raise DataError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from None


def _check_8bit(img: np.ndarray, path: str) -> None:
    """MCR's levels are black 0, white 255: refuse values above 255 (e.g. a 16-bit PNG)."""
    if img.dtype != np.uint8 and img.size and float(img.max()) > 255:
        raise DataError(f"{path}: values up to {float(img.max()):g} ({img.dtype}); MCR images are 8-bit "
                        f"(black 0, white 255)")


@DATASETS.register
class MCRDictSet(PairDataset):
    packed_channels, block_size = 4, 2
    paper_camera = "MCR"
    base_config = "configs/base/MCR.yaml"
    reads_raw = False  # PNG files: workers may be forked
    rgb_scale = 255.0
    camera = "MCR"
    level = 255.0

    def prepare_hint(self) -> str:
        return prepare_hint(self.data_path, "MCR")

    def _entries(self) -> List[PairEntry]:
        return parse_mcr_list(self.list_file)

    def _check_entry(self, entry: PairEntry) -> None:
        for rel in (entry.img_file, entry.lbl_file, entry.rgb_file):
            path = resolve(self.data_path, rel)
            if not os.path.isfile(path):
                raise DataError(f"image file not found: {path}")

    def _mosaic(self, rel: str) -> np.ndarray:
        path = resolve(self.data_path, rel)
        img = read_png(path)
        if img.ndim == 3 and img.shape[2] in (1, 3, 4) and img.shape[2] != 3:
            img = img[..., 0]
        if img.ndim != 2:
            raise DataError(f"{path}: expected a single-channel mosaic PNG, got shape {img.shape}")
        _check_8bit(img, path)
        return pack_bayer(img)

    def _arrays(self, entry: PairEntry):
        noisy = self._mosaic(entry.img_file)
        clean = self._mosaic(entry.lbl_file)
        rgb_path = resolve(self.data_path, entry.rgb_file)
        rgb = read_png(rgb_path)
        if rgb.ndim != 3 or rgb.shape[2] < 3:
            raise DataError(f"{rgb_path}: expected an RGB PNG, got shape {rgb.shape}")
        _check_8bit(rgb[..., :3], rgb_path)
        return noisy, clean, rgb[..., :3].transpose(2, 0, 1)

    def _levels(self, entry: PairEntry):
        return (0.0, self.level), (0.0, self.level)
