"""Writing a CFA mosaic as a DNG that rawpy / LibRaw (and RAW editors) open.

:func:`write_dng` stores an uncompressed mosaic through ``tifffile`` with the DNG tags LibRaw needs
(CFA layout, black and white levels, a colour matrix, the as-shot neutral, orientation) and an EXIF
IFD with exposure time and ISO, which tifffile cannot write itself (:func:`_append_exif`).
"""
from __future__ import annotations

import io
import os
import struct
from fractions import Fraction
from typing import List, Optional, Sequence

import numpy as np
import tifffile

from ..cfa import cfa_cell
from .files import atomic_write_bytes
from .raw import SRGB_TO_XYZ

#: The Sony A7S2 (ILCE-7SM2) XYZ -> camera matrix (D65) as LibRaw has it, times 1/10000:
#: :func:`write_dng`'s default colour matrix.
A7S2_COLOR_MATRIX = ((5838, -1430, -246), (-3497, 11477, 2297), (-748, 1885, 5778))



def _rational(x: float, signed: bool) -> List[int]:
    f = Fraction(float(x)).limit_denominator(1_000_000)
    if not signed and f < 0:
        raise ValueError(f"unsigned rational cannot be negative: {x}")
    return [f.numerator, f.denominator]


_EXIF_PLACEHOLDER = 34666


def _append_exif(fh: io.BytesIO, exposure_time: Optional[float], iso: Optional[int]) -> None:
    """Append an EXIF IFD with ExposureTime / ISOSpeedRatings to the classic little-endian TIFF in
    ``fh`` and turn the placeholder tag of IFD 0 into the ExifIFD pointer to it."""
    fh.seek(0)
    with tifffile.TiffFile(fh) as tf:
        if tf.byteorder != "<" or tf.is_bigtiff:
            raise ValueError("write_dng: cannot add EXIF (not a little-endian classic TIFF)")
        value_offset = tf.pages[0].tags[_EXIF_PLACEHOLDER].valueoffset
    entries = []
    if exposure_time is not None:
        entries.append((33434, 5, _rational(exposure_time, False)))   # ExposureTime, RATIONAL
    if iso is not None:
        entries.append((34855, 3, int(iso)))                           # ISOSpeedRatings, SHORT
    fh.seek(0, 2)
    end = fh.tell()
    start = end + end % 2                      # IFDs start on a word boundary
    extra = start + 2 + 12 * len(entries) + 4  # where out-of-line values go
    ifd, tail = struct.pack("<H", len(entries)), b""
    for tag, kind, value in entries:
        if kind == 5:
            ifd += struct.pack("<HHII", tag, kind, 1, extra + len(tail))
            tail += struct.pack("<II", *value)
        else:
            ifd += struct.pack("<HHIHH", tag, kind, 1, value, 0)
    fh.write(b"\0" * (start - end) + ifd + struct.pack("<I", 0) + tail)
    fh.seek(value_offset - 8)                   # the 12-byte entry: tag, type, count, value
    fh.write(struct.pack("<HHII", 34665, 4, 1, start))


