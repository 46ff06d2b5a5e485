"""List files: parsing SID and MCR lines, exposures and ratios from file names.

SID line: ``./Sony/short/10003_00_0.04s.ARW ./Sony/long/10003_00_10s.ARW ISO200 F9 [R G B]``
(the optional last three numbers: the long exposure's as-shot white balance, green = 1).
MCR line: ``raw_input raw_gt rgb_gt``.
Blank lines and lines starting with ``#`` are ignored. Errors name the file and line number.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from .errors import DataError

MAX_RATIO = 300.0
#: Sony test scenes dropped from the "new" test list (misaligned pairs).
MISALIGNED_SONY_SCENES = ("10034", "10045", "10172")

_EXPOSURE_RE = re.compile(r"^(\d+)_(\d+)_([0-9.]+)s$")


@dataclass
class PairEntry:
    """One line of a list file."""
    img_file: str                    # short exposure / noisy input, as written in the list
    lbl_file: str                    # long exposure / ground truth
    rgb_file: Optional[str] = None   # MCR only: the RGB ground truth
    extra: List[str] = field(default_factory=list)   # ISO, F-number, ... (kept for rewriting)
    wb: Optional[Tuple[float, float, float]] = None
    input_exposure: float = 0.0
    gt_exposure: float = 0.0
    source: str = ""                 # "file:line"
    max_ratio: Optional[float] = MAX_RATIO   # SID caps the ratio at 300; MCR does not (None)

    @property
    def ratio(self) -> float:
        ratio = self.gt_exposure / self.input_exposure
        return ratio if self.max_ratio is None else min(ratio, self.max_ratio)


def sid_name_parts(path: str) -> Tuple[str, str, float]:
    """``.../10003_00_0.04s.ARW`` -> ('10003', '00', 0.04): scene id, capture index, exposure in s."""
    stem = os.path.splitext(os.path.basename(path))[0]
    m = _EXPOSURE_RE.match(stem)
    if not m:
        raise ValueError(f"file name {os.path.basename(path)!r} is not <scene>_<capture>_<exposure>s.<ext>")
    exposure = float(m.group(3))
    if not exposure > 0:
        raise ValueError(f"file name {os.path.basename(path)!r} has a zero exposure")
    return m.group(1), m.group(2), exposure


def sid_ratio(short_path: str, long_path: str) -> float:
    """``min(long exposure / short exposure, 300)`` from the SID file names."""
    return min(sid_name_parts(long_path)[2] / sid_name_parts(short_path)[2], MAX_RATIO)


def _read_lines(path: str):
    if not os.path.isfile(path):
        raise DataError(f"list file not found: {path}")
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                # utf-8-sig on the first line: a byte-order mark (Windows editors) is not part of a path
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{number}: not UTF-8 text ({exc.reason} at byte {exc.start}): "
                                f"{raw[:120]!r}") from None
            text = line.strip()
            if text and not text.startswith("#"):
                yield number, text


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def parse_sid_list(path: str) -> List[PairEntry]:
    """Parse a SID list file; :class:`DataError` with ``file:line`` for a line that does not parse."""
    entries = []
    for number, text in _read_lines(path):
        where = f"{path}:{number}"
        tokens = text.split()
        if len(tokens) < 2:
            raise DataError(f"{where}: expected '<short RAW> <long RAW> [ISO F] [R G B]', got {text!r}")
        rest = tokens[2:]
        numeric_tail = 0
        while numeric_tail < len(rest) and _is_number(rest[len(rest) - 1 - numeric_tail]):
            numeric_tail += 1
        wb = None
        if numeric_tail == 3:
            wb = tuple(float(v) for v in rest[-3:])
            rest = rest[:-3]
            if not all(math.isfinite(v) and v > 0 for v in wb):
                raise DataError(f"{where}: white balance {wb} must be three positive finite numbers")
        elif numeric_tail:
            raise DataError(f"{where}: expected three white-balance numbers R G B at the end, "
                            f"got {numeric_tail}: {text!r}")
        try:
            _, _, in_exp = sid_name_parts(tokens[0])
            _, _, gt_exp = sid_name_parts(tokens[1])
        except ValueError as exc:
            raise DataError(f"{where}: {exc}") from None
        entries.append(PairEntry(tokens[0], tokens[1], extra=rest, wb=wb, input_exposure=in_exp,
                                 gt_exposure=gt_exp, source=where))
    return entries


def mcr_exposures(raw_input: str, raw_gt: str) -> Tuple[float, float]:
    """MCR exposures: input = hex number in the last 4 characters of the input's stem;
    ground truth = 12287 when the scene number (the 3 digits ending 20 characters before the
    end of the path) is below 500, else 1023."""
    stem = os.path.splitext(os.path.basename(raw_input))[0]
    try:
        in_exp = float(int(stem[-4:], 16))
    except ValueError:
        raise ValueError(f"{raw_input!r}: the last four characters of the name, {stem[-4:]!r}, "
                         f"are not a hexadecimal exposure") from None
    if in_exp <= 0:
        raise ValueError(f"{raw_input!r}: zero exposure")
    digits = raw_input[-23:-20]
    if len(digits) != 3 or not digits.isdigit():
        raise ValueError(f"{raw_input!r}: no 3-digit scene number 20 characters before the end")
    gt_exp = 12287.0 if int(digits) < 500 else 1023.0
    return in_exp, gt_exp


def parse_mcr_list(path: str) -> List[PairEntry]:
    """Parse an MCR list file (``raw_input raw_gt rgb_gt`` per line).

    The ratio is ``gt_exposure / input_exposure`` (docs/data.md), without SID's cap at 300."""
    entries = []
    for number, text in _read_lines(path):
        where = f"{path}:{number}"
        tokens = text.split()
        if len(tokens) != 3:
            raise DataError(f"{where}: expected '<raw input PNG> <raw gt PNG> <rgb gt PNG>', got {text!r}")
        try:
            in_exp, gt_exp = mcr_exposures(tokens[0], tokens[1])
        except ValueError as exc:
            raise DataError(f"{where}: {exc}") from None
        entries.append(PairEntry(tokens[0], tokens[1], rgb_file=tokens[2], input_exposure=in_exp,
                                 gt_exposure=gt_exp, source=where, max_ratio=None))
    return entries


def format_sid_line(entry: PairEntry, wb: Optional[Tuple[float, float, float]] = None) -> str:
    """A list line for ``entry`` with ``wb`` (or the entry's own) as the last three numbers."""
    wb = wb if wb is not None else entry.wb
    parts = [entry.img_file, entry.lbl_file] + list(entry.extra)
    if wb is not None:
        parts += [f"{v:.6f}" for v in wb]
    return " ".join(parts)


def keep_first_capture(entries: List[PairEntry]) -> List[PairEntry]:
    """``only_00``: the entries whose input is the first capture (``_00_``) of its scene."""
    out = []
    for e in entries:
        try:
            capture = sid_name_parts(e.img_file)[1]
        except ValueError:
            capture = "00" if "_00_" in os.path.basename(e.img_file) else "xx"
        if capture == "00":
            out.append(e)
    return out


def drop_scenes(entries: List[PairEntry], scenes=MISALIGNED_SONY_SCENES) -> List[PairEntry]:
    """Entries whose scene id is not in ``scenes`` (the "new" Sony test list drops the misaligned ones)."""
    scenes = set(scenes)
    return [e for e in entries if sid_name_parts(e.img_file)[0] not in scenes]
