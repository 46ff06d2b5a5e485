"""``CleanFrameDataset``: train from clean long exposures alone, the short exposure synthesised.

The physics-based route of ELD (Wei et al., CVPR 2020): no paired shots, only clean photos of the
camera and its noise profile (``data.noise.profile``: a ``scripts/calibrate_noise.py`` profile or the
built-in ``A7S2``). A list line is a clean file (always synthetic) or a ``RawPairDataset`` pair
(in train synthetic from its long file with probability ``data.noise.fraction``; in valid / test the
real pair). :meth:`NoiseModel.short_exposure` draws the noisy short exposure (the sampler of
:mod:`cans.noise.model`); the targets are
``RawPairDataset``'s. Train draws use the global numpy generator, which the loader seeds per sample
(exact resumes); valid / test clean lines use a generator seeded by their position in the list.
The noise model and the list rules: docs/noise_calibration.md. The example profile that
``data.synthetic.auto_create`` writes: :func:`cans.synthetic.ensure_synthetic`.
"""
from __future__ import annotations

import math
import os
from dataclasses import replace
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..config import SCHEMA
from ..noise.model import draw_gain, fitted_sigma, sample_noise, to_digital
from ..noise.profile import BUILTIN_WHITE, resolve_profile
from ..registry import DATASETS
from .errors import DataError
from .prepare import cache_path, resolve
from .rawpair import RawPairDataset, RawPairEntry, parse_pair_list, read_pair_file


def check_ratios(ratios: Sequence[float]) -> List[float]:
    """``data.noise.ratios`` as floats; DataError unless a non-empty list of numbers >= 1."""
    if not ratios or any(not (isinstance(r, (int, float)) and math.isfinite(r) and r >= 1) for r in ratios):
        raise DataError(f"data.noise.ratios: expected a non-empty list of exposure ratios >= 1, got {ratios!r}")
    return [float(r) for r in ratios]


class NoiseModel:
    """A profile's ``fit`` as a sampler: :meth:`short_exposure` turns a clean packed crop into the
    short exposure a camera would store. ``scale`` maps the file's DN into the profile's."""

    def __init__(self, profile: Mapping[str, Any]):
        fit = profile["fit"]
        self.fit = {k: float(v) for k, v in fit.items() if isinstance(v, (int, float))}
        self.builtin = profile.get("builtin")
        self.read_lambda = None if self.builtin else self.fit.get("read_lambda")
        self.white = None if self.builtin else (profile.get("camera") or {}).get("white")

    def scale(self, white: float) -> float:
        return BUILTIN_WHITE / white if self.builtin else 1.0

    def short_exposure(self, clean: np.ndarray, black: np.ndarray, white: float, ratio: float, rng) -> np.ndarray:
        """clean: packed (4, h, w) stored values (RGGB channels R, G, B, G: channels 0, 1 on even
        mosaic rows, 2, 3 on odd ones); black (4, 1, 1); returns uint16 (4, h, w). ``rng``: the
        ``numpy.random`` module (global generator) or a ``numpy.random.Generator``. A profile's
        black bias is not simulated: the loader subtracts the metadata black, as for real files."""
        s = self.scale(white)
        signal = np.maximum(clean.astype(np.float64) - black, 0.0) * (s / ratio)
        fit = self.fit
        # K and the two sigmas drawn first, then the noise: this data set's draw order since it was
        # written (a seed gives the samples, and the documented figures, it always gave)
        k = draw_gain(fit, rng)
        read_sigma = fitted_sigma(fit, "read", k, rng.normal(0.0, fit["read_jitter"]))
        row_sigma = fitted_sigma(fit, "row", k, rng.normal(0.0, fit["row_jitter"]))
        noisy = sample_noise(signal, rng, k=k, read_sigma=read_sigma, row_sigma=row_sigma,
                             read_lambda=self.read_lambda, rows="packed")
        return to_digital(noisy / s, black, white)


class _SyntheticShort:
    """The short exposure of a synthetic sample as an array-like: slicing it (the shared loader's
    crop) synthesises the noise on the sliced clean pixels only."""

    def __init__(self, clean, black, white, ratio, model: NoiseModel, rng):
        self.clean, self.black, self.white, self.ratio, self.model, self.rng = clean, black, white, ratio, model, rng
        self.shape, self.ndim = tuple(clean.shape), 3

    def __getitem__(self, key):
        return self.model.short_exposure(np.asarray(self.clean[key]), self.black, self.white, self.ratio, self.rng)


