"""Dark RAW sequences (a burst, a time-lapse, a camera's DNG video) as an H.264 MP4 (docs/inference.md).

The frames are the RAW files in file-name order, all of one size and camera (checked before the
model loads), enhanced as ``infer.py`` enhances photos with one ratio for the whole sequence (a
ratio per frame would flicker). ``--steady``: the network's chromatic attention pools statistics
over each frame, so noise alone makes the colour of a still scene flicker from frame to frame;
:class:`SteadyColour` shares the pooled statistics over a window of frames, through the same tap
that two-pass tiling uses to give tiles the frame's statistics (``cans.tiling.GlobalPoolStats``).
The MP4 is written by PyAV (FFmpeg's libx264, in its wheel), whole or not at all.
"""
from __future__ import annotations

import collections
import os
import time
from fractions import Fraction
from typing import Dict, List, Optional, Sequence, Tuple

import av
import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from .data.errors import DataError
from .errors import InferenceError
from .inference import (
    DEFAULT_MAX_RATIO,
    DEFAULT_TARGET_MEAN,
    auto_ratio,
    cpu_default_tile,
    enhance,
    find_inputs,
    load_runner,
    output_name,
    read_mosaic,
    run_settings,
    write_raw_dng,
)
from .io.files import atomic_writer
from .io.png import write_png
from .io.raw import read_shot_info
from .models import unwrap_model
from .outdirs import check_output_file, prepare_output_dir
from .tiling import DEFAULT_OVERLAP, ModelWrapper, frame_stats, reflect_pad

#: frames whose own --ratio auto the sequence's ratio is the median of (spread over the sequence)
RATIO_SAMPLES = 16
DEFAULT_FPS = 24.0
DEFAULT_WINDOW = 8


class SteadyColour(ModelWrapper):
    """``model`` with its pooled statistics averaged over the last ``window`` frames it ran.

    Each call runs the network twice on the whole frame, padded as the network pads: pass 1
    collects every pooling point's frame-wide statistics (:class:`cans.tiling.GlobalPoolStats`,
    or an ONNX export's tile graph), pass 2 runs with the mean of those statistics over this frame
    and the ``window - 1`` frames before it. ``window=1`` gives the model's own output. A frame of
    another size starts the window afresh. ``forward(x)`` takes and returns what the model does.
    """

    def __init__(self, model: nn.Module, window: int = DEFAULT_WINDOW):
        super().__init__()
        if window < 1:
            raise ValueError(f"steady window must be at least 1 frame, got {window}")
        self.net = model
        self.window = int(window)
        self._runner = unwrap_model(model)   # the pooling tap runs on the eager modules
        self.history: collections.deque = collections.deque(maxlen=self.window)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        net = self._runner
        pads = self.frame_pads(x)
        xp = reflect_pad(x, pads)
        stats = frame_stats(net, tuple(xp.shape[-2:]))
        try:
            stats.collect_whole_frame()
            net(xp)
            frame = stats.means()
            if self.history and {k: v.shape for k, v in frame.items()} != \
                    {k: v.shape for k, v in self.history[-1].items()}:
                self.history.clear()      # another frame size: other pooling points
            self.history.append(frame)
            stats.set_means({k: torch.stack([f[k] for f in self.history]).mean(0) for k in frame})
            stats.mode = "apply"
            stats.calls = {}
            rgb, raw = net(xp)
        finally:
            stats.close()
        return self.crop(rgb, raw, pads, tuple(x.shape[-2:]))


def check_sequence(files: Sequence[str]) -> Tuple[int, int]:
    """The (height, width) every frame shares; :class:`InferenceError` naming the first frame of
    another size or camera than the first one (headers only: no decoding)."""
    first = None
    for path in files:
        try:
            info = read_shot_info(path)
        except DataError as exc:
            raise InferenceError(str(exc)) from None
        this = (info.size, info.make, info.model)
        if first is None:
            first = (path, this)
        elif this != first[1]:
            (h0, w0), make0, model0 = first[1]
            (h, w), make, model = this
            what = (f"is {h}x{w} pixels, but {first[0]} is {h0}x{w0}" if (h, w) != (h0, w0) else
                    f"comes from {make} {model}, but {first[0]} from {make0} {model0}")
            raise InferenceError(f"--video: {path} {what}: a video's frames share one size and camera; put "
                                 f"other frames in another folder")
    return first[1][0]


