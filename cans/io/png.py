"""PNG files: 8- or 16-bit RGB, written atomically (a temporary file renamed into place).

``write_png`` has its own small encoder (zlib and the PNG chunk layout) because Pillow cannot
write 16-bit RGB.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np
import torch

from .files import atomic_writer


def to_hwc_array(image, bits: int = 8) -> np.ndarray:
    """(3, H, W) tensor/array in [0, 1] -> (H, W, 3) uint8 or uint16 array (rounded; NaN as 0).
    In PyTorch, on its threads: a full-frame photo in a quarter of numpy's time."""
    if not isinstance(image, torch.Tensor):
        image = torch.as_tensor(np.asarray(image, dtype=np.float32))
    image = image.detach().to("cpu", torch.float32)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected an image of shape (3, H, W), got {tuple(image.shape)}")
    peak = 255 if bits == 8 else 65535
    scaled = torch.nan_to_num(image, nan=0.0).clamp(0.0, 1.0).mul_(peak).add_(0.5)
    scaled = scaled.expand(3, -1, -1).permute(1, 2, 0)
    if bits == 8:
        return scaled.to(torch.uint8).contiguous().numpy()
    return scaled.to(torch.int32).contiguous().numpy().astype(np.uint16)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def encode_png(array: np.ndarray, level: int = 4) -> bytes:
    """(H, W, 3) uint8/uint16 array -> PNG file bytes (RGB, no interlace, filter 0)."""
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) array, got {array.shape}")
    if array.dtype == np.uint8:
        depth, rows = 8, array
    elif array.dtype == np.uint16:
        depth, rows = 16, array.astype(">u2")
    else:
        raise ValueError(f"expected uint8 or uint16, got {array.dtype}")
    h, w = array.shape[:2]
    raw = rows.reshape(h, -1).view(np.uint8)
    scanlines = np.concatenate([np.zeros((h, 1), np.uint8), raw], axis=1)
    header = struct.pack(">IIBBBBB", w, h, depth, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(scanlines.tobytes(), level)) + _chunk(b"IEND", b""))


def write_png(path: str, image, bits: int = 8) -> str:
    """Write a (3, H, W) image in [0, 1] (tensor or array) as an 8- or 16-bit PNG, atomically."""
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    data = encode_png(to_hwc_array(image, bits))
    with atomic_writer(path, "wb") as fh:
        fh.write(data)
    return path


__all__ = ["encode_png", "to_hwc_array", "write_png"]
