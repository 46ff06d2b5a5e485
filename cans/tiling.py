"""Tiled inference: any photo size on any GPU (``--tile SIZE --overlap PIXELS``; docs/tiling.md).

:class:`TiledModel` wraps a CANS / CANS++ model with the same ``forward(x) -> (rgb, raw)`` but runs
it on overlapping tiles of ``tile`` x ``tile`` *packed* pixels, so the network's memory no longer
grows with the frame. Tile origins are multiples of the model's multiple (16), the real overlap at
least ``overlap``, outputs blended with linear ramps; one tile covering the frame is the whole-frame
run. ``two_pass=True`` (default) first records the frame-wide pooled statistics of the chromatic
attention, then reruns the tiles with them, because a tile alone sees other statistics than the
frame. :func:`auto_tile` picks the largest tile that fits the free GPU memory; :func:`run_with_fallback`
retries a whole frame that runs out of GPU memory in tiles.
"""
from __future__ import annotations

import contextlib
import math
import weakref
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .engine.fastpath import autocast_context
from .evaluate.metrics import psnr
from .machine import available_memory, peak_memory, reset_peak_memory, resident_memory, trim_memory
from .models import blocks, unwrap_model

DEFAULT_OVERLAP = 32
#: fraction of the free GPU memory ``auto_tile`` plans to use
MEMORY_FRACTION = 0.7
PROBE_SIZE = 128
#: on the CPU, the most memory (bytes) inference holds at its peak unless ``--max-memory`` says
#: otherwise: a little below what the authors' code needs for one full Sony frame (5.8 GB measured)
CPU_MEMORY_LIMIT = 5.5 * 2 ** 30
#: on the CPU, the share of the machine's available memory a run plans to take at most
CPU_MEMORY_FRACTION = 0.8
#: the share of the room left (the bound less what the process holds) that a CPU run plans to fill,
#: whole or in tiles (:func:`cpu_tile`)
CPU_PLAN_SHARE = 0.9
#: the packed sizes of the CPU memory probe (:func:`measure_cpu_memory`), of the whole-frame pass
#: and of a tile's first pass: smaller, because that pass holds several times as much a pixel
#: (an export's tile graph), and its probe must stay within a small --max-memory
CPU_PROBE_SIZES = {False: (256, 512), True: (128, 256)}


def frame_padding(net: nn.Module, h: int, w: int, m: int) -> Tuple[int, int, int, int]:
    """(left, right, top, bottom) reflect padding to multiples of ``m``, as the model pads."""
    if hasattr(net, "padding"):
        return net.padding(h, w)
    dh, dw = (-h) % m, (-w) % m
    return dw // 2, dw - dw // 2, dh // 2, dh - dh // 2