def sequence_ratio(files: Sequence[str], target_mean: float = DEFAULT_TARGET_MEAN,
                   max_ratio: float = DEFAULT_MAX_RATIO, samples: int = RATIO_SAMPLES) -> float:
    """One ``--ratio auto`` for a whole sequence: the median of the frames' own (up to ``samples``
    frames spread evenly over it), so a passing light does not set the exposure of every frame."""
    picks = sorted({int(round(i)) for i in np.linspace(0, len(files) - 1, min(samples, len(files)))})
    return float(np.median([auto_ratio(read_mosaic(files[i]).data, target_mean, max_ratio) for i in picks]))


def frame_to_uint8(rgb: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H', W', 3) uint8 with H', W' even (H.264 in 4:2:0 needs even sides:
    an odd last row or column is dropped)."""
    h, w = rgb.shape[-2:]
    image = (rgb[:, :h - h % 2, :w - w % 2].clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
    return image.permute(1, 2, 0).contiguous().numpy()


class Mp4Writer:
    """``with Mp4Writer(path, fps) as video: video.add(frame_uint8_hwc)``: H.264 (libx264, CRF 18,
    yuv420p) in an MP4 that appears at ``path`` only when the block ends without an error."""

    def __init__(self, path: str, fps: float = DEFAULT_FPS, crf: int = 18):
        self.path, self.fps, self.crf = path, fps, crf
        self.frames = 0

    def __enter__(self) -> "Mp4Writer":
        self._file_cm = atomic_writer(self.path, "wb", what=f"video {os.path.basename(self.path)}")
        self._fh = self._file_cm.__enter__()
        self._box = av.open(self._fh, "w", format="mp4")
        self._stream = None
        return self

    def add(self, frame: np.ndarray) -> None:
        if self._stream is None:
            rate = Fraction(round(self.fps * 1000), 1000)   # 29.97 as 29970/1000
            self._stream = self._box.add_stream("libx264", rate=rate, options={"crf": str(self.crf)})
            self._stream.width, self._stream.height = frame.shape[1], frame.shape[0]
            self._stream.pix_fmt = "yuv420p"
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self._box.mux(packet)
        self.frames += 1

    def __exit__(self, kind, exc, tb) -> None:
        try:
            if kind is None and self._stream is not None:
                for packet in self._stream.encode():
                    self._box.mux(packet)
            self._box.close()
        finally:
            self._file_cm.__exit__(kind, exc, tb)


def colour_flicker(means: np.ndarray) -> float:
    """Frame-to-frame flicker of a sequence's colour: the standard deviation over frames of each
    frame's mean R, G and B (8-bit levels), averaged over the three; ``means`` (N, 3) in [0, 1]."""
    means = np.asarray(means, dtype=np.float64)
    return float(means.std(axis=0).mean() * 255.0) if len(means) > 1 else 0.0


@torch.no_grad()
def enhance_sequence(model: nn.Module, files: Sequence[str], out_path: str, ratio: float, device, *,
                     fps: float = DEFAULT_FPS, steady: int = 0, frames_dir: Optional[str] = None,
                     dng: bool = False, bits: int = 8, amp: str = "off", max_clip: Optional[float] = 1.0,
                     min_clip: Optional[float] = None, tile=None, overlap: int = DEFAULT_OVERLAP,
                     two_pass: bool = True, rotate: bool = False, progress: bool = True,
                     max_memory_gb: Optional[float] = None) -> Dict[str, object]:
    """Enhance ``files`` in order into the MP4 ``out_path``; ``steady``: the window of
    :class:`SteadyColour` in frames (0: off); ``frames_dir``: also each frame's PNG (and with ``dng``
    its DNG) there. A frame that fails stops the video (a gap would shift every later frame).
    Without ``steady`` the frames keep to the CPU's memory bound as photos do
    (:func:`cans.inference.cpu_default_tile`, ``max_memory_gb``), measured once for the sequence;
    ``steady`` runs whole frames. Returns ``{"frames", "seconds", "means": (N, 3) mean colour per
    frame, "flicker"}``."""
    if steady and tile is not None:
        raise InferenceError("--steady runs whole frames (its statistics are the frame's); leave --tile out")
    runner = SteadyColour(model, steady) if steady else model
    tile = tile if steady else cpu_default_tile(tile, device)
    auto_tiles: Dict = {}   # the sequence's one frame size: measured once
    model.eval()
    means: List[np.ndarray] = []
    used: Dict[str, str] = {}   # the frames' stems in frames_dir
    start = time.perf_counter()
    bar = tqdm(files, desc="video", unit="frame", disable=not progress, dynamic_ncols=True)
    with Mp4Writer(out_path, fps) as video:
        for path in bar:
            result = enhance(runner, path, ratio, device, amp=amp, max_clip=max_clip, min_clip=min_clip, tile=tile,
                             overlap=overlap, two_pass=two_pass, rotate=rotate, log=tqdm.write,
                             raw_mosaic=dng and frames_dir is not None, auto_tiles=auto_tiles,
                             max_memory_gb=max_memory_gb)
            rgb = result["rgb"]
            means.append(rgb.double().mean(dim=(1, 2)).numpy())
            video.add(frame_to_uint8(rgb))
            if frames_dir is not None:
                stem = output_name(path, used, log=tqdm.write)
                write_png(os.path.join(frames_dir, stem + ".png"), rgb, bits)
                if dng:
                    write_raw_dng(os.path.join(frames_dir, stem + ".dng"), result)
    means_arr = np.stack(means)
    return {"frames": len(means), "seconds": time.perf_counter() - start, "means": means_arr,
            "flicker": colour_flicker(means_arr)}


