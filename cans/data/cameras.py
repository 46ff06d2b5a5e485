"""Per-camera facts of the SID cameras (docs/data.md): what the loaders check and pack, and what the
synthetic SID (:mod:`cans.synthetic`) imitates."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np

from ..cfa import BAYER_WB_INDEX, XTRANS_WB_INDEX, pack_bayer, pack_xtrans
from ..io.dng import A7S2_COLOR_MATRIX


@dataclass(frozen=True)
class CameraSpec:
    name: str
    block_size: int                     # packed pixel = block x block mosaic pixels
    channels: int                       # packed channels (4 Bayer, 9 X-Trans)
    black: float
    white: float
    pack: Callable[[np.ndarray], np.ndarray]
    wb_index: Tuple[int, ...]           # colour (0 R, 1 G, 2 B) of each packed channel
    cfa: Optional[str]                  # expected CFA letters of the 2x2 cell, None = not checked
    cell: int                           # side of the CFA's repeating cell in pixels (2 Bayer, 6 X-Trans)
    raw_ext: str                        # extension of SID's RAW files of this camera
    neutral: Tuple[float, float, float]  # a typical as-shot neutral (1 / white-balance gains), R G B
    color_matrix: Tuple[Tuple[int, int, int], ...]  # LibRaw's XYZ -> camera matrix (D65), x 10000


SONY = CameraSpec("Sony", block_size=2, channels=4, black=512.0, white=16383.0, pack=pack_bayer,
                  wb_index=BAYER_WB_INDEX, cfa="RGGB", cell=2, raw_ext=".ARW", neutral=(0.45, 1.0, 0.62),
                  color_matrix=A7S2_COLOR_MATRIX)                                     # ILCE-7SM2
FUJI = CameraSpec("Fuji", block_size=3, channels=9, black=1024.0, white=16383.0, pack=pack_xtrans,
                  wb_index=XTRANS_WB_INDEX, cfa=None, cell=6, raw_ext=".RAF", neutral=(0.50, 1.0, 0.60),
                  color_matrix=((11434, -4948, -1210), (-3746, 12042, 1903), (-666, 1479, 5235)))  # X-T2 / X-Pro2
CAMERAS = {"Sony": SONY, "Fuji": FUJI}


def camera_spec(name: str) -> CameraSpec:
    if name not in CAMERAS:
        raise ValueError(f"camera {name!r}: expected one of {sorted(CAMERAS)}")
    return CAMERAS[name]