def tile_starts(length: int, tile: int, overlap: int, multiple: int) -> List[int]:
    """Origins of the tiles along one axis of ``length`` (a multiple of ``multiple``)."""
    if tile >= length:
        return [0]
    step = max(multiple, (tile - overlap) // multiple * multiple)
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return sorted(set(starts))


def _ramp(n: int, starts: List[int], k: int, tile: int) -> torch.Tensor:
    """Blending weight (tile,) of tile ``k`` along one axis: linear ramps over the overlaps."""
    w = torch.ones(tile, dtype=torch.float64)
    pos = torch.arange(tile, dtype=torch.float64) + 0.5
    if k > 0:
        ov = starts[k - 1] + tile - starts[k]
        if ov > 0:
            w = torch.minimum(w, (pos / ov).clamp(max=1.0))
    if k + 1 < len(starts):
        ov = starts[k] + tile - starts[k + 1]
        if ov > 0:
            w = torch.minimum(w, ((tile - pos) / ov).clamp(max=1.0))
    return w


def _owned(starts: List[int], k: int, tile: int, length: int, multiple: int) -> Tuple[int, int]:
    """The part [a, b) of the frame tile ``k`` owns for the global statistics: overlaps are
    split in the middle (on the multiple, so the split maps to whole pixels at every level)."""
    a = 0 if k == 0 else (starts[k] + starts[k - 1] + tile) // 2 // multiple * multiple
    b = length if k + 1 == len(starts) else (starts[k + 1] + starts[k] + tile) // 2 // multiple * multiple
    return a, b


def _regions(length: int, s: int) -> List[Tuple[int, int]]:
    """The ``s`` pooling windows of ``nn.AdaptiveAvgPool2d`` along an axis of ``length``."""
    return [(i * length // s, -(-(i + 1) * length // s)) for i in range(s)]


class GlobalPoolStats:
    """Frame-wide pooled statistics: collected (pass 1) or imposed (pass 2) at every pooling point.

    The pooling points are the calls of :func:`cans.models.blocks.adaptive_pool` (GCP's pool, called
    twice per forward for c1 and c2; the CANS++ heads' query pool and their shared key), reached
    through :func:`cans.models.blocks.pool_tap`, the tap the ONNX tile graph uses too; a point is
    known by its place in the forward pass (the same in every tile).
    """

    def __init__(self, net: Optional[nn.Module], frame_hw: Tuple[int, int]):
        """``net`` given: the tap is set until :meth:`close` (every pooling point in the process
        goes through it meanwhile; ``net`` runs there). ``net`` None: no tap; the caller feeds
        :meth:`collect` and reads :meth:`mean` itself (an ONNX export's tile graph,
        :meth:`cans.onnx_model.OnnxModel.pool_stats`)."""

        self.frame_hw = frame_hw
        self.mode = "off"
        self.window: Tuple[int, int, int, int, int, int] = (0, 0, 0, 0, 0, 0)   # y0, x0, ya, yb, xa, xb
        self.tile_hw = (0, 0)
        self.sums: Dict[Tuple[str, int], torch.Tensor] = {}
        self.counts: Dict[Tuple[str, int], torch.Tensor] = {}
        self.calls: Dict[str, int] = {}
        self.on_close: Optional[Callable[[], None]] = None
        self._tap = contextlib.ExitStack()
        if net is not None:
            self._tap.enter_context(blocks.pool_tap(self._pool))

    def close(self) -> None:
        self._tap.close()
        if self.on_close is not None:
            self.on_close()
            self.on_close = None

    def collect(self, key, feat: torch.Tensor, s: int) -> None:
        """Pass 1: add the part of ``feat`` (a pooling point's input) that the current tile owns."""
        self._collect(key, feat, s)

    def mean(self, key, like: torch.Tensor) -> torch.Tensor:
        """Pass 2: the frame-wide pooled value of pooling point ``key``."""
        return self._mean(key, like)

    def means(self) -> Dict[Tuple[str, int], torch.Tensor]:
        """Every pooling point's frame-wide pooled value after pass 1: ``{key: (1, C, s, s) float64}``."""
        return {key: self.sums[key] / self.counts[key] for key in self.sums}

    def set_means(self, means: Mapping[Tuple[str, int], torch.Tensor]) -> None:
        """Make pass 2 impose ``means`` (as :meth:`means` gives them) instead of the collected ones:
        statistics shared over several frames (``cans.video.SteadyColour``)."""
        self.sums = {key: value.double() for key, value in means.items()}
        self.counts = {key: torch.ones(value.shape[-2:], dtype=torch.float64, device=value.device)
                       for key, value in means.items()}

    def collect_whole_frame(self) -> None:
        """Pass 1 over one tile that is the whole frame (``frame_hw``): a frame's own statistics."""
        h, w = self.frame_hw
        self.mode = "collect"
        self.start_tile(0, 0, (h, w), (0, h), (0, w))

    def start_tile(self, y0: int, x0: int, tile_hw: Tuple[int, int], owned_y, owned_x) -> None:
        self.window = (y0, x0, owned_y[0], owned_y[1], owned_x[0], owned_x[1])
        self.tile_hw = tile_hw
        self.calls = {}

    def _key(self, name: str) -> Tuple[str, int]:
        n = self.calls.get(name, 0)
        self.calls[name] = n + 1
        return name, n

    def _collect(self, key, feat: torch.Tensor, s: int) -> None:
        b, c, h, w = feat.shape
        scale_y, scale_x = self.tile_hw[0] // h, self.tile_hw[1] // w
        if scale_y * h != self.tile_hw[0] or scale_x * w != self.tile_hw[1]:
            raise RuntimeError(f"two-pass tiling: feature map {h}x{w} is not a whole fraction of the tile "
                               f"{self.tile_hw}")
        y0, x0, ya, yb, xa, xb = self.window
        fh, fw = self.frame_hw[0] // scale_y, self.frame_hw[1] // scale_x
        if key not in self.sums:
            self.sums[key] = torch.zeros(b, c, s, s, dtype=torch.float64, device=feat.device)
            self.counts[key] = torch.zeros(s, s, dtype=torch.float64, device=feat.device)
        for i, (ra, rb) in enumerate(_regions(fh, s)):
            r0, r1 = max(ra, ya // scale_y), min(rb, yb // scale_y)
            if r1 <= r0:
                continue
            for j, (ca, cb) in enumerate(_regions(fw, s)):
                c0, c1 = max(ca, xa // scale_x), min(cb, xb // scale_x)
                if c1 <= c0:
                    continue
                part = feat[:, :, r0 - y0 // scale_y:r1 - y0 // scale_y, c0 - x0 // scale_x:c1 - x0 // scale_x]
                self.sums[key][:, :, i, j] += part.double().sum(dim=(2, 3))
                self.counts[key][i, j] += (r1 - r0) * (c1 - c0)

    def _mean(self, key, like: torch.Tensor) -> torch.Tensor:
        if key not in self.sums or bool((self.counts[key] == 0).any()):
            raise RuntimeError(f"two-pass tiling: no statistics collected for {key}")
        return (self.sums[key] / self.counts[key]).to(dtype=like.dtype, device=like.device)

    def _pool(self, feat: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """The tap: pass 1 adds the tile's owned part of ``feat``, pass 2 returns the frame's mean."""
        if self.mode == "off":
            return pooled
        key = self._key("pool")
        if self.mode == "collect":
            self._collect(key, feat, int(pooled.shape[-1]))
            return pooled
        return self._mean(key, pooled)


def tile_limits(model: nn.Module) -> Tuple[int, int]:
    """(multiple, smallest tile) of ``model`` (DDP / compile wrappers looked through): tiles are
    multiples of its padding multiple (16), at least its smallest input rounded up to it."""
    net = unwrap_model(model)
    multiple = int(getattr(net, "multiple", 16))
    return multiple, -(-int(getattr(net, "min_input_size", 64)) // multiple) * multiple


def _check_overlap(overlap: int) -> None:
    if overlap < 0:
        raise ValueError(f"--overlap must be >= 0 packed pixels, got {overlap}")


def tile_for_model(model: nn.Module, tile: int, overlap: int = DEFAULT_OVERLAP) -> int:
    """The tile ``model`` runs: ``tile`` rounded down to the model's multiple (16). ValueError, with
    the option's name, for an overlap below 0, a tile below the model's smallest input or an
    overlap that is not smaller than the tile."""
    multiple, smallest = tile_limits(model)
    _check_overlap(overlap)
    t = int(tile) // multiple * multiple
    if t < smallest:
        raise ValueError(f"--tile {tile}: the model needs tiles of at least {smallest} packed pixels "
                         f"(a multiple of {multiple})")
    if overlap >= t:
        raise ValueError(f"--overlap {overlap} must be smaller than the tile ({t} packed pixels)")
    return t


def check_tile_arguments(model: nn.Module, tile, overlap: int = DEFAULT_OVERLAP) -> None:
    """ValueError for a ``--tile`` / ``--overlap`` that ``model`` cannot use (:func:`tile_for_model`),
    before any work; with ``tile`` None (whole frames) or ``'auto'`` (sized later) only the overlap
    is checked."""
    if tile is None or tile == "auto":
        _check_overlap(overlap)
    else:
        tile_for_model(model, int(tile), overlap)  # checks the overlap too


class ModelWrapper(nn.Module):
    """A module that runs the network ``self.net`` its own way (tiles, shared statistics) and
    answers for it what the rest of the code reads from a model."""

    @property
    def block_size(self) -> int:
        return int(unwrap_model(self.net).block_size)

    @property
    def in_channel(self) -> int:
        return int(unwrap_model(self.net).in_channel)

    @property
    def min_input_size(self) -> int:
        return int(unwrap_model(self.net).min_input_size)

    def frame_pads(self, x: torch.Tensor) -> Tuple[int, int, int, int]:
        """``x`` checked as the network checks it, and its (left, right, top, bottom) reflect padding
        to the network's multiple, exactly as the network pads a whole frame."""
        net = unwrap_model(self.net)
        if hasattr(net, "check_input"):
            net.check_input(x)
        return frame_padding(net, x.shape[-2], x.shape[-1], tile_limits(net)[0])

    def crop(self, rgb: torch.Tensor, raw: torch.Tensor, pads: Tuple[int, int, int, int],
             hw: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
        """The outputs of the padded frame cropped back to the input's ``hw`` (packed pixels)."""
        left, _, top, _ = pads
        h, w = hw
        b = self.block_size
        return rgb[..., top * b:(top + h) * b, left * b:(left + w) * b], raw[..., top:top + h, left:left + w]


def reflect_pad(x: torch.Tensor, pads: Tuple[int, int, int, int]) -> torch.Tensor:
    """``x`` reflect-padded by ``pads`` (left, right, top, bottom); ``x`` itself when they are all 0."""
    return F.pad(x, pads, mode="reflect") if any(pads) else x


def frame_stats(runner: nn.Module, frame_hw: Tuple[int, int]) -> GlobalPoolStats:
    """The frame-wide pooled statistics of ``runner`` on a (padded) frame of ``frame_hw``: an ONNX
    export brings its own (its tile graph exposes the pooling points), a PyTorch network gets a
    :class:`GlobalPoolStats` tapping it."""
    own = getattr(runner, "pool_stats", None)
    return own(frame_hw) if own is not None else GlobalPoolStats(runner, frame_hw)


class TiledModel(ModelWrapper):
    """``model`` run on overlapping tiles (module docstring); ``forward(x) -> (rgb, raw)`` as the model.

    tile: packed pixels a side (rounded down to the model's multiple, at least its smallest input);
    overlap: packed pixels shared by neighbouring tiles; two_pass: frame-wide pooled statistics.
    ``calls`` records the (h, w) of every input the wrapped model received (tests, logs);
    ``progress`` is called with (tile passes done, in all) after each, both passes counted.
    The input is first reflect-padded to the model's multiple, exactly as the model pads a whole
    frame; origins are spaced ``tile - overlap`` apart rounded down to the multiple, the last tile
    flush with the frame's end; the blended output is cropped back like the model's.
    """

    def __init__(self, model: nn.Module, tile: int, overlap: int = DEFAULT_OVERLAP, two_pass: bool = True,
                 progress: Optional[Callable[[int, int], None]] = None):
        super().__init__()
        self.net = model
        self.multiple = tile_limits(model)[0]
        self.tile, self.overlap, self.two_pass = tile_for_model(model, tile, overlap), int(overlap), bool(two_pass)
        # the two-pass hooks run on the eager modules: a torch.compile'd model is unwrapped for it
        self._runner = unwrap_model(model) if self.two_pass else model
        self.progress = progress
        self.calls: List[Tuple[int, int]] = []

    def _run(self, x: torch.Tensor):
        self.calls.append(tuple(x.shape[-2:]))
        return self._runner(x)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        pads = self.frame_pads(x)
        h, w = x.shape[-2:]
        hp, wp = h + pads[2] + pads[3], w + pads[0] + pads[1]
        if self.tile >= hp and self.tile >= wp:
            self.calls.append((h, w))
            return self.net(x)           # one tile covers the frame: the model itself
        xp = reflect_pad(x, pads)
        th, tw = min(self.tile, hp), min(self.tile, wp)
        ys = tile_starts(hp, th, self.overlap, self.multiple)
        xs = tile_starts(wp, tw, self.overlap, self.multiple)
        stats = frame_stats(self._runner, (hp, wp)) if self.two_pass else None
        self._done, self._total = 0, len(ys) * len(xs) * (1 if stats is None else 2)
        try:
            if stats is not None:
                stats.mode = "collect"
                for ky, y0 in enumerate(ys):
                    for kx, x0 in enumerate(xs):
                        stats.start_tile(y0, x0, (th, tw), _owned(ys, ky, th, hp, self.multiple),
                                         _owned(xs, kx, tw, wp, self.multiple))
                        self._run(xp[..., y0:y0 + th, x0:x0 + tw])
                        self._tick()
                stats.mode = "apply"
            rgb, raw = self._blend(xp, ys, xs, th, tw, stats)
        finally:
            if stats is not None:
                stats.close()
        return self.crop(rgb, raw, pads, (h, w))

    def _tick(self) -> None:
        """One more tile pass done: ``progress(done, total)``, both passes counted."""
        self._done += 1
        if self.progress is not None:
            self.progress(self._done, self._total)

    def _blend(self, xp, ys, xs, th, tw, stats):
        b = self.block_size
        n, _, hp, wp = xp.shape
        rgb_acc = raw_acc = None
        weight = torch.zeros(hp, wp, dtype=torch.float32, device=xp.device)
        for ky, y0 in enumerate(ys):
            wy = _ramp(hp, ys, ky, th)
            for kx, x0 in enumerate(xs):
                if stats is not None:
                    stats.calls = {}
                rgb, raw = self._run(xp[..., y0:y0 + th, x0:x0 + tw])
                wgt = torch.outer(wy, _ramp(wp, xs, kx, tw)).to(device=xp.device, dtype=torch.float32)
                if raw_acc is None:
                    raw_acc = torch.zeros(n, raw.shape[1], hp, wp, dtype=torch.float32, device=xp.device)
                    rgb_acc = torch.zeros(n, rgb.shape[1], hp * b, wp * b, dtype=torch.float32, device=xp.device)
                raw_acc[..., y0:y0 + th, x0:x0 + tw] += raw.float() * wgt
                wgt_rgb = wgt.repeat_interleave(b, 0).repeat_interleave(b, 1)
                rgb_acc[..., y0 * b:(y0 + th) * b, x0 * b:(x0 + tw) * b] += rgb.float() * wgt_rgb
                weight[y0:y0 + th, x0:x0 + tw] += wgt
                self._tick()
        raw_acc /= weight
        rgb_acc /= weight.repeat_interleave(b, 0).repeat_interleave(b, 1)
        return rgb_acc, raw_acc


# ---------------------------------------------------------------------------------------------
# Memory: --tile auto and the out-of-memory fallback
# ---------------------------------------------------------------------------------------------

def tile_for_memory(free_bytes: float, bytes_per_pixel: float, frame_hw: Sequence[int], multiple: int = 16,
                    smallest: int = 64, fraction: float = MEMORY_FRACTION) -> Optional[int]:
    """The largest square tile (packed pixels, a multiple of ``multiple``) whose activations
    (``bytes_per_pixel`` per packed pixel) fit ``fraction`` of ``free_bytes``; None when the whole
    frame fits. Never below ``smallest``."""
    budget = max(0.0, float(free_bytes) * fraction)
    h, w = frame_hw
    if bytes_per_pixel * h * w <= budget:
        return None
    return largest_tile(budget, bytes_per_pixel, multiple, smallest)[0]


def largest_tile(budget: float, bytes_per_pixel: float, multiple: int, smallest: int) -> Tuple[int, bool]:
    """The largest square tile (a multiple of ``multiple``) whose ``bytes_per_pixel`` per packed
    pixel fit ``budget`` bytes, never below ``smallest`` (rounded up to the multiple); and whether it
    fits (False: the smallest, which needs more)."""
    side = int(math.sqrt(max(budget, 0.0) / max(bytes_per_pixel, 1e-9))) // multiple * multiple
    return max(side, -(-smallest // multiple) * multiple), side >= smallest


@torch.no_grad()
def measure_bytes_per_pixel(model: nn.Module, device: torch.device, amp: str = "off", size: int = PROBE_SIZE) -> float:
    """Peak CUDA memory of one forward pass per packed pixel, measured on a ``size`` x ``size`` input.

    The probe runs the eager network under any ``torch.compile`` / DDP wrapper: the module the
    (two-pass, default) tiles run. Through the compiled wrapper it would compile one more graph
    for its own size (about a minute, and a slot of dynamo's recompilation limit) and measure
    that graph, which needs less memory than the eager tiles. One-pass tiles run compiled: for
    them the eager figure errs on the safe side."""

    net = unwrap_model(model)
    x = torch.zeros(1, int(net.in_channel), size, size, device=device)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    with autocast_context(device, amp):
        net(x)
    torch.cuda.synchronize(device)
    return max(1.0, (torch.cuda.max_memory_allocated(device) - base) / float(size * size))


@torch.no_grad()
def measure_cpu_memory(model: nn.Module, tiled: bool = False) -> Optional[Tuple[float, float]]:
    """What one pass of ``model`` adds to the process's resident memory on the CPU, as
    ``(bytes per packed pixel, fixed bytes)``: the per-pixel figure is how much the process's peak
    grows from one probe of :data:`CPU_PROBE_SIZES` (``tiled``'s) to the next, the fixed part what the first
    probe's peak holds beyond that above the memory held before. ``tiled``: a tile of the two-pass
    tiles' first pass (for an ONNX export its tile graph, which also returns what every pooling
    point pooled). None where the peak cannot be reset (not Linux). It measures the process, so
    PyTorch networks and ONNX exports alike."""
    runner = unwrap_model(model)
    held = resident_memory()
    peaks = []
    for size in CPU_PROBE_SIZES[tiled]:
        x = torch.zeros(1, int(runner.in_channel), size, size)
        if held is None or not reset_peak_memory():
            return None
        if tiled:
            stats = frame_stats(runner, (size, size))
            try:
                stats.collect_whole_frame()
                runner(x)
            finally:
                stats.close()
        else:
            runner(x)
        peaks.append(peak_memory())
    if None in peaks:
        return None
    (s0, s1), (p0, p1) = CPU_PROBE_SIZES[tiled], peaks
    per_pixel = max((p1 - p0) / float(s1 * s1 - s0 * s0), 1.0)
    return per_pixel, max(p0 - held - per_pixel * s0 * s0, 0.0)


_UNMEASURED = "the memory cannot be measured here (no /proc): whole frame"
#: the figures :func:`cpu_tile` measured, per model: {model: {tiled: (per pixel, fixed)}}
_CPU_MEMORY = weakref.WeakKeyDictionary()


def _cpu_memory(model: nn.Module, tiled: bool) -> Optional[Tuple[float, float]]:
    """:func:`measure_cpu_memory`, once per model and kind of pass (the probe costs about a second)."""
    runner = unwrap_model(model)
    known = _CPU_MEMORY.setdefault(runner, {})
    if tiled not in known:
        known[tiled] = measure_cpu_memory(runner, tiled)
    return known[tiled]


def frame_bytes_per_pixel(model: nn.Module) -> int:
    """Bytes per packed pixel a tiled frame holds besides its tiles: the padded input, the blended
    outputs and their weights (float32), and as much again for the copies made of the outputs."""
    net = unwrap_model(model)
    b, c = int(net.block_size), int(net.in_channel)
    return 2 * 4 * (c + 4 * b * b + 1)


def _asked_memory(max_memory_gb: Optional[float]) -> float:
    """Bytes of ``--max-memory`` as asked (default :data:`CPU_MEMORY_LIMIT`)."""
    return CPU_MEMORY_LIMIT if max_memory_gb is None else float(max_memory_gb) * 2 ** 30


def cpu_memory_limit(max_memory_gb: Optional[float] = None) -> float:
    """Bytes a CPU run may hold at its peak: ``max_memory_gb`` (default :data:`CPU_MEMORY_LIMIT`),
    lowered to what the process holds plus :data:`CPU_MEMORY_FRACTION` of the available memory."""
    limit = _asked_memory(max_memory_gb)
    avail = available_memory()
    if avail is not None:
        limit = min(limit, (resident_memory() or 0) + CPU_MEMORY_FRACTION * avail)
    return limit


def cpu_tile(model: nn.Module, frame_hw: Sequence[int], limit: float, two_pass: bool = True,
             ) -> Tuple[Optional[int], str]:
    """The tile (packed pixels a side) that keeps a frame of ``frame_hw`` within ``limit`` bytes of
    resident memory on the CPU, None when the whole frame fits; and a line saying why, for the log.

    Measured (:func:`measure_cpu_memory`, once per model) on the model that runs, whole frame first;
    the whole frame and the tiles alike plan within :data:`CPU_PLAN_SHARE` of the room above what
    the process holds, with the frame's own buffers (:func:`frame_bytes_per_pixel`): the figures
    come from small probes (a 24 MP photo whole peaked 2 % above its estimate, a Sony frame 10 %
    below). An export's runtime is told to free its buffers before each probe (``release_memory``),
    and the C library's free memory is handed back before the tile probe. Where the memory cannot
    be measured the whole frame runs."""
    h, w = int(frame_hw[0]), int(frame_hw[1])
    release = getattr(unwrap_model(model), "release_memory", None)   # an export's runtime buffers
    if release is not None:
        release()
    trim_memory()
    held = resident_memory() or 0
    whole = _cpu_memory(model, False)
    if whole is None:
        return None, _UNMEASURED
    need = held + whole[1] + (whole[0] + frame_bytes_per_pixel(model)) * h * w   # the network's and the frame's
    gb = 2 ** 30
    planned = held + CPU_PLAN_SHARE * (limit - held)
    if need <= planned:
        return None, f"whole frame, about {need / gb:.2f} GB of {limit / gb:.2f} GB ({held / gb:.2f} GB held before)"
    tiles = whole
    if two_pass:
        if release is not None:   # what the probe left in the runtime
            release()
        # and in the C library: freed, a whole-frame probe's buffers would serve the tile probe's first
        # size and not its second, so its growth per pixel would read low (3.9 against 5.35 KB measured)
        trim_memory()
        tiles = _cpu_memory(model, True)
    if release is not None:
        release()
    if tiles is None:
        return None, _UNMEASURED
    budget = CPU_PLAN_SHARE * (limit - held - tiles[1]) - frame_bytes_per_pixel(model) * h * w
    tile, fits = largest_tile(budget, tiles[0], *tile_limits(model))
    smallest_note = "" if fits else " (the smallest; they may need more)"
    enough = math.ceil((held + (need - held) / CPU_PLAN_SHARE) / gb * 10) / 10
    return tile, (f"the whole frame needs about {need / gb:.2f} GB ({held / gb:.2f} GB held before), more than the "
                  f"{planned / gb:.2f} GB planned within {limit / gb:.2f} GB: tiles of {tile}{smallest_note}; "
                  f"--max-memory {enough:g} would run it whole, sooner")


def auto_tile(model: nn.Module, device, frame_hw: Sequence[int], amp: str = "off",
              max_memory_gb: Optional[float] = None, two_pass: bool = True,
              log: Optional[Callable[[str], None]] = None) -> Optional[int]:
    """``--tile auto``: the largest tile that fits the free memory of a CUDA ``device``, or on the
    CPU that keeps the process within ``max_memory_gb`` (:func:`cpu_memory_limit`, :func:`cpu_tile`);
    None: the whole frame fits (and on any other device). ``log``: gets the CPU's reason."""
    device = torch.device(device)
    if device.type not in ("cuda", "cpu"):     # MPS: unified memory the process's size does not show
        return None
    if device.type == "cpu":
        limit = cpu_memory_limit(max_memory_gb)
        tile, why = cpu_tile(model, frame_hw, limit, two_pass)
        lowered = (f"; --max-memory lowered to what the process holds plus {CPU_MEMORY_FRACTION * 100:.0f}% of the "
                   f"available memory" if limit < _asked_memory(max_memory_gb) else "")
        if log is not None:
            log(f"packed {frame_hw[0]}x{frame_hw[1]}: {why} (--max-memory){lowered}")
        return tile
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)   # torch's own cache
    per_pixel = measure_bytes_per_pixel(model, device, amp)
    return tile_for_memory(free, per_pixel, frame_hw, *tile_limits(model))


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def run_with_fallback(model: nn.Module, x: torch.Tensor, *, tile=None, overlap: int = DEFAULT_OVERLAP,
                      two_pass: bool = True, amp: str = "off", log: Callable[[str], None] = print,
                      name: str = "", auto_tiles: Optional[Dict[Tuple[int, int], Optional[int]]] = None,
                      max_memory_gb: Optional[float] = None, progress: Optional[Callable[[int, int], None]] = None,
                      ) -> Tuple[torch.Tensor, torch.Tensor, Optional[int]]:
    """Run ``model`` on ``x`` whole (``tile`` None), tiled (an int) or with ``tile='auto'``.

    Out of memory -> a message and a retry in smaller tiles (the ``auto`` estimate first, then
    halving), down to the model's smallest tile. Returns ``(rgb, raw, tile used or None)``, the tile as
    it ran: rounded down to the model's multiple (16).
    ``auto_tiles``: a dict the caller keeps for a run: ``tile='auto'`` then measures the memory
    once per input size (packed (h, w)) and reuses the tile that ran (the one :func:`auto_tile`
    chose, or the smaller one an out-of-memory retry fell back to) for the next inputs of that size.
    ``max_memory_gb``: on the CPU, the bound ``'auto'`` keeps to (:func:`cpu_memory_limit`).
    ``progress``: in tiles, called with (tile passes done, in all) after each (:class:`TiledModel`).
    """

    device = x.device
    multiple, smallest = tile_limits(model)
    h, w = x.shape[-2:]
    remember = tile == "auto" and auto_tiles is not None
    if tile == "auto":
        def choose():
            return auto_tile(model, device, (h, w), amp, max_memory_gb, two_pass,
                             log=lambda m: log(f"{name + ': ' if name else ''}{m}"))
        if auto_tiles is None:
            tile = choose()
        else:
            if (h, w) not in auto_tiles:
                auto_tiles[(h, w)] = choose()
            tile = auto_tiles[(h, w)]
    while True:
        # a tile the fallback chose may be small: keep the overlap below half of it
        runner = model if tile is None else TiledModel(model, tile, min(overlap, tile // 2), two_pass, progress)
        try:
            with autocast_context(device, amp):
                rgb, raw = runner(x)
            if remember:  # the tile that ran (after an out-of-memory retry, the smaller one) for the next inputs
                auto_tiles[(h, w)] = tile
            return rgb, raw, (None if tile is None else runner.tile)   # rounded to the multiple
        except RuntimeError as exc:
            if not is_out_of_memory(exc):
                raise
            failed = tile
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if failed is None:
            nxt = auto_tile(model, device, (h, w), amp) if device.type == "cuda" else None
            if nxt is None or nxt >= max(h, w):
                nxt = max(h, w) // 2 // multiple * multiple
        else:
            nxt = failed // 2 // multiple * multiple
        if nxt < smallest or (failed is not None and nxt >= failed):
            raise RuntimeError(f"{name + ': ' if name else ''}out of memory even in tiles of {failed or max(h, w)} "
                               f"packed pixels; free GPU memory or run on the CPU (--device cpu)")
        what = f"the whole frame ({h}x{w} packed)" if failed is None else f"tiles of {failed}"
        log(f"{name + ': ' if name else ''}out of memory on {what}; retrying in tiles of {nxt} packed pixels "
            f"(overlap {min(overlap, nxt // 2)}; set --tile to choose)")
        tile = nxt


class FallbackModel(nn.Module):
    """``model`` behind :func:`run_with_fallback`: whole frames (``tile`` None), tiles, or
    ``tile='auto'``; a whole frame that runs out of GPU memory is retried in tiles, with a message.
    ``forward(x) -> (rgb, raw)`` as the model; the caller's autocast applies. ``used`` is the tile of
    the last call (None: whole frame); with ``'auto'`` the tile is measured once per input size
    and kept for the next inputs of that size (``auto_tiles``)."""

    def __init__(self, model: nn.Module, tile=None, overlap: int = DEFAULT_OVERLAP, two_pass: bool = True,
                 log: Callable[[str], None] = print):
        super().__init__()
        check_tile_arguments(model, tile, overlap)   # a bad size fails here, before any work
        self.net, self.tile, self.overlap, self.two_pass, self.log = model, tile, overlap, two_pass, log
        self.used: Optional[int] = None
        self.auto_tiles: Dict[Tuple[int, int], Optional[int]] = {}

    block_size = TiledModel.block_size
    in_channel = TiledModel.in_channel
    min_input_size = TiledModel.min_input_size

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        rgb, raw, self.used = run_with_fallback(self.net, x, tile=self.tile, overlap=self.overlap,
                                                two_pass=self.two_pass, log=self.log, auto_tiles=self.auto_tiles)
        return rgb, raw


# ---------------------------------------------------------------------------------------------
# Measuring what tiles change (scripts/tiling_table.py, docs/tiling.md)
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def compare_tiling(model: nn.Module, samples, settings: Sequence[Tuple[int, int, bool]], device="cpu",
                   progress: bool = True, total: Optional[int] = None) -> List[Dict[str, float]]:
    """For each (tile, overlap, two_pass) setting: the mean PSNR (dB) of the tiled RGB output
    against the whole-frame output, the mean PSNR of each against the ground truth, and the time
    relative to the whole frame. ``samples``: dicts with ``noisy_raw`` (C, h, w) and ``clean_rgb``
    (3, H, W) tensors (a test dataset), read one at a time; ``total``: their number, for the
    progress bar. Outputs are clamped to [0, 1] as when saved; PSNR as the test report computes
    it (:func:`cans.evaluate.metrics.psnr`, peak 1, float64)."""
    import time

    from tqdm import tqdm


    device = torch.device(device)
    model = model.to(device).eval()
    rows = {s: {"vs_whole": [], "tiled_gt": [], "whole_gt": [], "time": []} for s in settings}
    for sample in tqdm(samples, total=total, desc="tiling", unit="img", disable=not progress):
        x = sample["noisy_raw"][None].to(device)
        gt = sample["clean_rgb"][None].to(device)
        t0 = time.perf_counter()
        whole = model(x)[0].float().clamp(0, 1)
        t_whole = time.perf_counter() - t0
        whole_gt = float(psnr(whole, gt))
        for setting in settings:
            tile, overlap, two_pass = setting
            t0 = time.perf_counter()
            tiled = TiledModel(model, tile, overlap, two_pass)(x)[0].float().clamp(0, 1)
            rows[setting]["time"].append((time.perf_counter() - t0) / t_whole)
            rows[setting]["vs_whole"].append(float(psnr(tiled, whole)))
            rows[setting]["tiled_gt"].append(float(psnr(tiled, gt)))
            rows[setting]["whole_gt"].append(whole_gt)
    out = []
    for (tile, overlap, two_pass), r in rows.items():
        out.append({"tile": tile, "overlap": overlap, "two_pass": two_pass,
                    "psnr_vs_whole": sum(r["vs_whole"]) / len(r["vs_whole"]),
                    "min_psnr_vs_whole": min(r["vs_whole"]),
                    "psnr_gt_tiled": sum(r["tiled_gt"]) / len(r["tiled_gt"]),
                    "psnr_gt_whole": sum(r["whole_gt"]) / len(r["whole_gt"]),
                    "time_vs_whole": sum(r["time"]) / len(r["time"]), "images": len(r["time"])})
    return out


def format_tiling_table(rows: List[Dict[str, float]]) -> str:
    lines = ["| tile (packed px) | overlap | two-pass | PSNR vs whole frame (mean / worst, dB) | "
             "PSNR vs ground truth: tiled / whole (dB) | time vs whole frame |",
             "|---:|---:|:---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['tile']} | {r['overlap']} | {'yes' if r['two_pass'] else 'no'} | "
                     f"{r['psnr_vs_whole']:.2f} / {r['min_psnr_vs_whole']:.2f} | "
                     f"{r['psnr_gt_tiled']:.2f} / {r['psnr_gt_whole']:.2f} | {r['time_vs_whole']:.2f}x |")
    return "\n".join(lines) + "\n"


__all__ = ["TiledModel", "FallbackModel", "tile_for_model", "tile_limits", "check_tile_arguments", "compare_tiling",
           "format_tiling_table", "GlobalPoolStats", "tile_starts", "tile_for_memory", "auto_tile",
           "run_with_fallback", "measure_bytes_per_pixel", "DEFAULT_OVERLAP"]
