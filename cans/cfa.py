"""Packing a camera mosaic into channels, the per-channel white-balance order, and the colour
filter (CFA) facts the packing relies on: the cells the model was trained on
(:data:`BAYER_RGGB`, :data:`XTRANS_PATTERN`) and the shift that brings another phase to them
(:func:`phase_crop`, :func:`phase_offset`).

All functions are numpy, work on any dtype and return new arrays (no views into the input
that a caller could modify by accident are promised; use ``np.ascontiguousarray`` if needed).

* Bayer (Sony A7S2, MCR), RGGB phase: ``pack_bayer(raw (H, W)) -> (4, H//2, W//2)`` with the
  channels R (0,0), G (0,1), B (1,1), G (1,0) of each 2x2 cell (docs/data.md).
* X-Trans (Fuji X-T2): ``pack_xtrans(raw (H, W)) -> (9, H6//3, W6//3)`` where
  ``H6 = H // 6 * 6`` and ``W6 = W // 6 * 6``; the index table is the authors' (the tests
  compare it with their packing, docs/data.md).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

#: Colours of the 4 Bayer channels, used to expand an (R, G, B) white balance.
BAYER_WB_INDEX = (0, 1, 2, 1)
#: Colours of the 9 X-Trans channels (R, G, B, R, B, G, G, G, G).
XTRANS_WB_INDEX = (0, 1, 2, 0, 2, 1, 1, 1, 1)

#: Colour code of each CFA letter (the codes of the cells below).
CFA_CODES = {"R": 0, "G": 1, "B": 2}
#: The 2x2 Bayer cell that ``pack_bayer`` expects: RGGB (0 = R, 1 = G, 2 = B).
BAYER_RGGB = np.array([[0, 1], [1, 2]], dtype=np.uint8)

#: The 6x6 X-Trans colour layout that ``pack_xtrans`` expects (0 = R, 1 = G, 2 = B).
XTRANS_PATTERN = np.array([
    [0, 2, 1, 2, 0, 1],
    [1, 1, 0, 1, 1, 2],
    [1, 1, 2, 1, 1, 0],
    [2, 0, 1, 0, 2, 1],
    [1, 1, 2, 1, 1, 0],
    [1, 1, 0, 1, 1, 2],
], dtype=np.uint8)

# (channel, a, b, r, q): out[channel, a::2, b::2] = im[r::6, q::6]
_XTRANS_TABLE = (
    (0, 0, 0, 0, 0), (0, 0, 1, 0, 4), (0, 1, 0, 3, 1), (0, 1, 1, 3, 3),
    (1, 0, 0, 0, 2), (1, 0, 1, 0, 5), (1, 1, 0, 3, 2), (1, 1, 1, 3, 5),
    (2, 0, 0, 0, 1), (2, 0, 1, 0, 3), (2, 1, 0, 3, 0), (2, 1, 1, 3, 4),
    (3, 0, 0, 1, 2), (3, 0, 1, 2, 5), (3, 1, 0, 5, 2), (3, 1, 1, 4, 5),
    (4, 0, 0, 2, 2), (4, 0, 1, 1, 5), (4, 1, 0, 4, 2), (4, 1, 1, 5, 5),
)
# channels 5..8: out[c] = im[r::3, q::3]
_XTRANS_GREEN = ((5, 1, 0), (6, 1, 1), (7, 2, 0), (8, 2, 1))


def cfa_cell(cfa) -> np.ndarray:
    """A CFA cell as (p, p) uint8 colour codes (0 R, 1 G, 2 B) from a 4-letter Bayer string read
    row by row ('RGGB', 'GRBG', 'GBRG', 'BGGR') or a square array / nested list of codes
    (e.g. :data:`XTRANS_PATTERN`, p = 6). ValueError for anything else."""
    if isinstance(cfa, str):
        letters = cfa.upper()
        if len(letters) != 4 or sorted(letters) != ["B", "G", "G", "R"]:
            raise ValueError(f"cfa {cfa!r} is not a Bayer pattern (RGGB, GRBG, GBRG, BGGR)")
        return np.array([CFA_CODES[c] for c in letters], dtype=np.uint8).reshape(2, 2)
    cell = np.asarray(cfa, dtype=np.uint8)
    if cell.ndim != 2 or cell.shape[0] != cell.shape[1] or cell.max() > 2:
        raise ValueError(f"cfa must be a square array of 0/1/2, got {cell!r}")
    return cell


def _phase_shift(cfa: np.ndarray, reference: np.ndarray, sign: int) -> Tuple[int, int]:
    """The first (a, b) in row-major order with ``np.roll(cfa, (sign * a, sign * b)) == reference``."""
    p = reference.shape[0]
    if cfa.shape != reference.shape:
        raise ValueError(f"CFA cell {cfa.shape} does not match the expected {reference.shape}")
    for a in range(p):
        for b in range(p):
            if np.array_equal(np.roll(cfa, (sign * a, sign * b), axis=(0, 1)), reference):
                return a, b
    raise ValueError(f"the CFA cell {cfa.tolist()} is not a shifted copy of {reference.tolist()}")


def phase_crop(cfa: np.ndarray, reference: np.ndarray) -> Tuple[int, int]:
    """(cy, cx): dropping cy rows and cx columns turns the (p, p) cell ``cfa`` into ``reference``:
    ``cfa[(i + cy) % p, (j + cx) % p] == reference[i, j]``, the smallest such (cy, cx) in row-major
    order (an X-Trans cell has two). ValueError if there is none."""
    return _phase_shift(cfa, reference, -1)


def phase_offset(cfa: np.ndarray, reference: np.ndarray) -> Tuple[int, int]:
    """(dy, dx) such that padding dy rows on top and dx columns on the left turns ``cfa`` into
    ``reference``: ``cfa[(i - dy) % p, (j - dx) % p] == reference[i, j]``, the smallest such
    (dy, dx) in row-major order (an X-Trans cell has two). ValueError if there is none."""
    return _phase_shift(cfa, reference, 1)


def _check_2d(raw: np.ndarray, name: str, multiple: int) -> np.ndarray:
    raw = np.asarray(raw)
    if raw.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D mosaic (H, W), got shape {raw.shape}")
    if raw.shape[0] < multiple or raw.shape[1] < multiple:
        raise ValueError(f"{name}: mosaic {raw.shape} is smaller than one {multiple}x{multiple} cell")
    return raw


def pack_bayer(raw_hw: np.ndarray) -> np.ndarray:
    """RGGB mosaic (H, W) -> (4, H//2, W//2): R, G(0,1), B, G(1,0). Odd sizes drop the last row/column."""
    im = _check_2d(raw_hw, "pack_bayer", 2)
    h, w = im.shape[0] // 2 * 2, im.shape[1] // 2 * 2
    im = im[:h, :w]
    return np.stack((im[0::2, 0::2], im[0::2, 1::2], im[1::2, 1::2], im[1::2, 0::2]), axis=0)


def unpack_bayer(packed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_bayer`: (4, h, w) -> RGGB mosaic (2h, 2w)."""
    packed = np.asarray(packed)
    if packed.ndim != 3 or packed.shape[0] != 4:
        raise ValueError(f"unpack_bayer: expected (4, h, w), got {packed.shape}")
    _, h, w = packed.shape
    out = np.empty((2 * h, 2 * w), dtype=packed.dtype)
    out[0::2, 0::2] = packed[0]
    out[0::2, 1::2] = packed[1]
    out[1::2, 1::2] = packed[2]
    out[1::2, 0::2] = packed[3]
    return out


def pack_xtrans(raw_hw: np.ndarray) -> np.ndarray:
    """X-Trans mosaic (H, W) -> (9, H6//3, W6//3), the reference's table (module docstring)."""
    im = _check_2d(raw_hw, "pack_xtrans", 6)
    h6, w6 = im.shape[0] // 6 * 6, im.shape[1] // 6 * 6
    im = im[:h6, :w6]
    out = np.empty((9, h6 // 3, w6 // 3), dtype=im.dtype)
    for c, a, b, r, q in _XTRANS_TABLE:
        out[c, a::2, b::2] = im[r::6, q::6]
    for c, r, q in _XTRANS_GREEN:
        out[c] = im[r::3, q::3]
    return out


def unpack_xtrans(packed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_xtrans`: (9, h, w) -> mosaic (3h, 3w) (h and w even)."""
    packed = np.asarray(packed)
    if packed.ndim != 3 or packed.shape[0] != 9 or packed.shape[1] % 2 or packed.shape[2] % 2:
        raise ValueError(f"unpack_xtrans: expected (9, h, w) with h, w even, got {packed.shape}")
    _, h, w = packed.shape
    out = np.empty((3 * h, 3 * w), dtype=packed.dtype)
    for c, a, b, r, q in _XTRANS_TABLE:
        out[r::6, q::6] = packed[c, a::2, b::2]
    for c, r, q in _XTRANS_GREEN:
        out[r::3, q::3] = packed[c]
    return out


def mosaic_cell(rgb_hwc: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (H, W) mosaic with the (p, p) colour cell ``cell`` (0 R, 1 G, 2 B) tiled from
    the top-left: each pixel keeps the colour its CFA site records."""
    rgb = np.asarray(rgb_hwc)
    h, w = rgb.shape[:2]
    p = cell.shape[0]
    idx = np.tile(cell, (h // p + 1, w // p + 1))[:h, :w]
    return np.take_along_axis(rgb, idx[..., None].astype(np.intp), axis=2)[..., 0]


def mosaic_bayer(rgb_hwc: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> RGGB mosaic (H, W) (:data:`BAYER_RGGB` tiled from (0, 0))."""
    return mosaic_cell(rgb_hwc, BAYER_RGGB)


def mosaic_xtrans(rgb_hwc: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> X-Trans mosaic (H, W) with :data:`XTRANS_PATTERN` tiled from (0, 0)."""
    return mosaic_cell(rgb_hwc, XTRANS_PATTERN)


def wb_vector(wb_rgb, block_size: int) -> np.ndarray:
    """(R, G, B) gains -> per-channel gains (4,) for Bayer (block 2) or (9,) for X-Trans (block 3)."""
    wb = np.asarray(wb_rgb, dtype=np.float32).reshape(3)
    index = BAYER_WB_INDEX if block_size == 2 else XTRANS_WB_INDEX
    return wb[list(index)]