def write_dng(path: str, mosaic_uint16: np.ndarray, cfa="RGGB", black: int = 512, white: int = 16383,
              as_shot_neutral: Sequence[float] = (0.5, 1.0, 0.7),
              color_matrix: Optional[Sequence[Sequence[float]]] = None,
              make: str = "CANS", model: str = "Synthetic SID",
              exposure_time: Optional[float] = None, iso: Optional[int] = None, orientation: int = 1) -> None:
    """Write a mosaic as an uncompressed DNG that rawpy / LibRaw opens.

    mosaic_uint16: (H, W) integer array, digital numbers including the black level
        (values are clipped to [0, white] and stored as uint16).
    cfa: the colour of each site of the repeating cell, row by row: a 4-letter Bayer string
        ('RGGB', 'GRBG', 'GBRG', 'BGGR'), or a (p, p) array of colour codes 0 R / 1 G / 2 B
        (e.g. :data:`cans.cfa.XTRANS_PATTERN`, p = 6).
    black, white: BlackLevel and WhiteLevel tags; ``black`` is one number or, for a Bayer cell,
        four numbers (one per site of the 2x2 cell, row by row: BlackLevelRepeatDim 2x2).
    as_shot_neutral: (R, G, B) AsShotNeutral; rawpy's ``camera_whitebalance`` is its inverse.
    color_matrix: 3x3 XYZ -> camera matrix (ColorMatrix1, D65 = CalibrationIlluminant1 21);
        default :data:`A7S2_COLOR_MATRIX`.
    orientation: the TIFF Orientation tag (1 = as stored, 3 = 180 degrees, 6 = 90 clockwise, 8 = 90
        counter-clockwise): what a portrait photo carries (rawpy's ``sizes.flip``).
    exposure_time (seconds), iso: written to an EXIF IFD (ExposureTime, ISOSpeedRatings), where
        LibRaw reads them (rawpy's ``other.shutter_speed`` and ``other.iso_speed``); omitted if None.
    The file is written whole or not at all (``cans.io.files``). LibRaw refuses images smaller than
    22 pixels a side, so smaller mosaics raise ValueError here.
    """
    mosaic = np.asarray(mosaic_uint16)
    if mosaic.ndim != 2:
        raise ValueError(f"write_dng: expected a (H, W) mosaic, got shape {mosaic.shape}")
    if min(mosaic.shape) < 22:
        raise ValueError(f"write_dng: mosaic {mosaic.shape} is too small; LibRaw needs at least 22 pixels a side")
    try:
        cell = cfa_cell(cfa)
    except ValueError as exc:
        raise ValueError(f"write_dng: {exc}") from None
    if color_matrix is None:
        color_matrix = np.array(A7S2_COLOR_MATRIX, dtype=np.float64) / 10000.0
    cm = np.asarray(color_matrix, dtype=np.float64).reshape(9)
    neutral = np.asarray(as_shot_neutral, dtype=np.float64).reshape(3)
    data = np.clip(mosaic, 0, white).astype(np.uint16)
    blacks = [int(v) for v in np.asarray(black).reshape(-1)]
    if len(blacks) not in (1, 4) or (len(blacks) == 4 and cell.shape != (2, 2)):
        raise ValueError(f"write_dng: black must be one number, or four (one per site of a 2x2 Bayer cell); "
                         f"got {black!r}")
    if exposure_time is not None and not exposure_time > 0:
        raise ValueError(f"write_dng: exposure_time must be positive seconds, got {exposure_time!r}")
    if iso is not None and not 0 < int(iso) < 65536:
        raise ValueError(f"write_dng: iso must be in 1..65535, got {iso!r}")
    srat: List[int] = []
    for v in cm:
        srat += _rational(v, True)
    urat: List[int] = []
    for v in neutral:
        urat += _rational(v, False)
    p = cell.shape[0]
    tags = [
        (271, "s", 0, make, True),                              # Make
        (272, "s", 0, model, True),                             # Model
        (33421, "H", 2, (p, p), True),                          # CFARepeatPatternDim
        (33422, "B", p * p, tuple(int(v) for v in cell.reshape(-1)), True),  # CFAPattern
        (50706, "B", 4, (1, 4, 0, 0), True),                    # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),                    # DNGBackwardVersion
        (50708, "s", 0, f"{make} {model}", True),               # UniqueCameraModel
        (50710, "B", 3, (0, 1, 2), True),                       # CFAPlaneColor
        (50711, "H", 1, (1,), True),                            # CFALayout rectangular
        (50714, "H", len(blacks), tuple(blacks), True),         # BlackLevel
        (50717, "H", 1, (int(white),), True),                   # WhiteLevel
        (50721, "2i", 9, tuple(srat), True),                    # ColorMatrix1
        (50778, "H", 1, (21,), True),                           # CalibrationIlluminant1 = D65
        (50728, "2I", 3, tuple(urat), True),                    # AsShotNeutral
    ]
    if len(blacks) == 4:
        tags.append((50713, "H", 2, (2, 2), True))              # BlackLevelRepeatDim
    if orientation != 1:
        if orientation not in (3, 6, 8):
            raise ValueError(f"write_dng: orientation must be 1, 3, 6 or 8, got {orientation!r}")
        tags.append((274, "H", 1, (int(orientation),), True))   # Orientation
    exif = exposure_time is not None or iso is not None
    if exif:
        # tifffile does not write the ExifIFD pointer (34665): a placeholder tag takes its place
        # in the tag order and is patched once the EXIF IFD is appended (_append_exif).
        tags.append((_EXIF_PLACEHOLDER, "I", 1, (0,), True))
    buf = io.BytesIO()
    tifffile.imwrite(buf, data, photometric=32803, subfiletype=0, extratags=tags)
    if exif:
        _append_exif(buf, exposure_time, iso)
    atomic_write_bytes(buf.getvalue(), path, what=f"DNG {os.path.basename(path)}", durable=False)


