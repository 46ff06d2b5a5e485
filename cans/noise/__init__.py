"""The noise model of low-light RAW frames and its calibration.

:mod:`cans.noise.model` samples ELD's model (one sampler for the synthetic sets, the clean-frame
data set and the simulated calibration frames); :mod:`cans.noise.profile` reads and writes the
profiles of :mod:`cans.noise.calibration`; :mod:`cans.noise.plots` draws a calibration
(matplotlib, imported only there). docs/noise_calibration.md explains the model.
"""
from __future__ import annotations

from .calibration import calibrate
from .model import NOISE, draw_gain, fitted_sigma, sample_noise, to_digital, tukey_noise
from .profile import BUILTIN_PROFILES, PROFILE_VERSION, load_profile, resolve_profile, validate_profile, write_profile

__all__ = ["NOISE", "sample_noise", "draw_gain", "fitted_sigma", "to_digital", "tukey_noise", "calibrate",
           "PROFILE_VERSION", "BUILTIN_PROFILES", "validate_profile", "write_profile", "load_profile",
           "resolve_profile"]
