"""Noise profiles: what ``scripts/calibrate_noise.py`` writes and ``data.noise.profile`` names.

A profile is a mapping with ``version``, ``camera`` (cfa, white, black, height, width), ``per_iso``
(ISO -> the measured :data:`PER_ISO_KEYS`, DN of the camera's raw scale above black) and ``fit``
(the :data:`FIT_KEYS` of :mod:`cans.noise.model`, plus ``read_lambda`` and the Tukey scale fit).
The built-in profile ``A7S2`` is ELD's fit (:data:`cans.noise.model.NOISE`) in 14-bit DN.
Format and meaning: docs/noise_calibration.md.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, Mapping, Optional

from ..errors import DataError
from ..io.files import atomic_write_text
from .model import NOISE

PROFILE_VERSION = 1
PER_ISO_KEYS = ("K", "read_sigma", "row_sigma", "read_lambda", "black_bias")
FIT_KEYS = ("k_min", "k_max", "read_slope", "read_bias", "read_jitter", "row_slope", "row_bias", "row_jitter")

#: the built-in profile names (ELD's A7S2 fit, :data:`NOISE`) and the white level of their 14-bit DN
BUILTIN_PROFILES = ("A7S2",)
BUILTIN_WHITE = 16383.0


def builtin_profile(name: str) -> Dict[str, Any]:
    """The built-in profile ``name`` (one of :data:`BUILTIN_PROFILES`): its fit and its name."""
    return {"fit": dict(NOISE), "builtin": name}


def _number(v: object, what: str) -> float:
    """``v`` when it is a finite int or float (not a bool); DataError naming ``what`` otherwise."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise DataError(f"{what} must be a number, got {v!r}")
    return v


def validate_profile(profile: object, where: str) -> Dict[str, object]:
    """Check a profile's structure (``per_iso`` and ``fit`` keys, finite positive values); DataError
    naming ``where`` and the key. Returns the profile."""
    if not isinstance(profile, Mapping):
        raise DataError(f"{where}: a noise profile must be a mapping with per_iso and fit, got "
                        f"{type(profile).__name__}")
    per_iso = profile.get("per_iso")
    if not isinstance(per_iso, Mapping) or not per_iso:
        raise DataError(f"{where}: per_iso must map each ISO (an integer) to its K, read_sigma, row_sigma, "
                        f"read_lambda and black_bias")
    for iso, values in per_iso.items():
        if not isinstance(iso, int) or isinstance(iso, bool) or iso <= 0:
            raise DataError(f"{where}: per_iso key {iso!r} is not an ISO (a positive integer)")
        if not isinstance(values, Mapping):
            raise DataError(f"{where}: per_iso.{iso} must be a mapping of {', '.join(PER_ISO_KEYS)}")
        for key in PER_ISO_KEYS:
            v = _number(values.get(key), f"{where}: per_iso.{iso}.{key}")
            if key in ("K", "read_sigma") and v <= 0 or key == "row_sigma" and v < 0:
                raise DataError(f"{where}: per_iso.{iso}.{key} must be positive, got {v!r}")
    fit = profile.get("fit")
    if not isinstance(fit, Mapping):
        raise DataError(f"{where}: fit must be a mapping of {', '.join(FIT_KEYS)}")
    for key in FIT_KEYS:
        _number(fit.get(key), f"{where}: fit.{key}")
    if not 0 < fit["k_min"] <= fit["k_max"]:
        raise DataError(f"{where}: fit.k_min ({fit['k_min']}) and fit.k_max ({fit['k_max']}) must satisfy "
                        f"0 < k_min <= k_max")
    return dict(profile)


def write_profile(profile: Mapping[str, object], path: str) -> str:
    """Validate and write ``profile`` as YAML (atomically), with a header comment; returns ``path``."""
    import yaml

    validate_profile(profile, path)
    plain = json.loads(json.dumps(profile))  # numpy scalars -> Python; keys become strings ...
    plain["per_iso"] = {int(k): v for k, v in plain["per_iso"].items()}  # ... ISO keys are integers again
    header = ("# Noise profile written by scripts/calibrate_noise.py (docs/noise_calibration.md).\n"
              "# DN of this camera's raw scale above black; fit: log(sigma) = slope * log(K) + bias.\n")
    return atomic_write_text(path, header + yaml.safe_dump(plain, sort_keys=False))


def load_profile(path: str) -> Dict[str, object]:
    """Read and validate a profile written by :func:`write_profile`; DataError naming the file."""
    import yaml

    if not os.path.isfile(path):
        raise DataError(f"noise profile {path} not found (write one with scripts/calibrate_noise.py)")
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return validate_profile(data, path)


def resolve_profile(spec: Optional[str]) -> Dict[str, Any]:
    """The noise profile ``data.noise.profile`` names: a built-in name or a profile.yaml path
    (relative paths from the current folder). One-line :class:`DataError` naming the key."""
    if not spec:
        raise DataError("data.noise.profile is not set: give a profile.yaml written by scripts/calibrate_noise.py, "
                        f"or a built-in profile ({', '.join(BUILTIN_PROFILES)})")
    if spec in BUILTIN_PROFILES:
        return builtin_profile(spec)
    if not (spec.lower().endswith((".yaml", ".yml")) or os.sep in spec or "/" in spec):
        raise DataError(f"data.noise.profile: unknown built-in profile {spec!r}; expected one of "
                        f"{', '.join(BUILTIN_PROFILES)} or a profile.yaml path (scripts/calibrate_noise.py)")
    try:
        profile = load_profile(spec)
    except DataError as exc:
        raise DataError(f"data.noise.profile: {exc}") from None
    return dict(profile)


__all__ = ["PROFILE_VERSION", "PER_ISO_KEYS", "FIT_KEYS", "BUILTIN_PROFILES", "BUILTIN_WHITE", "builtin_profile",
           "validate_profile", "write_profile", "load_profile", "resolve_profile"]