#: LibRaw's orientation flag (``sizes.flip``) -> the TIFF Orientation tag that asks for the same turn
FLIP_TO_ORIENTATION = {0: 1, 3: 3, 5: 8, 6: 6}


def output_levels(black: np.ndarray, white: float) -> tuple:
    """The black level(s) a DNG of a network output is written at: the input's four per-site levels
    for a Bayer cell, else one level (the cell's mean, rounded; X-Trans cameras have one), and the
    input's white level."""
    black = np.asarray(black, dtype=np.float64)
    if black.shape == (2, 2):
        return tuple(int(round(v)) for v in black.reshape(-1)), int(round(white))
    return (int(round(float(black.mean()))),), int(round(white))


def to_digital(mosaic: np.ndarray, cfa: np.ndarray, black: Sequence[int], white: int) -> np.ndarray:
    """A normalised mosaic (0 = black, 1 = white; above 1 clips) -> uint16 DN at the levels
    ``black`` (one, or four per site of a 2x2 ``cfa`` cell) and ``white``."""
    h, w = mosaic.shape
    levels = np.asarray(black, dtype=np.float64)
    if levels.size == 4:
        p = np.asarray(cfa).shape[0]
        levels = np.tile(levels.reshape(2, 2), (-(-h // p), -(-w // p)))[:h, :w]
    dn = np.asarray(mosaic, dtype=np.float64) * (float(white) - levels) + levels
    return np.clip(np.round(dn), 0, white).astype(np.uint16)


def write_output_dng(path: str, mosaic: np.ndarray, cfa: np.ndarray, black: np.ndarray, white: float,
                     wb: np.ndarray, info) -> str:
    """Write a network's RAW output as a CFA DNG for RAW editors: ``mosaic`` (H, W) float32 in the
    input's normalised units (0 black, 1 white, at the amplified exposure), laid out as the input's
    visible area (``cfa``: its (p, p) cell, p = 2 Bayer or 6 X-Trans); ``black`` (p, p) and
    ``white``: the input's levels (:func:`output_levels` says which are written); ``wb``: (3,)
    as-shot gains (AsShotNeutral = 1 / wb); ``info``: the input's ``cans.io.raw.ShotInfo`` (camera
    names, exposure, ISO, colour matrix, orientation). Returns ``path``."""
    levels, white_dn = output_levels(black, white)
    # a camera without a colour matrix is written as if its primaries were sRGB's (the DNG still renders)
    matrix = info.xyz_to_cam if info.xyz_to_cam is not None else np.linalg.inv(SRGB_TO_XYZ)
    wb = np.asarray(wb, dtype=np.float64)
    neutral = 1.0 / wb if np.all(np.isfinite(wb)) and np.all(wb > 0) else np.ones(3)
    write_dng(path, to_digital(mosaic, cfa, levels, white_dn), cfa=np.asarray(cfa, dtype=np.uint8),
              black=levels if len(levels) == 4 else levels[0], white=white_dn, as_shot_neutral=tuple(neutral),
              color_matrix=matrix, make=info.make or "Unknown", model=info.model or "camera",
              exposure_time=info.exposure if info.exposure > 0 else None,
              iso=int(round(info.iso)) if 0 < info.iso < 65536 else None,
              orientation=FLIP_TO_ORIENTATION.get(int(info.flip), 1))
    return path