def enhance_video(inputs: Sequence[str], out_path: str, *, frames_dir: Optional[str] = None,
                  config: Optional[str] = None, overrides: Sequence[str] = (), checkpoint: Optional[str] = None,
                  onnx: Optional[str] = None, runtime: str = "auto", threads: Optional[int] = None,
                  use_export: bool = True, device: Optional[str] = None, amp: Optional[str] = None, ratio="auto",
                  target_mean: float = DEFAULT_TARGET_MEAN, max_ratio: float = DEFAULT_MAX_RATIO,
                  fps: float = DEFAULT_FPS, steady: int = 0, dng: bool = False, bits: int = 8, tile=None,
                  overlap: int = DEFAULT_OVERLAP, two_pass: bool = True, rotate: bool = False,
                  precision: str = "f32", progress: bool = True, log=print,
                  max_memory_gb: Optional[float] = None) -> Dict[str, object]:
    """``infer.py --video``: the RAW files and folders ``inputs`` (:func:`cans.inference.find_inputs`),
    sorted by file name, as the MP4 ``out_path``; the model as :func:`cans.inference.load_runner`
    picks it. Everything a user can get wrong (inputs, mixed frames, the output's folder) is
    checked before the model loads. Returns :func:`enhance_sequence`'s dict plus ``"ratio"`` and
    ``"files"``."""
    if steady and tile is not None:
        raise InferenceError("--steady runs whole frames (its statistics are the frame's); leave --tile out")
    if not out_path.lower().endswith(".mp4"):
        raise InferenceError(f"--video {out_path}: expected a file name ending in .mp4")
    if not fps > 0 or not np.isfinite(fps):
        raise InferenceError(f"--fps must be a positive number of frames per second, got {fps}")
    files = sorted(find_inputs(inputs, log=log), key=lambda p: (os.path.basename(p), p))
    height, width = check_sequence(files)
    if min(height, width) < 2:
        raise InferenceError(f"--video: frames of {height}x{width} pixels are too small for a video")
    check_output_file(out_path, "--video")
    if frames_dir is not None:
        prepare_output_dir(frames_dir, "--out")
    if ratio == "auto":
        ratio = sequence_ratio(files, target_mean, max_ratio)
        log(f"ratio {ratio:.1f} for all {len(files)} frames (the median of --ratio auto over up to "
            f"{RATIO_SAMPLES} of them)")
    runner = load_runner(config=config, overrides=overrides, checkpoint=checkpoint, onnx=onnx, runtime=runtime,
                         threads=threads, use_export=use_export, device=device, amp=amp, precision=precision,
                         log=log)
    settings = run_settings(runner, amp, tile, overlap, log, precision)
    result = enhance_sequence(runner.model, files, out_path, float(ratio), runner.device, fps=fps, steady=steady,
                              frames_dir=frames_dir, dng=dng, bits=bits, tile=tile, overlap=overlap,
                              two_pass=two_pass, rotate=rotate, progress=progress, max_memory_gb=max_memory_gb,
                              **settings)
    result.update(ratio=float(ratio), files=files)
    return result


__all__ = ["Mp4Writer", "SteadyColour", "check_sequence", "colour_flicker", "enhance_sequence", "enhance_video",
           "frame_to_uint8", "sequence_ratio"]
