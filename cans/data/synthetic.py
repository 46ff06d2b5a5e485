"""A small SID look-alike made from scikit-image's colour photographs (no download; docs/data.md,
"Synthetic SID").

Each scene: a photograph of :data:`SOURCE_IMAGES` taken back through an inverse ISP (LibRaw's camera
matrix, :func:`camera_from_srgb_matrix`; as-shot white balance; RGGB or X-Trans mosaic), a 10 s long
exposure and short ones at ratios 100, 250, 300 with ELD's Sony A7S2 noise model (:data:`NOISE`, in
DN of the 14-bit raw above black; :func:`add_noise`), written as real DNG files (:func:`write_dng`)
under SID's names with list files and caches, so both reading modes work. Deterministic for a seed:
scene ``i`` draws from generators seeded by ``(seed, i)``. Also the own-camera and calibration
stand-ins the tests and examples use (:func:`make_own_camera_set`, :func:`make_own_camera_calibration`).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Callable, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from ..cfa import BAYER_RGGB, XTRANS_PATTERN, cfa_cell, mosaic_bayer, mosaic_cell, mosaic_xtrans, phase_crop
from ..io.dng import A7S2_COLOR_MATRIX, write_dng
from ..io.files import atomic_write_text
from .calibration import tukey_noise
from .errors import DataError
from .prepare import prepare_sid
from .rawpair import packed_size, prepare_pairs

SOURCE_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
                 "immunohistochemistry", "retina", "colorwheel")

#: XYZ -> camera matrices (D65) as LibRaw has them, times 1/10000.
CAMERA_MATRICES = {
    "Sony": [list(row) for row in A7S2_COLOR_MATRIX],                              # ILCE-7SM2
    "Fuji": [[11434, -4948, -1210], [-3746, 12042, 1903], [-666, 1479, 5235]],    # X-T2 / X-Pro2
}
#: LibRaw's linear sRGB (D65) -> XYZ matrix.
SRGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423],
                        [0.212671, 0.715160, 0.072169],
                        [0.019334, 0.119193, 0.950227]])

CAMERAS = {
    # black, white, CFA folder/extension, typical as-shot neutral (1 / WB gains)
    "Sony": dict(black=512, white=16383, ext=".ARW", neutral=(0.45, 1.0, 0.62), multiple=2),
    "Fuji": dict(black=1024, white=16383, ext=".RAF", neutral=(0.50, 1.0, 0.60), multiple=6),
}

NOISE = dict(k_min=0.0939, k_max=6.0106,
             read_slope=0.5407, read_bias=1.2182, read_jitter=0.2675,
             row_slope=0.5275, row_bias=-0.5917, row_jitter=0.2943)

LONG_EXPOSURE = 10.0
#: (exposure in s, nominal ratio) of the three short captures of a scene.
SHORT_EXPOSURES = ((0.1, 100), (0.04, 250), (0.033, 300))


# ---------------------------------------------------------------------------------------
# Inverse ISP and noise
# ---------------------------------------------------------------------------------------

def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """Inverse sRGB curve, values in [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def camera_from_srgb_matrix(xyz_to_cam) -> np.ndarray:
    """3x3 linear sRGB -> camera RGB, LibRaw's construction (rows sum to 1: white stays white)."""
    cam_rgb = np.asarray(xyz_to_cam, dtype=np.float64) @ SRGB_TO_XYZ
    return cam_rgb / cam_rgb.sum(axis=1, keepdims=True)


def inverse_isp(srgb: np.ndarray, camera: str, wb_gains: Sequence[float], level: float) -> np.ndarray:
    """sRGB (H, W, 3) in [0, 1] -> clean mosaic (H, W) in digital numbers above black (float64).

    ``wb_gains`` are the (R, G, B) gains the camera will report (1 / AsShotNeutral);
    ``level`` is the fraction of (white - black) that a white pixel reaches.
    """
    spec = CAMERAS[camera]
    m = camera_from_srgb_matrix(np.array(CAMERA_MATRICES[camera]) / 10000.0)
    cam = np.clip(srgb_to_linear(srgb) @ m.T, 0.0, None) / np.asarray(wb_gains, dtype=np.float64)
    mosaic = mosaic_bayer(cam) if camera == "Sony" else mosaic_xtrans(cam)
    return mosaic * (spec["white"] - spec["black"]) * level


def add_noise(signal: np.ndarray, k: float, rng: np.random.Generator, jitter: bool = True) -> np.ndarray:
    """ELD low-light noise on a clean signal in DN above black (float64), gain ``k``: shot noise
    ``k * Poisson(signal / k)``, Gaussian read noise ``log(sigma) = read_slope * log(k) + read_bias +
    N(0, read_jitter)``, row noise (one value per row) of the ``row_*`` form, uniform quantisation
    noise in [-0.5, 0.5]. ``jitter=False`` drops the N(0, jitter) terms (the long exposure: k_min)."""
    n = NOISE
    logk = np.log(k)
    shot = k * rng.poisson(np.maximum(signal, 0.0) / k)
    log_read = n["read_slope"] * logk + n["read_bias"] + (rng.normal(0, n["read_jitter"]) if jitter else 0.0)
    log_row = n["row_slope"] * logk + n["row_bias"] + (rng.normal(0, n["row_jitter"]) if jitter else 0.0)
    read = rng.normal(0.0, np.exp(log_read), signal.shape)
    row = rng.normal(0.0, np.exp(log_row), (signal.shape[0], 1))
    quant = rng.uniform(-0.5, 0.5, signal.shape)
    return shot + read + row + quant


def to_digital(noisy: np.ndarray, black, white: int) -> np.ndarray:
    """Noisy DN above black -> stored uint16 values (rounded, + black, clipped to [0, white]);
    ``black`` a number or an array that broadcasts against ``noisy`` (a black level per site)."""
    return np.clip(np.round(noisy + black), 0, white).astype(np.uint16)


def _source_image(name: str) -> np.ndarray:
    import skimage.data
    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return img[..., :3].astype(np.float64) / 255.0


def make_scene(index: int, height: int, width: int, seed: int) -> np.ndarray:
    """Clean sRGB scene ``index`` (H, W, 3) in [0, 1]: a random zoom / crop / flip of a source image."""
    from skimage.transform import resize
    rng = np.random.default_rng([seed, index, 1])
    src = _source_image(SOURCE_IMAGES[index % len(SOURCE_IMAGES)])
    zoom = 1.0 if index < len(SOURCE_IMAGES) else rng.uniform(1.0, 1.6)
    scale = max(height / src.shape[0], width / src.shape[1]) * zoom
    rh, rw = max(height, int(round(src.shape[0] * scale))), max(width, int(round(src.shape[1] * scale)))
    img = resize(src, (rh, rw), order=1, anti_aliasing=scale < 1, mode="reflect")
    y0 = int(rng.integers(0, rh - height + 1))
    x0 = int(rng.integers(0, rw - width + 1))
    img = img[y0:y0 + height, x0:x0 + width]
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return np.clip(img, 0.0, 1.0)


# ---------------------------------------------------------------------------------------
# The data set
# ---------------------------------------------------------------------------------------

def split_of(n_scenes: int) -> List[str]:
    """Split of each scene: about 1/4 test, 1/8 validation (at least one each), the rest train."""
    if n_scenes < 3:
        raise DataError(f"synthetic SID: need at least 3 scenes (train, validation, test), got {n_scenes}")
    n_test = max(1, int(round(n_scenes / 4)))
    n_val = max(1, int(round(n_scenes / 8)))
    return ["train"] * (n_scenes - n_test - n_val) + ["test"] * n_test + ["val"] * n_val


def _long_file(camera: str, scene_id: str) -> str:
    return f"./{camera}/long/{scene_id}_00_{LONG_EXPOSURE:g}s{CAMERAS[camera]['ext']}"


def write_scene(out_dir: str, camera: str, index: int, scene_id: str, height: int, width: int,
                seed: int) -> List[str]:
    """Write the long and the three short DNGs of one scene; return the list lines (no white balance)."""
    spec = CAMERAS[camera]
    rng = np.random.default_rng([seed, index, 2])
    srgb = make_scene(index, height, width, seed)
    neutral = np.array(spec["neutral"]) * np.array([rng.uniform(0.85, 1.15), 1.0, rng.uniform(0.85, 1.15)])
    gains = 1.0 / neutral
    level = rng.uniform(0.6, 0.9)
    clean = inverse_isp(srgb, camera, gains, level)
    black, white = spec["black"], spec["white"]
    cfa = "RGGB" if camera == "Sony" else XTRANS_PATTERN
    cm = np.array(CAMERA_MATRICES[camera]) / 10000.0
    long_rel = _long_file(camera, scene_id)
    long_dn = to_digital(add_noise(clean, NOISE["k_min"], rng, jitter=False), black, white)
    common = dict(cfa=cfa, black=black, white=white, as_shot_neutral=neutral, color_matrix=cm,
                  model=f"Synthetic {camera}")
    write_dng(os.path.join(out_dir, long_rel), long_dn, **common)
    lines = []
    # rotate the ratios so that the first capture (_00_) of the scenes covers all three
    order = [(index + k) % len(SHORT_EXPOSURES) for k in range(len(SHORT_EXPOSURES))]
    iso = {100: 800, 250: 3200, 300: 6400}
    for k, j in enumerate(order):
        exposure, nominal = SHORT_EXPOSURES[j]
        short_rel = f"./{camera}/short/{scene_id}_{k:02d}_{exposure:g}s{spec['ext']}"
        ratio = LONG_EXPOSURE / exposure
        k_gain = float(np.exp(rng.uniform(np.log(NOISE["k_min"]), np.log(NOISE["k_max"]))))
        short_dn = to_digital(add_noise(clean / ratio, k_gain, rng), black, white)
        write_dng(os.path.join(out_dir, short_rel), short_dn, **common)
        lines.append(f"{short_rel} {long_rel} ISO{iso[nominal]} F8")
    return lines


def _write_text(path: str, text: str) -> None:
    atomic_write_text(path, text)


#: the file that marks a folder as a synthetic SID (its settings, as JSON)
MARKER = "synthetic_sid.json"


def make_synthetic_sid(out: str, camera: str = "Sony", scenes: int = 8, seed: int = 0,
                       height: int = 384, width: int = 576, workers: int = 0,
                       log: Callable[[str], None] = print, progress: bool = True,
                       overwrite: bool = False) -> Dict[str, object]:
    """Create a synthetic SID at ``out`` (DNG files, list files, caches); return a summary dict.

    The set is built in a temporary folder next to ``out`` and renamed into place at the end,
    so an interrupted run leaves nothing half-made; ``out`` must not exist yet (or be empty),
    or, with ``overwrite``, hold a synthetic set (``synthetic_sid.json``), which is replaced.
    height, width: Bayer pixels (rounded down to multiples of 6 for the Fuji look-alike);
    the packed images (h/2 or h/3 a side) must be at least 49 pixels for the model.
    """
    from tqdm import tqdm


    if camera not in CAMERAS:
        raise DataError(f"synthetic SID: camera {camera!r} is not one of {sorted(CAMERAS)}")
    mult = CAMERAS[camera]["multiple"]
    height, width = height // mult * mult, width // mult * mult
    block = 2 if camera == "Sony" else 3
    if min(height, width) // block < 49:
        raise DataError(f"synthetic SID: {height}x{width} is too small; the packed image must be at "
                        f"least 49 pixels a side ({49 * block} Bayer pixels)")
    replace = False
    if os.path.exists(out) and not os.path.isdir(out):
        raise DataError(f"synthetic SID: {os.path.abspath(out)} exists and is not a folder; choose another --out")
    if os.path.isdir(out) and os.listdir(out):
        made_here = os.path.isfile(os.path.join(out, MARKER))
        if not (overwrite and made_here):
            raise DataError(f"synthetic SID: {os.path.abspath(out)} exists and is not empty; "
                            + ("add --overwrite to replace this synthetic set, " if made_here else "remove it ")
                            + "or choose another --out")
        replace = True
    splits = split_of(scenes)
    parent = os.path.dirname(os.path.abspath(out))
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp_synthetic_", dir=parent)
    except OSError as exc:
        raise DataError(f"synthetic SID: cannot create a folder in {parent} ({exc.strerror or exc}); "
                        f"choose another --out") from None
    try:
        counters = {"train": 0, "test": 0, "val": 0}
        prefix = {"train": 0, "test": 1, "val": 2}
        jobs = []
        for i, split in enumerate(splits):
            counters[split] += 1
            jobs.append((i, split, f"{prefix[split]}{counters[split]:04d}"))
        lists: Dict[str, List[str]] = {"train": [], "test": [], "val": []}
        it = tqdm(jobs, desc=f"synthetic {camera} scenes", disable=not progress)
        for i, split, sid in it:
            lists[split] += write_scene(tmp, camera, i, sid, height, width, seed)
        for split, lines in lists.items():
            _write_text(os.path.join(tmp, f"{camera}_{split}_list.txt"), "\n".join(lines) + "\n")
        summary = prepare_sid(tmp, camera, lists_dir=tmp, workers=workers, log=log, progress=progress,
                              display_path=out)
        if summary["failed"]:
            raise DataError(f"synthetic SID: {len(summary['failed'])} file(s) could not be prepared: "
                            + "; ".join(f"{k}: {v}" for k, v in sorted(summary["failed"].items())[:3]))
        info = {"synthetic": True, "camera": camera, "scenes": scenes, "seed": seed, "height": height,
                "width": width, "splits": {k: len(v) for k, v in lists.items()},
                "sources": list(SOURCE_IMAGES), "noise": NOISE, "long_exposure": LONG_EXPOSURE,
                "short_exposures": [list(x) for x in SHORT_EXPOSURES]}
        _write_text(os.path.join(tmp, MARKER), json.dumps(info, indent=2) + "\n")
        if replace:  # an older synthetic set (overwrite): out of the way first, deleted once the new one is in
            old = tempfile.mkdtemp(prefix=".old_synthetic_", dir=parent)
            os.replace(out, os.path.join(old, "set"))
            try:
                os.replace(tmp, out)
            finally:
                shutil.rmtree(old, ignore_errors=True)
        elif os.path.isdir(out):
            os.rmdir(out)  # empty (checked above)
        try:
            if not replace:
                os.replace(tmp, out)
        except OSError:
            if not os.path.isfile(os.path.join(out, MARKER)):
                raise
            # another process (e.g. another DDP rank) finished first: keep its copy
            shutil.rmtree(tmp, ignore_errors=True)
        info["prepare"] = summary
        return info
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------------------
# A synthetic "own camera" set for RawPairDataset (docs/own_camera.md)
# ---------------------------------------------------------------------------------------

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
    long_dn = to_digital(add_noise(clean * to14, NOISE["k_min"], rng, jitter=False) / to14, black, white)
    write_dng(os.path.join(out_dir, long_rel), long_dn, exposure_time=t_long, iso=iso_long,
              black=_own_black(cam, iso_long), **common)
    lines = []
    for k, (t, iso, list_ratio) in enumerate(shorts):
        ratio = (t_long * iso_long) / (t * iso)
        k_gain = float(np.exp(rng.uniform(np.log(NOISE["k_min"]), np.log(NOISE["k_max"]))))
        short_dn = to_digital(add_noise(clean * to14 / ratio, k_gain, rng) / to14, black_map(iso)[1], white)
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
            _write_text(os.path.join(tmp, names[-1]), "\n".join(lines) + "\n")
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
        _write_text(os.path.join(tmp, "own_camera.json"), json.dumps(info, indent=2) + "\n")
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


# ---------------------------------------------------------------------------------------
# Calibration frames of the own camera (the calibrated-noise example, docs/noise_calibration.md)
# ---------------------------------------------------------------------------------------

#: ISO -> system gain K in :data:`NOISE`'s 14-bit DN of the own camera's simulated calibration
#: frames: four gains over the upper part of NOISE's K range (below 0.3 the 12-bit camera's read
#: noise is under one DN, too coarse to measure).
OWN_CALIBRATION_K = {400: 0.375, 800: 0.75, 1600: 1.5, 6400: 6.0}


def own_camera_noise_params(k14: float) -> Dict[str, float]:
    """The noise of :data:`OWN_CAMERA` at system gain ``k14`` (14-bit DN per electron), in the
    camera's own 12-bit DN as :func:`simulate_frame` takes it: the median
    of :func:`add_noise`'s model (no jitter), scaled by ``white / 16383`` as
    :func:`write_own_camera_scene` scales it; Gaussian read noise is Tukey lambda 0.14."""
    n, back = NOISE, OWN_CAMERA["white"] / 16383.0
    log_k = float(np.log(k14))
    return {"K": k14 * back, "read_sigma": float(np.exp(n["read_slope"] * log_k + n["read_bias"])) * back,
            "row_sigma": float(np.exp(n["row_slope"] * log_k + n["row_bias"])) * back,
            "read_lambda": 0.14, "black_bias": 0.0}


def make_own_camera_calibration(out: str, height: int = 64, width: int = 96, seed: int = 0):
    """Simulated dark and flat DNG frames of :data:`OWN_CAMERA` at the ISOs of
    :data:`OWN_CALIBRATION_K` (:func:`simulate_calibration_set`): returns the
    (dark, flat) folders under ``out``, the input of ``scripts/calibrate_noise.py``."""

    cam = OWN_CAMERA
    params = {iso: own_camera_noise_params(k) for iso, k in OWN_CALIBRATION_K.items()}
    return simulate_calibration_set(out, params, height=height, width=width, cfa=cam["cfa"], black=cam["black"],
                                    white=cam["white"], seed=seed, make=cam["make"], model=cam["model"],
                                    color_matrix=np.array(cam["matrix"]) / 10000.0)


def simulate_frame(rng: np.random.Generator, signal: np.ndarray, params: Mapping[str, float],
                   black, white: int) -> np.ndarray:
    """One frame as a camera stores it: uint16 (H, W) of the clean ``signal`` (DN above black,
    (H, W) float) under the module's noise model with ``params`` (K, read_sigma, read_lambda,
    row_sigma, black_bias), plus the per-site ``black`` (a number or (2, 2)), rounded and clipped."""
    h, w = signal.shape
    k = float(params["K"])
    x = k * rng.poisson(np.maximum(signal, 0.0) / k)
    x = x + tukey_noise(rng, float(params["read_lambda"]), float(params["read_sigma"]), (h, w))
    x = x + rng.normal(0.0, float(params["row_sigma"]), (h, 1)) + float(params.get("black_bias", 0.0))
    blk = np.asarray(black, dtype=np.float64)
    if blk.size == 4:
        blk = np.tile(blk.reshape(2, 2), (h // 2 + 1, w // 2 + 1))[:h, :w]
    return np.clip(np.round(x + blk), 0, white).astype(np.uint16)


def simulate_calibration_set(out: str, params: Mapping[int, Mapping[str, float]], height: int = 64,
                             width: int = 96, dark_frames: int = 8, flat_times: Sequence[float] = (
                                 0.01, 0.02, 0.04, 0.08, 0.16, 0.32), flat_frames: int = 2,
                             full_time: float = 0.25, cfa: str = "RGGB", black=(510, 512, 514, 512),
                             white: int = 16383, site_gain: Sequence[float] = (0.55, 1.0, 1.0, 0.7),
                             seed: int = 0, **dng) -> Tuple[str, str]:
    """Write simulated dark and flat DNG frames of a camera with known noise ``params`` (ISO ->
    K, read_sigma, read_lambda, row_sigma, black_bias) to ``out/dark`` and ``out/flat``; returns
    the two folders.

    Flats: a uniform field with a gentle illumination gradient (+-5 %) and a fixed 1 % per-pixel
    response pattern, brightness per CFA site ``site_gain`` times ``t / full_time`` of
    ``white - black`` (so times above ``full_time`` clip the brightest site). ``dng``: extra
    arguments of :func:`write_dng` (e.g. ``make``, ``color_matrix``)."""
    dark_dir, flat_dir = os.path.join(out, "dark"), os.path.join(out, "flat")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    field_ = 1.0 + 0.05 * (xx / width - 0.5) + 0.03 * (yy / height - 0.5)
    prnu = 1.0 + 0.01 * rng.standard_normal((height, width))
    gains = np.tile(np.asarray(site_gain, dtype=np.float64).reshape(2, 2), (height // 2 + 1, width // 2 + 1))
    base = field_ * prnu * gains[:height, :width] * (white - max(np.asarray(black).reshape(-1)))
    for iso, p in sorted(params.items()):
        for i in range(dark_frames):
            frame = simulate_frame(rng, np.zeros((height, width)), p, black, white)
            write_dng(os.path.join(dark_dir, f"dark_iso{iso}_{i:02d}.dng"), frame, cfa=cfa, black=black,
                      white=white, iso=iso, exposure_time=1 / 125, **dng)
        for t in flat_times:
            for i in range(flat_frames):
                frame = simulate_frame(rng, base * (t / full_time), p, black, white)
                write_dng(os.path.join(flat_dir, f"flat_iso{iso}_{t:g}s_{i:02d}.dng"), frame, cfa=cfa,
                          black=black, white=white, iso=iso, exposure_time=t, **dng)
    return dark_dir, flat_dir
