"""A still scene filmed in the dark: the same clean exposure with fresh noise in every frame.

What ``infer.py --video --steady`` is measured on (``scripts/flicker_table.py``, docs/inference.md):
the scene does not move and the light does not change, so every frame-to-frame change of the
output's colour is the noise's doing. One synthetic SID scene (:mod:`cans.synthetic.isp`), at
one exposure and ISO, so one system gain and one pair of read / row sigmas for the whole
sequence (ELD's Sony A7S2 fit at its median), written as DNG files ``frame_000.dng``, ...
"""
from __future__ import annotations

import os
from typing import Callable, List, Optional

import numpy as np

from ..cfa import XTRANS_PATTERN
from ..data.cameras import camera_spec
from ..io.dng import write_dng
from ..noise.model import NOISE, draw_gain, fitted_sigma, sample_noise, to_digital
from .isp import camera_matrix, inverse_isp, make_scene


def make_still_sequence(out: str, frames: int = 24, camera: str = "Sony", scene: int = 0, ratio: float = 100.0,
                        height: int = 384, width: int = 576, seed: int = 0, gain: Optional[float] = None,
                        log: Callable[[str], None] = print) -> List[str]:
    """Write ``frames`` noisy dark frames of synthetic scene ``scene`` into the folder ``out``, each
    the scene's clean exposure divided by ``ratio`` with fresh shot, read, row and quantisation
    noise (one gain and one pair of sigmas for the sequence); returns the files in order. ``gain``:
    the system gain K (DN per electron; ELD's A7S2 spans 0.09 at base ISO to 6.0 at the highest),
    None to draw one as the synthetic SID does."""
    if frames < 2:
        raise ValueError(f"a sequence needs at least 2 frames, got {frames}")
    spec = camera_spec(camera)
    rng = np.random.default_rng([seed, scene, 7])
    srgb = make_scene(scene, height, width, seed)
    neutral = np.array(spec.neutral)
    clean = inverse_isp(srgb, camera, 1.0 / neutral, 0.75) / float(ratio)
    k = draw_gain(NOISE, rng) if gain is None else float(gain)
    read_sigma, row_sigma = fitted_sigma(NOISE, "read", k), fitted_sigma(NOISE, "row", k)
    common = dict(cfa="RGGB" if spec.block_size == 2 else XTRANS_PATTERN, black=int(spec.black), white=int(spec.white),
                  as_shot_neutral=tuple(neutral), color_matrix=camera_matrix(camera), make="CANS",
                  model=f"Synthetic {camera} sequence", exposure_time=0.1, iso=6400)
    os.makedirs(out, exist_ok=True)
    paths = []
    for i in range(frames):
        noisy = sample_noise(clean, rng, k=k, read_sigma=read_sigma, row_sigma=row_sigma)
        path = os.path.join(out, f"frame_{i:03d}.dng")
        write_dng(path, to_digital(noisy, spec.black, spec.white), **common)
        paths.append(path)
    log(f"{frames} frames of synthetic scene {scene} ({camera}, {height}x{width}, 1/{ratio:g} of a full exposure, "
        f"gain K {k:.2f}) in {out}")
    return paths


__all__ = ["make_still_sequence"]
