"""A synthetic "own camera" set for ``RawPairDataset`` / ``XTransPairDataset`` (docs/own_camera.md).

Made-up sensors unlike SID's cameras (another CFA phase, bit depth, black levels and colour
matrix), captures named as a camera names them with exposure time and ISO in the metadata, and
short exposures noised with :data:`cans.noise.model.NOISE` scaled to the camera's DN.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Callable, Dict, List

import numpy as np

from ..cfa import BAYER_RGGB, XTRANS_PATTERN, cfa_cell, mosaic_cell, phase_crop
from ..data.errors import DataError
from ..data.rawpair import packed_size, prepare_pairs
from ..io.dng import write_dng
from ..io.files import atomic_write_text
from ..noise.model import NOISE, sample_noise, to_digital
from .isp import camera_from_srgb_matrix, make_scene, srgb_to_linear
from .sid import split_of

#: The made-up camera of the own-camera example: GRBG phase, 12-bit, black level per site.
OWN_CAMERA = dict(cfa="GRBG", black=(254, 256, 258, 256), white=4095, neutral=(0.48, 1.0, 0.66),
                  # an XYZ -> camera matrix of another maker's sensor (x 1/10000), not the Sony one
                  matrix=[[10405, -3755, -1270], [-5461, 13787, 1793], [-1040, 2015, 6785]],
                  make="Example", model="Own Camera")
#: (exposure s, ISO) of the long capture and of the three short captures of a scene:
#: ratios (t_long * ISO_long) / (t_short * ISO_short) = 100, 200, 300.
OWN_LONG = (10.0, 100)
OWN_SHORTS = ((0.1, 100), (0.025, 200), (1.0 / 60.0, 200))

#: The made-up X-Trans camera of the own-camera example (``sensor="xtrans"``): the 6x6 X-Trans
#: layout at another phase than the SID Fuji one (the loader drops 1 row and 2 columns to reach
#: it), white level 15871, a black level that depends on the ISO (1024 at ISO 200, 1018 at ISO
#: 800: every file carries its own), another colour matrix.
OWN_XTRANS_CAMERA = dict(cfa=np.roll(XTRANS_PATTERN, (1, 2), axis=(0, 1)).tolist(), black={200: 1024, 800: 1018},
                         white=15871, neutral=(0.52, 1.0, 0.63),
                         matrix=[[12085, -4727, -953], [-3257, 11129, 2380], [-367, 1416, 5917]],
                         make="Example", model="Own X-Trans Camera")
#: (exposure s, ISO) of the long capture and (exposure s, ISO, ratio written in the list or None)
#: of the three short captures: ratios 100 and 250 from the exposure times; the third capture
#: was taken at ISO 800, so its list line gives the ratio (200; the exposure times alone say 800).
OWN_XTRANS_LONG = (10.0, 200)
OWN_XTRANS_SHORTS = ((0.1, 200, None), (0.04, 200, None), (0.0125, 800, 200))
#: sensor -> (camera, long capture, short captures)
OWN_SENSORS = {"bayer": (OWN_CAMERA, OWN_LONG, tuple((t, iso, None) for t, iso in OWN_SHORTS)),
               "xtrans": (OWN_XTRANS_CAMERA, OWN_XTRANS_LONG, OWN_XTRANS_SHORTS)}


def _own_black(cam: Dict[str, object], iso: int):
    """Black level(s) a capture at ``iso`` records: the camera's per-site tuple (Bayer), or its
    value for that ISO (X-Trans: ``black`` maps ISO -> one level)."""
    black = cam["black"]
    return black[iso] if isinstance(black, dict) else black


def write_own_camera_scene(out_dir: str, index: int, folder: str, first_number: int, height: int, width: int,
                           seed: int, sensor: str = "bayer") -> List[str]:
    """One scene of the own-camera set: a long DNG and three short DNGs named like a camera names
    them (``IMG_0001.DNG``...), exposure time and ISO in the metadata; returns the list lines
    ``short long [ratio]`` (the ratio only where :data:`OWN_XTRANS_SHORTS` gives one: otherwise the
    loader takes it from the metadata). ``sensor``: ``"bayer"`` (:data:`OWN_CAMERA`) or
    ``"xtrans"`` (:data:`OWN_XTRANS_CAMERA`)."""
    cam, (t_long, iso_long), shorts = OWN_SENSORS[sensor]
    rng = np.random.default_rng([seed, index, 3])
    srgb = make_scene(index + 3, height, width, seed + 1000)   # other crops than the synthetic SID
    neutral = np.array(cam["neutral"]) * np.array([rng.uniform(0.85, 1.15), 1.0, rng.uniform(0.85, 1.15)])
    cm = np.array(cam["matrix"]) / 10000.0
    linear = np.clip(srgb_to_linear(srgb) @ camera_from_srgb_matrix(cm).T, 0.0, None) * neutral
    cell = cfa_cell(cam["cfa"])   # (2, 2) from a Bayer string, (6, 6) from an X-Trans list of codes
    p = cell.shape[0]
    white = cam["white"]

    def black_map(iso: int):
        """(per-site black cell, black of every pixel (H, W)) of a capture at ``iso``."""
        blk = np.asarray(_own_black(cam, iso), dtype=np.float64)
        blk = np.full((p, p), float(blk)) if blk.size == 1 else blk.reshape(p, p)
        return blk, np.tile(blk, (height // p + 1, width // p + 1))[:height, :width]

    black_cell, black = black_map(iso_long)
    clean = mosaic_cell(linear, cell) * (white - black_cell.max()) * rng.uniform(0.6, 0.9)
    # the ELD noise model is in 14-bit digital numbers: scale the signal there and back
    to14 = 16383.0 / white
    common = dict(cfa=cell, white=white, as_shot_neutral=neutral, color_matrix=cm,
                  make=cam["make"], model=cam["model"])

    long_rel = f"{folder}/IMG_{first_number:04d}.DNG"
    long_dn = to_digital(sample_noise(clean * to14, rng, fit=NOISE, k=NOISE["k_min"], jitter=False) / to14, black,
                         white)
    write_dng(os.path.join(out_dir, long_rel), long_dn, exposure_time=t_long, iso=iso_long,
              black=_own_black(cam, iso_long), **common)
    lines = []
    for k, (t, iso, list_ratio) in enumerate(shorts):
        ratio = (t_long * iso_long) / (t * iso)
        short_dn = to_digital(sample_noise(clean * to14 / ratio, rng, fit=NOISE) / to14, black_map(iso)[1], white)
        short_rel = f"{folder}/IMG_{first_number + 1 + k:04d}.DNG"
        write_dng(os.path.join(out_dir, short_rel), short_dn, exposure_time=t, iso=iso,
                  black=_own_black(cam, iso), **common)
        lines.append(f"{short_rel} {long_rel}" + (f" {list_ratio:g}" if list_ratio is not None else ""))
    return lines


def make_own_camera_set(out: str, scenes: int = 8, seed: int = 0, height: int = 256, width: int = 384,
                        log: Callable[[str], None] = print, progress: bool = True, sensor: str = "bayer",
                        prepare: bool = True, min_packed: int = 49) -> Dict[str, object]:
    """Create a synthetic "own camera" set at ``out`` for ``RawPairDataset`` / ``XTransPairDataset``.

    ``sensor="bayer"`` (default): a Bayer sensor unlike SID's Sony: GRBG phase, 12-bit (white 4095),
    black level per CFA site (254/256/258/256), another colour matrix; short captures at ratios 100,
    200 and 300 only when the ISO is counted (:data:`OWN_LONG`, :data:`OWN_SHORTS`), so
    ``data.ratio_mode: exposure_iso``. ``sensor="xtrans"``: an X-Trans sensor (6x6 cell at another
    phase than SID's Fuji, white 15871, black 1024 at ISO 200 and 1018 at ISO 800,
    :data:`OWN_XTRANS_CAMERA`) for ``XTransPairDataset``, ratios 100 and 250 from the exposure
    times and one list line per scene with its ratio written (:data:`OWN_XTRANS_SHORTS`), so
    ``data.ratio_mode: exposure``.

    DNG files named ``scene_XX/IMG_NNNN.DNG`` with exposure time and ISO in the EXIF metadata; list
    files ``train_list.txt``, ``val_list.txt`` and ``test_list.txt`` (``short long [ratio]`` lines),
    split as :func:`split_of`; with ``prepare`` (default) the caches and ``raw_pairs.json`` written
    by :func:`cans.data.rawpair.prepare_pairs` (``prepare=False``: the files and lists only, as a
    user has them before ``scripts/prepare_pairs.py``). ``height`` x ``width``: sensor pixels
    (rounded down to even numbers for Bayer); the packed images must be at least ``min_packed``
    pixels a side (49: the smallest input of the paper's 4-level model). Built in a temporary
    folder and renamed into place.
    """
    from tqdm import tqdm

    if sensor not in OWN_SENSORS:
        raise DataError(f"own-camera set: sensor {sensor!r} is not one of {sorted(OWN_SENSORS)}")
    cam = OWN_SENSORS[sensor][0]
    if sensor == "bayer":
        height, width = height // 2 * 2, width // 2 * 2
        block, reference = 2, BAYER_RGGB
    else:
        block, reference = 3, XTRANS_PATTERN
    cy, cx = phase_crop(cfa_cell(cam["cfa"]), reference)
    packed = packed_size((height - cy, width - cx), block)
    if min(packed) < min_packed:
        raise DataError(f"own-camera set: {height}x{width} is too small; the packed image must be at least "
                        f"{min_packed} pixels a side ({height}x{width} packs to {packed[0]}x{packed[1]})")
    if os.path.isdir(out) and os.listdir(out):
        raise DataError(f"own-camera set: {out} exists and is not empty; remove it or choose another --out")
    splits = split_of(scenes)
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp_own_camera_", dir=parent)
    try:
        lists: Dict[str, List[str]] = {"train": [], "val": [], "test": []}
        for i, split in enumerate(tqdm(splits, desc="own-camera scenes", disable=not progress)):
            lists[split] += write_own_camera_scene(tmp, i, f"scene_{i + 1:02d}", 1 + 4 * i, height, width, seed,
                                                   sensor=sensor)
        names = []
        for split, lines in lists.items():
            names.append(f"{split}_list.txt")
            atomic_write_text(os.path.join(tmp, names[-1]), "\n".join(lines) + "\n")
        if prepare:
            summary = prepare_pairs(tmp, names, block_size=block, log=lambda m: None, progress=progress)
            if summary["failed"] or summary["bad_pairs"]:
                raise DataError(f"own-camera set: preparation failed: {summary['failed'] or summary['bad_pairs']}")
        long_, shorts = OWN_SENSORS[sensor][1:]
        info = {"synthetic": True, "own_camera": True, "scenes": scenes, "seed": seed, "height": height,
                "width": width, "splits": {k: len(v) for k, v in lists.items()},
                "camera": {k: ({str(i): b for i, b in v.items()} if isinstance(v, dict) else v)
                           for k, v in cam.items()}, "long": list(long_)}
        if sensor == "bayer":
            info["shorts"] = [list(x[:2]) for x in shorts]
        else:
            info["sensor"] = sensor
            info["shorts"] = [list(x) for x in shorts]
        atomic_write_text(os.path.join(tmp, "own_camera.json"), json.dumps(info, indent=2) + "\n")
        if os.path.isdir(out):
            os.rmdir(out)
        os.replace(tmp, out)
        kind = "GRBG" if sensor == "bayer" else "X-Trans"
        log(f"own-camera set at {out}: {sum(len(v) for v in lists.values())} pairs "
            f"({', '.join(f'{k} {len(v)}' for k, v in lists.items())}), {height}x{width} {kind} DNG files")
        return info
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


__all__ = ["OWN_CAMERA", "OWN_LONG", "OWN_SHORTS", "OWN_XTRANS_CAMERA", "OWN_XTRANS_LONG", "OWN_XTRANS_SHORTS",
           "OWN_SENSORS", "write_own_camera_scene", "make_own_camera_set"]
