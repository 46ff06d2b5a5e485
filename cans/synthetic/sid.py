"""A small SID look-alike made from scikit-image's colour photographs (no download; docs/data.md,
"Synthetic SID").

Each scene: a photograph taken back through the inverse ISP (:mod:`cans.synthetic.isp`), a 10 s
long exposure and short ones at ratios 100, 250, 300 with ELD's Sony A7S2 noise model
(:data:`cans.noise.model.NOISE`, in DN of the 14-bit raw above black), written as real DNG files
under SID's names with list files and caches, so both reading modes work. Deterministic for a
seed: scene ``i`` draws from generators seeded by ``(seed, i)``.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Callable, Dict, List

import numpy as np

from ..cfa import XTRANS_PATTERN
from ..data.cameras import CAMERAS, camera_spec
from ..data.errors import DataError
from ..data.prepare import prepare_sid
from ..io.dng import write_dng
from ..io.files import atomic_write_text
from ..noise.model import NOISE, sample_noise, to_digital
from .isp import SOURCE_IMAGES, camera_matrix, inverse_isp, make_scene

LONG_EXPOSURE = 10.0
#: (exposure in s, nominal ratio) of the three short captures of a scene.
SHORT_EXPOSURES = ((0.1, 100), (0.04, 250), (0.033, 300))
#: the file that marks a folder as a synthetic SID (its settings, as JSON)
MARKER = "synthetic_sid.json"


def split_of(n_scenes: int) -> List[str]:
    """Split of each scene: about 1/4 test, 1/8 validation (at least one each), the rest train."""
    if n_scenes < 3:
        raise DataError(f"synthetic SID: need at least 3 scenes (train, validation, test), got {n_scenes}")
    n_test = max(1, int(round(n_scenes / 4)))
    n_val = max(1, int(round(n_scenes / 8)))
    return ["train"] * (n_scenes - n_test - n_val) + ["test"] * n_test + ["val"] * n_val


def _long_file(camera: str, scene_id: str) -> str:
    return f"./{camera}/long/{scene_id}_00_{LONG_EXPOSURE:g}s{camera_spec(camera).raw_ext}"


def write_scene(out_dir: str, camera: str, index: int, scene_id: str, height: int, width: int,
                seed: int) -> List[str]:
    """Write the long and the three short DNGs of one scene; return the list lines (no white balance)."""
    spec = camera_spec(camera)
    rng = np.random.default_rng([seed, index, 2])
    srgb = make_scene(index, height, width, seed)
    neutral = np.array(spec.neutral) * np.array([rng.uniform(0.85, 1.15), 1.0, rng.uniform(0.85, 1.15)])
    gains = 1.0 / neutral
    level = rng.uniform(0.6, 0.9)
    clean = inverse_isp(srgb, camera, gains, level)
    black, white = spec.black, spec.white
    cfa = "RGGB" if spec.block_size == 2 else XTRANS_PATTERN
    cm = camera_matrix(camera)
    long_rel = _long_file(camera, scene_id)
    long_dn = to_digital(sample_noise(clean, rng, fit=NOISE, k=NOISE["k_min"], jitter=False), black, white)
    common = dict(cfa=cfa, black=black, white=white, as_shot_neutral=neutral, color_matrix=cm,
                  model=f"Synthetic {camera}")
    write_dng(os.path.join(out_dir, long_rel), long_dn, **common)
    lines = []
    # rotate the ratios so that the first capture (_00_) of the scenes covers all three
    order = [(index + k) % len(SHORT_EXPOSURES) for k in range(len(SHORT_EXPOSURES))]
    iso = {100: 800, 250: 3200, 300: 6400}
    for k, j in enumerate(order):
        exposure, nominal = SHORT_EXPOSURES[j]
        short_rel = f"./{camera}/short/{scene_id}_{k:02d}_{exposure:g}s{spec.raw_ext}"
        ratio = LONG_EXPOSURE / exposure
        short_dn = to_digital(sample_noise(clean / ratio, rng, fit=NOISE), black, white)  # K drawn first
        write_dng(os.path.join(out_dir, short_rel), short_dn, **common)
        lines.append(f"{short_rel} {long_rel} ISO{iso[nominal]} F8")
    return lines


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
    spec = CAMERAS[camera]
    height, width = height // spec.cell * spec.cell, width // spec.cell * spec.cell
    block = spec.block_size
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
            atomic_write_text(os.path.join(tmp, f"{camera}_{split}_list.txt"), "\n".join(lines) + "\n")
        summary = prepare_sid(tmp, camera, lists_dir=tmp, workers=workers, log=log, progress=progress,
                              display_path=out)
        if summary["failed"]:
            raise DataError(f"synthetic SID: {len(summary['failed'])} file(s) could not be prepared: "
                            + "; ".join(f"{k}: {v}" for k, v in sorted(summary["failed"].items())[:3]))
        info = {"synthetic": True, "camera": camera, "scenes": scenes, "seed": seed, "height": height,
                "width": width, "splits": {k: len(v) for k, v in lists.items()},
                "sources": list(SOURCE_IMAGES), "noise": NOISE, "long_exposure": LONG_EXPOSURE,
                "short_exposures": [list(x) for x in SHORT_EXPOSURES]}
        atomic_write_text(os.path.join(tmp, MARKER), json.dumps(info, indent=2) + "\n")
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


__all__ = ["LONG_EXPOSURE", "SHORT_EXPOSURES", "MARKER", "split_of", "write_scene", "make_synthetic_sid"]