@DATASETS.register
class CleanFrameDataset(RawPairDataset):
    """Clean Bayer RAW files with the short exposure synthesised from a noise profile (module docstring)."""
    packed_channels, block_size = 4, 2
    camera = "own camera (clean frames)"
    paper_camera = None
    own_camera = True
    synthetic = "bayer"
    base_config = "configs/example_calibrated_noise.yaml"

    def __init__(self, data_path: str, image_list_file: Optional[str], split: str = "train", *,
                 noise_profile: Any = None, noise_ratios: Optional[Sequence[float]] = None,
                 noise_fraction: Optional[float] = None, **kwargs):
        """``noise_profile``: ``data.noise.profile`` (or a profile dict); ``noise_ratios`` and
        ``noise_fraction``: ``data.noise.ratios`` / ``.fraction``, None for the schema's defaults."""
        defaults = SCHEMA["data"]["noise"]
        noise_ratios = defaults["ratios"].default if noise_ratios is None else noise_ratios
        noise_fraction = defaults["fraction"].default if noise_fraction is None else noise_fraction
        profile = noise_profile if isinstance(noise_profile, Mapping) else resolve_profile(noise_profile)
        self.noise = NoiseModel(profile)
        self.noise_ratios = check_ratios(list(noise_ratios))
        if not 0.0 <= noise_fraction <= 1.0:
            raise DataError(f"data.noise.fraction: expected a number in [0, 1], got {noise_fraction}")
        self.noise_fraction = float(noise_fraction)
        super().__init__(data_path, image_list_file, split, **kwargs)
        if self.noise.white is not None:
            for e in self.entries:
                white = self._file_meta(e.lbl_file).white
                if abs(white - float(self.noise.white)) > 0.5:
                    raise DataError(f"data.noise.profile: calibrated on a camera with white level "
                                    f"{self.noise.white:g}, but {e.lbl_file} ({e.source}) has {white:g}; "
                                    f"use a profile of this camera")

    @staticmethod
    def data_options(data: Mapping[str, Any]) -> Dict[str, Any]:
        noise = data.get("noise") or {}
        return {**RawPairDataset.data_options(data), "noise_profile": noise.get("profile"),
                "noise_ratios": noise.get("ratios"), "noise_fraction": noise.get("fraction")}

    def prepare_hint(self) -> str:
        return (f"write the list file(s) (one clean RAW file a line, or 'short long [ratio]' pairs); with "
                f"data.load_npy: true cache them with `python scripts/prepare_pairs.py --data-path "
                f"{self.data_path} --lists LIST...` (docs/noise_calibration.md)")

    def _entries(self) -> List[RawPairEntry]:
        """A list of clean files (one path a line) or of pairs (``RawPairDataset``'s lines), not both."""
        entries = parse_pair_list(self.list_file, clean_files=True)
        clean = [e.clean for e in entries]
        if any(clean) and not all(clean):
            number = entries[clean.index(False)].source.rsplit(":", 1)[1]
            raise DataError(f"{self.list_file}:{number}: a pair line in a list of clean files; a list holds "
                            f"either one clean RAW file a line or 'short long [ratio]' pairs")
        return entries

    def _check_entry(self, entry) -> None:
        if not entry.clean:
            return super()._check_entry(entry)
        meta = self._file_meta(entry.lbl_file)
        if self.load_npy and not os.path.isfile(cache_path(self.data_path, entry.lbl_file, "post_int")):
            raise DataError(f"cache file not found: {cache_path(self.data_path, entry.lbl_file, 'post_int')}")
        entry.input_exposure = entry.gt_exposure = meta.exposure

    def load(self, entry) -> Dict[str, Any]:
        clean_only = entry.clean
        if self.split == "train":
            if not clean_only and not (self.noise_fraction > 0 and np.random.random() < self.noise_fraction):
                return super().load(entry)
            rng = np.random
        else:
            if not clean_only:
                return super().load(entry)
            rng = np.random.default_rng([int(entry.source.rsplit(":", 1)[1])])
        ratio = self.noise_ratios[min(int(rng.random() * len(self.noise_ratios)), len(self.noise_ratios) - 1)]
        exposure = self._file_meta(entry.lbl_file).exposure
        sample_entry = replace(entry, fixed_ratio=ratio, input_exposure=exposure / ratio, gt_exposure=exposure)
        self._draw = (ratio, rng)
        try:
            return super().load(sample_entry)
        finally:
            self._draw = None

    _draw = None

    def _raw_arrays(self, entry):
        if self._draw is None:
            return super()._raw_arrays(entry)
        if self.load_npy:
            clean = self._open_cached(cache_path(self.data_path, entry.lbl_file, "pack"))
            rgb = self._open_cached(cache_path(self.data_path, entry.lbl_file, "post_int"))
        else:
            _, clean, rgb = read_pair_file(resolve(self.data_path, entry.lbl_file), self.block_size, render=True)
        black, white = self._file_levels(entry.lbl_file)
        ratio, rng = self._draw
        return _SyntheticShort(clean, black, white, ratio, self.noise, rng), clean, rgb

    def _levels(self, entry):
        if self._draw is None:
            return super()._levels(entry)
        levels = self._file_levels(entry.lbl_file)
        return levels, levels
