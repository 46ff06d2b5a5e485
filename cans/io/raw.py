"""Reading camera RAW files through rawpy (LibRaw), with errors that name the file.

Public helpers (also used by ``scripts/infer.py``):

* :func:`check_raw_file(path)`: the start-up check of a RAW file (present, LibRaw reads its
  header, not truncated as far as its own directory tells: :func:`data_end`), without decoding.
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
import struct
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import tifffile

from ..errors import BadFileError, DataError

try:  # rawpy is a hard dependency of the project; keep the import error readable
    import rawpy
except ImportError as exc:  # pragma: no cover
    rawpy = None
    _RAWPY_ERROR = exc


def _need_rawpy():
    if rawpy is None:  # pragma: no cover
        raise DataError(f"reading RAW files needs rawpy (pip install rawpy): {_RAWPY_ERROR}")


COLOUR_LETTERS = "RGB"
#: file extensions of camera RAW files (lower case): what a folder of photos is searched for
RAW_EXTENSIONS = {".arw", ".dng", ".nef", ".nrw", ".cr2", ".cr3", ".crw", ".raf", ".orf", ".rw2", ".pef",
                  ".srw", ".kdc", ".dcr", ".dcs", ".mrw", ".3fr", ".erf", ".raw", ".rwl", ".iiq", ".srf",
                  ".sr2", ".mos", ".mef", ".x3f", ".k25", ".fff", ".rwz", ".ari", ".bay", ".cap"}


def raw_files_in(folder: str) -> List[str]:
    """The RAW files (by extension) directly in ``folder``, sorted by name; hidden files (macOS's
    ``._IMG_0001.ARW`` resource forks) and sub-folders are left out."""
    return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                  if not n.startswith(".") and os.path.splitext(n)[1].lower() in RAW_EXTENSIONS
                  and os.path.isfile(os.path.join(folder, n)))


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
    flip: LibRaw's orientation flag (``sizes.flip``: 0, 3, 5 or 6) that a viewer applies.
    """
    mosaic: np.ndarray
    cfa: np.ndarray
    black: np.ndarray
    white: float
    wb: np.ndarray
    path: str
    flip: int = 0

    @property
    def pattern(self) -> str:
        """Colour letters of the repeating cell, row by row ('RGGB' for an RGGB Bayer sensor)."""
        return "".join(COLOUR_LETTERS[c] for c in self.cfa.reshape(-1))


def open_raw(path: str):
    """``rawpy.imread(path)`` (LibRaw reads the header, not the pixels) after :func:`check_size`;
    :class:`DataError` for a missing file, :class:`BadFileError` for one that is there but cannot
    be used (empty, truncated, not a RAW format LibRaw knows)."""
    _need_rawpy()
    check_size(path)
    try:
        return rawpy.imread(path)
    except Exception as exc:  # LibRawFileUnsupportedError, LibRawIOError, ...
        raise BadFileError(f"cannot read RAW file {path}: {type(exc).__name__}: {exc} "
                           f"(unreadable, truncated or not a RAW format LibRaw knows)") from None


def check_raw_file(path: str) -> None:
    """The start-up check of one RAW file, without decoding it (about a millisecond): present,
    not empty, not shorter than its own directory says (:func:`data_end`), header readable by
    LibRaw. Raises as :func:`open_raw`. A file whose container :func:`data_end` does not read
    (neither TIFF-based nor a Fuji RAF), or whose damage lies inside its image data, passes and
    fails when a sample decodes it."""
    open_raw(path).close()


def check_size(path: str) -> None:
    """:class:`DataError` for a missing file; :class:`BadFileError` for an empty one or one that
    ends before its image data do (:func:`data_end`): an interrupted copy or download."""
    try:
        size = os.path.getsize(path)
    except OSError:
        size = None
    if size is None or not os.path.isfile(path):
        raise DataError(f"RAW file not found: {path}")
    if size == 0:
        raise BadFileError(f"RAW file is empty: {path}")
    end = data_end(path)
    if end is not None and end > size:
        raise BadFileError(f"cannot read RAW file {path}: truncated: {size:,} bytes, its own directory says at "
                           f"least {end:,} (an interrupted copy or download?)")


