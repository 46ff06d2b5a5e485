"""Per-camera constants of the SID loaders (docs/data.md)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np

from ..cfa import BAYER_WB_INDEX, XTRANS_WB_INDEX, pack_bayer, pack_xtrans


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


SONY = CameraSpec("Sony", 2, 4, 512.0, 16383.0, pack_bayer, BAYER_WB_INDEX, "RGGB")
FUJI = CameraSpec("Fuji", 3, 9, 1024.0, 16383.0, pack_xtrans, XTRANS_WB_INDEX, None)
CAMERAS = {"Sony": SONY, "Fuji": FUJI}


def camera_spec(name: str) -> CameraSpec:
    if name not in CAMERAS:
        raise ValueError(f"camera {name!r}: expected one of {sorted(CAMERAS)}")
    return CAMERAS[name]
