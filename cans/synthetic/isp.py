"""The inverse ISP and the scenes of the synthetic sets.

A scene is one of scikit-image's colour photographs (:data:`SOURCE_IMAGES`, no download), zoomed,
cropped and flipped at random (:func:`make_scene`); :func:`inverse_isp` takes it back to a clean
mosaic of a SID camera (LibRaw's camera matrix, as-shot white balance, RGGB or X-Trans).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..cfa import mosaic_bayer, mosaic_xtrans
from ..data.cameras import camera_spec
from ..io.raw import SRGB_TO_XYZ

SOURCE_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
                 "immunohistochemistry", "retina", "colorwheel")



def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """Inverse sRGB curve, values in [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def camera_from_srgb_matrix(xyz_to_cam) -> np.ndarray:
    """3x3 linear sRGB -> camera RGB, LibRaw's construction (rows sum to 1: white stays white)."""
    cam_rgb = np.asarray(xyz_to_cam, dtype=np.float64) @ SRGB_TO_XYZ
    return cam_rgb / cam_rgb.sum(axis=1, keepdims=True)


def camera_matrix(camera: str) -> np.ndarray:
    """The XYZ -> camera matrix (3, 3) of SID camera ``camera`` (its CameraSpec's, / 10000)."""
    return np.array(camera_spec(camera).color_matrix) / 10000.0


def inverse_isp(srgb: np.ndarray, camera: str, wb_gains: Sequence[float], level: float) -> np.ndarray:
    """sRGB (H, W, 3) in [0, 1] -> clean mosaic (H, W) in digital numbers above black (float64).

    ``wb_gains`` are the (R, G, B) gains the camera will report (1 / AsShotNeutral);
    ``level`` is the fraction of (white - black) that a white pixel reaches.
    """
    spec = camera_spec(camera)
    m = camera_from_srgb_matrix(camera_matrix(camera))
    cam = np.clip(srgb_to_linear(srgb) @ m.T, 0.0, None) / np.asarray(wb_gains, dtype=np.float64)
    mosaic = mosaic_bayer(cam) if spec.block_size == 2 else mosaic_xtrans(cam)
    return mosaic * (spec.white - spec.black) * level


def _source_image(name: str) -> np.ndarray:
    """scikit-image's photograph ``name`` as float64 RGB (H, W, 3) in [0, 1]."""
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


__all__ = ["SOURCE_IMAGES", "SRGB_TO_XYZ", "srgb_to_linear", "camera_from_srgb_matrix", "camera_matrix",
           "inverse_isp", "make_scene"]