#: bytes per value of the TIFF field types
_TIFF_WIDTH = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}
_TIFF_UINT = {1: "B", 3: "H", 4: "I", 13: "I", 16: "Q"}
#: (offsets, byte counts) tags of image data: strips, tiles, JPEG streams (some formats' raw data)
_TIFF_DATA_TAGS = ((273, 279), (324, 325), (513, 514))
_TIFF_SUBIFDS = 330
_RAF_MAGIC = b"FUJIFILMCCD-RAW "


def data_end(path: str) -> Optional[int]:
    """The byte at which the image data of the RAW file ``path`` end, as the file's own directory
    says; None where this cannot be told without decoding.

    TIFF-based files (DNG, ARW, NEF, CR2, PEF, KDC, ...): the largest offset + byte count of the
    strips / tiles of every image directory (IFD0's chain and its SubIFDs), or the end of a
    directory itself; a Fuji RAF: the end of the preview, CFA header and CFA sections its header
    names. Reads a few kB. None for other containers (CR3, ORF, RW2, ...) and for directories this
    reader does not follow (BigTIFF, more than 64 directories or 4096 entries in one)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(108)
            if head.startswith(_RAF_MAGIC):
                if len(head) < 108:
                    return 108
                fields = struct.unpack(">6I", head[84:108])
                return max(off + n for off, n in zip(fields[::2], fields[1::2]))
            order = {b"II": "<", b"MM": ">"}.get(head[:2])
            if order is None or len(head) < 8 or struct.unpack(order + "H", head[2:4])[0] != 42:
                return None
            return _tiff_end(fh, order, struct.unpack(order + "I", head[4:8])[0])
    except (OSError, struct.error):
        return None


class _PastEnd(Exception):
    """A directory, or a list it points to, that lies beyond the end of the file (``args[0]``: its end)."""


def _tiff_end(fh, order: str, first: int) -> Optional[int]:
    """:func:`data_end` of a TIFF whose first directory is at ``first``."""
    def read(where: int, size: int) -> bytes:
        fh.seek(where)
        raw = fh.read(size)
        if len(raw) < size:
            raise _PastEnd(where + size)
        return raw

    def values(entry: bytes) -> Optional[list]:
        kind, n, value = struct.unpack(order + "HI4s", entry[2:])
        code = _TIFF_UINT.get(kind)
        if code is None or n > 1 << 20:
            return None
        size = _TIFF_WIDTH[kind] * n
        raw = value[:size] if size <= 4 else read(struct.unpack(order + "I", value)[0], size)
        return list(struct.unpack(order + code * n, raw))

    todo, seen, end = [first], set(), 0
    try:
        while todo:
            where = todo.pop()
            if where == 0 or where in seen:
                continue
            if len(seen) >= 64:
                return None
            seen.add(where)
            count = struct.unpack(order + "H", read(where, 2))[0]
            if count > 4096:
                return None
            body = read(where + 2, count * 12 + 4)
            entries = {struct.unpack(order + "H", body[i:i + 2])[0]: body[i:i + 12] for i in range(0, count * 12, 12)}
            for off_tag, len_tag in _TIFF_DATA_TAGS:
                if off_tag in entries and len_tag in entries:
                    offsets, lengths = values(entries[off_tag]), values(entries[len_tag])
                    if offsets is None or lengths is None:
                        return None
                    end = max([end] + [o + n for o, n in zip(offsets, lengths)])
            if _TIFF_SUBIFDS in entries:
                subs = values(entries[_TIFF_SUBIFDS])
                if subs is None:
                    return None
                todo.extend(subs)
            todo.append(struct.unpack(order + "I", body[-4:])[0])
    except _PastEnd as past:
        return max(end, past.args[0])
    return end


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
        pattern = rp.raw_pattern
        mosaic = np.array(rp.raw_image_visible, dtype=np.uint16, copy=True)
        if pattern is None or mosaic.ndim != 2:
            raise DataError(f"{path}: not a colour-filter-array sensor (no Bayer or X-Trans pattern, e.g. Foveon "
                            f"or a linear DNG); CANS needs a Bayer or X-Trans mosaic")
        p = np.asarray(pattern).shape[0]
        if p not in (2, 6) or np.asarray(pattern).shape != (p, p):
            raise DataError(f"{path}: unsupported colour filter layout of shape {np.asarray(pattern).shape} "
                            f"(expected a 2x2 Bayer or 6x6 X-Trans cell)")
        if mosaic.shape[0] < p or mosaic.shape[1] < p:
            raise DataError(f"{path}: image of {mosaic.shape} is smaller than one CFA cell")
        # The layout of the visible area itself, counted from its top-left site (robust to odd margins).
        cell = np.asarray(rp.raw_colors_visible)[:p, :p].astype(np.intp)
        desc = rp.color_desc
        letters = cfa_letters(cell, desc.decode("ascii", "replace") if isinstance(desc, bytes) else str(desc), path)
        cfa = np.zeros(cell.shape, dtype=np.uint8)
        for code, letter in enumerate(COLOUR_LETTERS):
            cfa[letters == letter] = code
        per_channel = np.asarray(rp.black_level_per_channel, dtype=np.float32)
        black = per_channel[cell] if per_channel.size > cell.max() else np.zeros((p, p), np.float32)
        white = float(rp.white_level)
        if not np.isfinite(white) or white <= float(black.max()):
            raise DataError(f"{path}: white level {white} is not above the black level {float(black.max())}")
        wb = _as_shot_wb(rp)
        try:
            flip = int(rp.sizes.flip)
        except Exception:
            flip = 0
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"cannot read RAW data of {path}: {type(exc).__name__}: {exc} "
                        f"(truncated or corrupt file?)") from None
    return RawFile(mosaic=mosaic, cfa=cfa, black=black, white=white, wb=wb, path=path, flip=flip)


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


@dataclass
class ShotInfo:
    """What a RAW file says about its shot, for a DNG written from it (``cans.io.dng``).

    make, model: the camera's names ('' when the file's container does not say);
    exposure (s), iso: 0 when not recorded; xyz_to_cam: (3, 3) XYZ -> camera matrix (D65) as
    LibRaw has it, or None when LibRaw has none for this camera; flip: LibRaw's orientation flag;
    size: (height, width) of the visible mosaic.
    """
    make: str
    model: str
    exposure: float
    iso: float
    xyz_to_cam: Optional[np.ndarray]
    flip: int
    size: Tuple[int, int] = (0, 0)


def _container_names(path: str) -> Tuple[str, str]:
    """(make, model) from a TIFF-based RAW's IFD 0 (ARW, NEF, CR2, DNG, PEF, KDC, ...) or a Fuji
    RAF header; ('', '') for anything else."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
        if head.startswith(_RAF_MAGIC):   # RAF: the camera's model name at byte 28, 32 bytes, NUL-padded
            return "FUJIFILM", head[28:60].split(b"\0")[0].decode("ascii", "replace").strip()
        with tifffile.TiffFile(path) as tf:
            tags = tf.pages[0].tags
            return tuple(str(tags[t].value).strip() if t in tags else "" for t in (271, 272))
    except Exception:
        return "", ""


