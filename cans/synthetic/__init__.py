"""Synthetic data: made here, read by :mod:`cans.data` like any other (docs/data.md, docs/own_camera.md).

:mod:`~cans.synthetic.isp` (the inverse ISP and the scenes), :mod:`~cans.synthetic.sid` (the
synthetic SID), :mod:`~cans.synthetic.own_camera` (the own-camera sets),
:mod:`~cans.synthetic.calibration_set` (simulated dark and flat frames) and
:mod:`~cans.synthetic.auto` (``data.synthetic.auto_create``: :func:`ensure_synthetic`). The noise
they add is :mod:`cans.noise`'s.
"""
from __future__ import annotations

from .auto import ensure_example_profile, ensure_synthetic
from .calibration_set import make_own_camera_calibration, simulate_calibration_set
from .own_camera import OWN_CAMERA, OWN_XTRANS_CAMERA, make_own_camera_set
from .sid import MARKER, make_synthetic_sid

__all__ = ["ensure_synthetic", "ensure_example_profile", "make_synthetic_sid", "MARKER", "make_own_camera_set",
           "OWN_CAMERA", "OWN_XTRANS_CAMERA", "make_own_camera_calibration", "simulate_calibration_set"]
