"""Reading camera RAW files through rawpy (LibRaw), with errors that name the file.

Public helpers (also used by ``scripts/infer.py``):

* :func:`read_raw(path)` -> :class:`RawFile`: the visible mosaic and everything needed to
  normalise it (black per CFA site, white level), the CFA layout and the as-shot white balance.
* :func:`read_bayer(path)` -> dict, for Bayer sensors only (see its docstring).
* :func:`normalize_mosaic(mosaic, black, white)` -> float32, ``(raw - black) / (white - black)``;
  values below the black level stay negative, as in the authors' loader.
* :func:`render_srgb16(raw)`: LibRaw's post-processing used for the SID RGB target
  (``use_camera_wb=True, half_size=False, no_auto_bright=True, output_bps=16``), uint16 (H, W, 3).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Optional, Tuple, Union

import numpy as np

from .errors import DataError

try:  # rawpy is a hard dependency of the project; keep the import error readable
    import rawpy
except ImportError as exc:  # pragma: no cover
    rawpy = None
    _RAWPY_ERROR = exc


def _need_rawpy():
    if rawpy is None:  # pragma: no cover
        raise DataError(f"reading RAW files needs rawpy (pip install rawpy): {_RAWPY_ERROR}")


COLOUR_LETTERS = "RGB"


@dataclass
class RawFile:
    """A RAW file's mosaic and metadata.

    mosaic: (H, W) uint16, the visible sensor area as stored (black not subtracted).
    cfa: (p, p) uint8 colour of each site of the repeating cell (0 R, 1 G, 2 B); p = 2 (Bayer)
         or 6 (X-Trans).
    black: (p, p) float32 black level of each site of the cell.
    white: float, the saturation level.
    wb: (3,) float32 as-shot white-balance gains R, G, B with G = 1 (all ones if the file has none).
    path: the file read.
    """
    mosaic: np.ndarray
    cfa: np.ndarray
    black: np.ndarray
    white: float
    wb: np.ndarray
    path: str

    @property
    def pattern(self) -> str:
        """Colour letters of the repeating cell, row by row ('RGGB' for an RGGB Bayer sensor)."""
        return "".join(COLOUR_LETTERS[c] for c in self.cfa.reshape(-1))


def open_raw(path: str):
    """``rawpy.imread(path)`` with a :class:`DataError` naming the file on any failure."""
    _need_rawpy()
    if not os.path.isfile(path):
        raise DataError(f"RAW file not found: {path}")
    try:
        return rawpy.imread(path)
    except Exception as exc:  # LibRawFileUnsupportedError, LibRawIOError, ...
        raise DataError(f"cannot read RAW file {path}: {type(exc).__name__}: {exc} "
                        f"(unreadable, truncated or not a RAW format LibRaw knows)") from None


def _as_shot_wb(rp) -> np.ndarray:
    wb = np.asarray(rp.camera_whitebalance, dtype=np.float64)[:3]
    if not np.all(np.isfinite(wb)) or wb[1] <= 0 or np.any(wb <= 0):
        return np.ones(3, dtype=np.float32)
    return (wb / wb[1]).astype(np.float32)


def shot_metadata(rp) -> Tuple[float, float, np.ndarray]:
    """``(exposure time in s, ISO, 3x3 colour matrix)`` of an open rawpy file; 0, 0 and zeros for
    what the file does not record (converted copies often lack them)."""
    try:
        exposure, iso = float(rp.other.shutter_speed), float(rp.other.iso_speed)
    except Exception:
        exposure, iso = 0.0, 0.0
    try:
        matrix = np.asarray(rp.color_matrix, dtype=np.float64)[:3, :3]
    except Exception:
        matrix = np.zeros((3, 3))
    return exposure, iso, matrix


def cfa_letters(pattern: np.ndarray, desc: str, path: str) -> np.ndarray:
    """The colour letter of each site of the CFA cell: ``desc[pattern]``, (p, p) of 'R', 'G', 'B'.

    LibRaw's ``raw_pattern`` holds indices into its ``color_desc`` ('RGBG' for a Bayer sensor: 1
    and 3 are both green). :class:`DataError` naming the file, what LibRaw reported and what is
    expected when an index has no letter in ``desc`` (a damaged or unusual file) or a letter is
    not R, G or B (a CYGM or RGBE sensor).
    """
    pattern = np.asarray(pattern)
    told = f"LibRaw reports color_desc {desc!r} and raw_pattern {pattern.tolist()}"
    indices = pattern.reshape(-1).astype(np.int64)
    bad = sorted({int(i) for i in indices if not 0 <= i < len(desc)})
    if bad:
        raise DataError(f"{path}: unreadable colour filter description: {told}; index {bad[0]} has no colour "
                        f"in color_desc (expected a colour letter for every index, as 'RGBG' for a Bayer sensor)")
    letters = np.array([desc[i] for i in indices]).reshape(pattern.shape)
    if not set(letters.reshape(-1).tolist()) <= set(COLOUR_LETTERS):
        raise DataError(f"{path}: unsupported colour filter: {told}, that is the cell "
                        f"{''.join(letters.reshape(-1))!r} (expected only R, G and B sites: a Bayer or X-Trans "
                        f"sensor)")
    return letters


def _raw_from_handle(rp, path: str) -> RawFile:
    try:
        mosaic = np.array(rp.raw_image_visible, dtype=np.uint16, copy=True)
        pattern = rp.raw_pattern
        if pattern is None:
            raise DataError(f"{path}: not a mosaic (CFA) sensor; LibRaw gives no raw_pattern")
        pattern = np.asarray(pattern)
        desc = rp.color_desc
        letters = cfa_letters(pattern, desc.decode("ascii", "replace") if isinstance(desc, bytes) else str(desc),
                              path)
        cfa = np.zeros(pattern.shape, dtype=np.uint8)
        for code, letter in enumerate(COLOUR_LETTERS):
            cfa[letters == letter] = code
        per_channel = np.asarray(rp.black_level_per_channel, dtype=np.float32)
        black = per_channel[pattern.astype(np.intp)]
        white = float(rp.white_level)
        wb = _as_shot_wb(rp)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"cannot read RAW data of {path}: {type(exc).__name__}: {exc} "
                        f"(truncated or corrupt file?)") from None
    return RawFile(mosaic=mosaic, cfa=cfa, black=black, white=white, wb=wb, path=path)


def read_raw(path: str) -> RawFile:
    """Read ``path`` with rawpy; :class:`DataError` naming the file when it cannot be read."""
    with open_raw(path) as rp:
        return _raw_from_handle(rp, path)


def read_bayer(path: str) -> Dict[str, object]:
    """Read a Bayer RAW file (ARW, DNG, NEF, CR2, ... anything LibRaw opens).

    Returns a dict:
      raw:     (H, W) uint16 visible mosaic, black not subtracted.
      pattern: str, colours of the 2x2 cell read row by row: 'RGGB', 'GRBG', 'GBRG' or 'BGGR'.
      black:   float, mean black level; ``black_per_site``: (2, 2) float32, per cell site.
      white:   float, saturation level.
      wb:      (3,) float32 as-shot white balance R, G, B normalised to G = 1.
    Raises :class:`DataError` for a missing / unreadable file or a non-Bayer sensor (X-Trans, ...).
    """
    rf = read_raw(path)
    if rf.cfa.shape != (2, 2) or sorted(rf.cfa.reshape(-1).tolist()) != [0, 1, 1, 2]:
        raise DataError(f"{path}: not a Bayer sensor (CFA {rf.cfa.shape[0]}x{rf.cfa.shape[1]} "
                        f"'{rf.pattern}'); X-Trans files need the Fuji configs")
    return {"raw": rf.mosaic, "pattern": rf.pattern, "black": float(rf.black.mean()),
            "black_per_site": rf.black.astype(np.float32), "white": rf.white, "wb": rf.wb}


def normalize_mosaic(mosaic: np.ndarray, black: Union[float, np.ndarray], white: float) -> np.ndarray:
    """``(float32(mosaic) - black) / float32(white - black)``: float32, about [-0.05, 1].

    Nothing is clipped: dark-current noise below the black level stays negative, exactly as
    the authors' loader gives it to the network (clipping it at 0 costs a model trained their
    way about 1.8 dB). ``black`` is a scalar or the (p, p) per-site cell, tiled over the mosaic;
    ``mosaic`` is (H, W) (or already packed (C, h, w) with ``black`` a scalar or (C, 1, 1)).
    """
    m = np.asarray(mosaic)
    b = np.asarray(black, dtype=np.float32)
    if b.ndim == 2 and m.ndim == 2:
        reps = (-(-m.shape[0] // b.shape[0]), -(-m.shape[1] // b.shape[1]))
        b = np.tile(b, reps)[:m.shape[0], :m.shape[1]]
    out = np.subtract(m, b, dtype=np.float32, order="C")
    out /= np.float32(white) - b
    return out


def render_srgb16(rp, path: str, user_flip: Optional[int] = None) -> np.ndarray:
    """LibRaw post-processing of an open rawpy handle of file ``path`` -> uint16 (H, W, 3).

    As the reference: ``use_camera_wb=True, half_size=False, no_auto_bright=True, output_bps=16``.
    An X-Trans DNG that LibRaw's default demosaic cannot handle is retried with LINEAR demosaic.
    ``user_flip=0`` ignores the file's orientation flag (the rendering stays aligned with the
    mosaic of a portrait photo); ``None`` leaves LibRaw's default, as the reference does.
    """
    kwargs = dict(use_camera_wb=True, half_size=False, no_auto_bright=True, output_bps=16)
    if user_flip is not None:
        kwargs["user_flip"] = int(user_flip)
    try:
        return rp.postprocess(**kwargs)
    except Exception as first:
        # A failed postprocess leaves the handle unusable: reopen the file for the retry.
        try:
            with rawpy.imread(path) as again:
                return again.postprocess(demosaic_algorithm=rawpy.DemosaicAlgorithm.LINEAR, **kwargs)
        except Exception:
            raise DataError(f"LibRaw cannot post-process {path}: {type(first).__name__}: {first}") from None


def read_raw_and_render(path: str):
    """(RawFile, uint16 (H, W, 3) sRGB rendering) of one file, opening it once."""
    with open_raw(path) as rp:
        rf = _raw_from_handle(rp, path)
        rgb = render_srgb16(rp, path)
    return rf, rgb