#: LibRaw's linear sRGB (D65) -> XYZ matrix (``xyz_rgb``)
SRGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423],
                        [0.212671, 0.715160, 0.072169],
                        [0.019334, 0.119193, 0.950227]])


def _xyz_to_cam(rp) -> np.ndarray:
    """The XYZ -> camera matrix that LibRaw renders an open file with: the one that gives back its
    ``rgb_cam`` (``color_matrix``; rows normalised as LibRaw does), since a DNG's own ColorMatrix
    wins over LibRaw's table entry for the camera (``rgb_xyz_matrix``); zeros if there is none."""
    try:
        rgb_cam = np.asarray(rp.color_matrix, dtype=np.float64)[:3, :3]
        return np.linalg.inv(rgb_cam) @ np.linalg.inv(SRGB_TO_XYZ)
    except Exception:
        return np.zeros((3, 3))


def read_shot_info(path: str) -> ShotInfo:
    """The :class:`ShotInfo` of the RAW file ``path`` (raises as :func:`open_raw`)."""
    make, model = _container_names(path)
    with open_raw(path) as rp:
        exposure, iso, _ = shot_metadata(rp)
        matrix = _xyz_to_cam(rp)
        try:
            flip = int(rp.sizes.flip)
            size = (int(rp.sizes.height), int(rp.sizes.width))
        except Exception:
            flip, size = 0, (0, 0)
    usable = np.all(np.isfinite(matrix)) and abs(np.linalg.det(matrix)) > 1e-12
    return ShotInfo(make=make, model=model, exposure=exposure, iso=iso,
                    xyz_to_cam=matrix if usable else None, flip=flip, size=size)
