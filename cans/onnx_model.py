"""The model as an ONNX graph, run on the CPU by OpenVINO or ONNX Runtime (docs/inference.md,
"Without an NVIDIA GPU").

:func:`export_onnx` traces a CANS / CANS++ network with ``torch.export`` and writes one ``.onnx``
file whose height and width are dynamic: the reflect padding to the model's multiple (16) and the
adaptive pooling are computed from the input's shape inside the graph (see
:func:`cans.models.blocks.adaptive_pool`), so any size from the model's smallest input up runs,
odd sizes included. The file's metadata holds the config (YAML), the block size, the input
channels, the smallest input and the weights' git blob id, so a model file says what it is.

:class:`OnnxModel` puts a runtime behind the network's interface: ``forward(x) -> (rgb, raw)`` on
(B, C, h, w) float32 tensors, with ``block_size``, ``in_channel``, ``min_input_size`` and
``multiple``; tiles, ``--ratio`` and the test protocol use it unchanged. OpenVINO comes first
because it measured fastest on a full frame (docs/performance.md); ONNX Runtime is the other.
An ONNX file is data (a protobuf): reading it runs no Python code.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sys
import time
import warnings
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from .config import apply_overrides, load_config, registry_keys, to_yaml, validate
from .engine.loading import check_checkpoint_path, default_checkpoint, load_model
from .errors import InferenceError
from .evaluate.metrics import fidelity_psnr
from .io.files import atomic_write_bytes, unique_temp_name
from .models import blocks, unwrap_model
from .models.published import describe_weights, published_name, weights_line
from .outdirs import check_output_file
from .requirements import release
from .tiling import GlobalPoolStats

INPUT_NAME = "packed_raw"
OUTPUT_NAMES = ("rgb", "raw")
#: metadata keys of an exported file (strings, as ONNX stores them)
META_PREFIX = "cans."
FORMAT_VERSION = "1"
#: the largest height / width (packed pixels) the graph is traced for (a bound is needed; a
#: 100-megapixel Bayer frame is about 5800 x 4400 packed)
MAX_SIDE = 1 << 15
#: the export check fails below this RGB PSNR (dB) against PyTorch float32 (the goal is 60 dB)
MIN_CHECK_PSNR = 60.0


class MissingPackageError(InferenceError):
    """A runtime (or, to export, onnx / onnxscript) is not installed: one line, exit 2."""


#: the runtimes an export runs on, fastest first on the CPUs measured (docs/performance.md): ``auto``
#: takes the first one installed
RUNTIMES = ("openvino", "onnxruntime")
#: what an export computes in: float32, or bfloat16 (OpenVINO's CPU plugin only: its inference
#: precision hint; the weights and activations in bfloat16, accumulation in float32)
PRECISIONS = ("f32", "bf16")
_RUNTIME_NAMES = {"openvino": "OpenVINO", "onnxruntime": "ONNX Runtime"}


def runtime_name(runtime: str) -> str:
    """'OpenVINO' / 'ONNX Runtime', for messages."""
    return _RUNTIME_NAMES.get(runtime, runtime)


def require_runtime(runtime: str = "auto") -> str:
    """The runtime to use (``auto``: the first of :data:`RUNTIMES` installed); MissingPackageError,
    saying what to install, when it (or, for ``auto``, every one) is missing."""
    import importlib

    if runtime not in ("auto",) + RUNTIMES:
        raise InferenceError(f"--runtime {runtime}: expected auto, {' or '.join(RUNTIMES)}")
    for name in (RUNTIMES if runtime == "auto" else (runtime,)):
        try:
            importlib.import_module(name)
            return name
        except ImportError:
            continue
    if runtime == "auto":
        raise MissingPackageError("neither OpenVINO nor ONNX Runtime is installed: pip install openvino "
                                  "onnxruntime (both are in requirements.txt)")
    raise MissingPackageError(f"{runtime_name(runtime)} is not installed: pip install {runtime} (it is in "
                              f"requirements.txt), or choose the other --runtime")


def require_exporter() -> None:
    """:class:`MissingPackageError` unless what ``torch.onnx.export(dynamo=True)`` needs is there:
    PyTorch 2.5 or newer, onnx and onnxscript (with its onnx_ir)."""

    if (release(torch.__version__) or (0, 0)) < (2, 5):
        raise MissingPackageError(f"exporting to ONNX needs PyTorch 2.5 or newer (torch.onnx.export with "
                                  f"dynamo=True); this is {torch.__version__}")
    try:
        import onnx  # noqa: F401
        import onnx_ir  # noqa: F401   (onnxscript 0.4 and newer bring it)
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise MissingPackageError(f"exporting to ONNX needs the package {exc.name or 'onnx'}: pip install onnx "
                                  f"'onnxscript>=0.4' (both are in requirements.txt)") from None


def default_onnx_path(checkpoint: str) -> str:
    """Where the export of ``checkpoint`` goes by default, and where infer.py looks for it: beside
    the checkpoint, ``.pth`` replaced by ``.onnx``."""
    root, ext = os.path.splitext(checkpoint)
    return (root if ext.lower() in (".pth", ".pt", ".ckpt") else checkpoint) + ".onnx"


def model_facts(net: nn.Module) -> Dict[str, int]:
    """The shape facts a runner needs: block size, input channels, smallest input, padding multiple."""
    missing = [a for a in ("block_size", "in_channel", "min_input_size", "multiple") if not hasattr(net, a)]
    if missing:
        raise InferenceError(f"{type(net).__name__}: cannot export a model without {', '.join(missing)} "
                             f"(the in-tree CANS and CANS_Plus have them; docs/extending.md)")
    return {a: int(getattr(net, a)) for a in ("block_size", "in_channel", "min_input_size", "multiple")}


#: the tile graph's export time as a share of the model graph's, for the estimate the export prints
#: (as measured on the paper's CANS++: docs/inference.md)
TILE_GRAPH_SHARE = 0.6

#: the steps torch.onnx.export(verbose=True) announces ("[torch.onnx] Run decompositions..."), as
#: the export's progress names them
_EXPORTER_STEPS = (("Obtain model graph", "tracing (torch.export)"),
                   ("Run decompositions", "converting: decomposing into core operators"),
                   ("Translate the graph into ONNX", "converting: translating into ONNX"))


class _StepLines(io.TextIOBase):
    """Stands in for stdout during ``torch.onnx.export(verbose=True)``: each step it starts becomes
    one ``log`` line (with the seconds since ``start``); the rest it prints (its ticks, its
    reports) is dropped, as with ``verbose=False``."""

    def __init__(self, what: str, log: Callable[[str], None], stdout, start: float):
        self.what, self.log, self.stdout, self.start, self.pending = what, log, stdout, start, ""

    def write(self, text: str) -> int:
        self.pending += text
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            line = line.replace("[torch.onnx]", "").strip()
            step = next((name for key, name in _EXPORTER_STEPS if line.startswith(key) and line.endswith("...")), None)
            if step:
                sys.stdout = self.stdout   # the log line goes where stdout went before
                try:
                    self.log(f"{self.what}: {step} ... ({time.perf_counter() - self.start:.0f} s so far)")
                finally:
                    sys.stdout = self
        return len(text)


@contextlib.contextmanager
def _exporter_steps(what: str, log: Optional[Callable[[str], None]], start: float) -> Iterator[Dict[str, Any]]:
    """The keyword arguments that make torch.onnx.export report its steps through ``log`` (none
    when ``log`` is None: the export is quiet)."""
    if log is None:
        yield {"verbose": False}
        return
    real = sys.stdout
    sys.stdout = _StepLines(what, log, real, start)
    try:
        yield {"verbose": True}
    finally:
        sys.stdout = real


def _optimize_graph(program, what: str, log: Optional[Callable[[str], None]], start: float) -> None:
    """What ``torch.onnx.export(optimize=True)`` does to the graph, less onnxscript's pattern
    rewrites: inlining, constant folding, unused nodes removed, constants lifted to initializers,
    duplicate initializers and common subexpressions merged (so the CANS++ heads' three LayerNorms
    of the same features make one standardised map). The rewrites took almost half of the export's
    time and change nothing OpenVINO compiles (docs/performance.md, "The export skips onnxscript's
    pattern rewrites")."""
    from onnx_ir.passes import common
    from onnxscript.optimizer import fold_constants

    if log:
        log(f"{what}: converting: optimizing the ONNX graph ... ({time.perf_counter() - start:.0f} s so far)")
    model = program.model
    common.InlinePass()(model)
    for _ in range(2):          # as onnxscript's optimizer: a fold can make another foldable
        fold_constants(model, onnx_shape_inference=True)
        common.RemoveUnusedNodesPass()(model)
    for step in (common.RemoveUnusedFunctionsPass(), common.RemoveUnusedOpsetsPass(),
                 common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
                 common.LiftSubgraphInitializersToMainGraphPass(), common.DeduplicateInitializersPass(),
                 common.CommonSubexpressionEliminationPass()):
        step(model)


@torch.no_grad()
def export_onnx(model: nn.Module, path: str, *, config: Optional[Mapping[str, Any]] = None,
                weights_git_blob: str = "", checkpoint: str = "", opset: Optional[int] = None,
                example_hw: Optional[Tuple[int, int]] = None, tiles_to: Optional[str] = None,
                tiles_name: Optional[str] = None, log: Optional[Callable[[str], None]] = None) -> Dict[str, str]:
    """Export ``model`` (float32, eval, on the CPU) to ``path``; returns the metadata written.

    Height and width are dynamic (from the model's smallest input up); the batch is 1. Files are
    written whole or not at all (:func:`cans.io.files.atomic_write_bytes`). ``tiles_to``: also write
    the tile graph (:class:`_TileGraph`, for two-pass tiles) there; the metadata names it
    ``tiles_name`` (default: the basename of :func:`tile_graph_path` of ``path``), the file it will
    have beside ``path``. ``log``: called with a line per step (tracing, converting) of each graph,
    and how long the tile graph is estimated to take; none by default."""
    import onnx


    require_exporter()
    net = unwrap_model(model).float().cpu().eval()
    facts = model_facts(net)
    lo, m = facts["min_input_size"], facts["multiple"]
    # a multiple of the padding multiple: traced at a size that needs padding, torch.export derives
    # contradictory bounds for the padded size; the graph pads any other size all the same (tested)
    h, w = example_hw or (-(-max(lo, 4 * m) // m) * m, -(-max(lo, 6 * m) // m) * m)
    x = torch.rand(1, facts["in_channel"], h, w, generator=torch.Generator().manual_seed(0))
    dims = {2: torch.export.Dim("height", min=lo, max=MAX_SIDE), 3: torch.export.Dim("width", min=lo, max=MAX_SIDE)}
    kwargs = {"optimize": False, **({"opset_version": opset} if opset else {})}   # then _optimize_graph
    # the exporter warns once per torchvision operator it cannot register when torchvision (not a
    # dependency here) is missing: noise for a model that uses none of them
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        start = time.perf_counter()
        with _exporter_steps("model graph", log, start) as verbose:
            program = torch.onnx.export(net, (x,), dynamo=True, dynamic_shapes=({**dims},),
                                        input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES), **kwargs, **verbose)
        _optimize_graph(program, "model graph", log, start)
        took = time.perf_counter() - start
        if log:
            log(f"model graph: done in {took:.0f} s" + (f"; the tile graph next, about {TILE_GRAPH_SHARE * took:.0f} s "
                                                        f"(estimated: {TILE_GRAPH_SHARE:g} times the model graph's)"
                                                        if tiles_to else ""))
        if tiles_to:
            start = time.perf_counter()
            points = pool_points(net, x)
            given = [torch.zeros(1, c, size, size) for c, size in points]
            with warnings.catch_warnings(), _exporter_steps("tile graph", log, start) as verbose:
                # the list input: "dynamic axes will not be renamed", harmless
                warnings.filterwarnings("ignore", message=".*dynamic axes will not be renamed")
                tiles = torch.onnx.export(
                    _TileGraph(net).eval(), (x, torch.zeros(()), list(given)), dynamo=True,
                    dynamic_shapes=({**dims}, None, [None] * len(points)),
                    input_names=[INPUT_NAME, "use_given"] + [f"given_{k}" for k in range(len(points))],
                    output_names=list(OUTPUT_NAMES) + [f"feature_{k}" for k in range(len(points))], **kwargs,
                    **verbose)
            _optimize_graph(tiles, "tile graph", log, start)
            if log:
                log(f"tile graph: done in {time.perf_counter() - start:.0f} s")
    finally:
        registration.setLevel(level)
    proto = program.model_proto
    meta = {f"{META_PREFIX}{k}": str(v) for k, v in facts.items()}
    meta.update({f"{META_PREFIX}format": FORMAT_VERSION, f"{META_PREFIX}weights_git_blob": weights_git_blob,
                 f"{META_PREFIX}checkpoint": checkpoint, f"{META_PREFIX}torch": torch.__version__,
                 f"{META_PREFIX}model_type": type(net).__name__})
    if config is not None:
        meta[f"{META_PREFIX}config"] = to_yaml(dict(config))
    if tiles_to:
        meta[f"{META_PREFIX}tile_graph"] = tiles_name or os.path.basename(tile_graph_path(path))
        meta[f"{META_PREFIX}pool_points"] = json.dumps(points)
        atomic_write_bytes(tiles.model_proto.SerializeToString(), tiles_to, what="ONNX tile graph")
    onnx.helper.set_model_props(proto, meta)
    atomic_write_bytes(proto.SerializeToString(), path, what="ONNX model")
    return meta


def read_metadata(path: str) -> Dict[str, str]:
    """The ``cans.*`` metadata of an exported file (prefix removed); InferenceError for a missing
    file, one that is not a readable ONNX model, or one not written by :func:`export_onnx`."""
    if not os.path.isfile(path):
        raise InferenceError(f"--onnx {path}: no such file (make it with scripts/export_onnx.py)")
    try:
        import onnx
    except ImportError:
        raise MissingPackageError("reading an ONNX model needs the package onnx: pip install onnx (it is in "
                                  "requirements.txt)") from None
    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise InferenceError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {first})") from None
    meta = {p.key[len(META_PREFIX):]: p.value for p in proto.metadata_props if p.key.startswith(META_PREFIX)}
    if "block_size" not in meta:
        raise InferenceError(f"{path}: an ONNX model without the cans.* metadata scripts/export_onnx.py writes "
                             f"(block size, input channels, config); export it with that script")
    return meta


def _onnxruntime_runner(path: str, threads: Optional[int]):
    """ONNX Runtime on the CPU: every graph optimisation, no memory arena (the arena keeps the
    largest frame's buffers for the session's life: 4.8 against 2.9 GB peak for a quarter Sony
    frame, at about the same speed; docs/performance.md). Returns ``run(feeds) -> [outputs]``
    (numpy arrays, in the graph's output order)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = False
    if threads:
        options.intra_op_num_threads = int(threads)
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda feeds: session.run(None, feeds)


#: lines of a runtime's error that say where in its sources it was raised, not why: OpenVINO's
#: "Exception from src/.../core.cpp:132:", "Check 'false' failed at src/.../frontend.cpp:47:",
#: ONNX Runtime's "[ONNXRuntimeError] : 1 : FAIL : " and "tensorprotoutils.cc:592 Function "
_RUNTIME_NOISE = (re.compile(r"^(Exception from|Check '.*' failed at) \S+:\d+:?$"),
                  re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : "),
                  re.compile(r"\b[\w/]+\.(cc|cpp|h):\d+ \w+ "))


def runtime_error_text(exc: BaseException) -> str:
    """The reason in a runtime's error, on one line: OpenVINO's message is a stack of source
    locations with the reason last (a path outside the model's folder, a missing file ...)."""
    kept = []
    for line in str(exc).splitlines():
        line = line.strip()
        if not line or _RUNTIME_NOISE[0].match(line):
            continue
        for noise in _RUNTIME_NOISE[1:]:
            line = noise.sub("", line)
        if line:
            kept.append(line.rstrip(":"))
    return "; ".join(kept) if kept else type(exc).__name__


_OV_CORE = []


def _openvino_core():
    """One ``openvino.Core`` for the process. With one Core per model, a process that had loaded
    and freed two models crashed (SIGSEGV) on the next SIGINT (Ctrl-C) in this OpenVINO release."""
    if not _OV_CORE:
        import openvino as ov
        _OV_CORE.append(ov.Core())
    return _OV_CORE[0]


def _openvino_config(threads: Optional[int], precision: str) -> Dict[str, Any]:
    """OpenVINO's CPU plugin in ``precision`` (float32 unless asked: it would otherwise pick
    bfloat16 where the CPU has it), on ``threads`` threads (its default: every core)."""
    config: Dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


def _openvino_runner(path: str, threads: Optional[int], precision: str = "f32"):
    """The export compiled by OpenVINO (:func:`_openvino_config`) for any size. Returns
    ``run(feeds) -> [outputs]`` (numpy arrays, in the graph's output order)."""
    compiled = _openvino_core().compile_model(path, "CPU", _openvino_config(threads, precision))
    outputs = list(compiled.outputs)

    def run(feeds):
        result = compiled(feeds)
        return [np.asarray(result[o]) for o in outputs]
    # OpenVINO keeps the buffers of the largest input it ran until told otherwise
    run.release = compiled.release_memory
    return run


def _compile_for_size(path: str, model, size: Sequence[int], config: Mapping[str, Any]):
    """``model`` (the ``openvino.Model`` read from ``path``) compiled for an input of ``size``;
    an :class:`InferenceError` naming the file and the size where it does not compile."""
    import openvino as ov

    model = model.clone()
    try:
        model.reshape({INPUT_NAME: ov.PartialShape(list(size))})
        return _openvino_core().compile_model(model, "CPU", dict(config))
    except Exception as exc:
        raise InferenceError(f"{path}: OpenVINO cannot compile it for an input of "
                             f"{'x'.join(map(str, size))} ({runtime_error_text(exc)})") from None


class _SizedOpenVINORunner:
    """The export compiled by OpenVINO for the size of the input it runs (:func:`_compile_for_size`),
    compiled again when the size changes; the previous size's compiled model is dropped first.
    Against one compile for every size it holds less memory and its first call is faster
    (docs/performance.md). ``run(feeds) -> [outputs]`` as :func:`_openvino_runner`."""

    def __init__(self, path: str, threads: Optional[int], precision: str = "f32"):
        self.path = path
        self.model = _openvino_core().read_model(path)
        self.config = _openvino_config(threads, precision)
        self.size = None
        self.compiled = None

    def _compile(self, size: Tuple[int, ...]) -> None:
        self.compiled = self.size = None   # the last size's buffers go before the next size's come
        self.compiled = _compile_for_size(self.path, self.model, size, self.config)
        self.size = size

    def __call__(self, feeds):
        size = tuple(feeds[INPUT_NAME].shape)
        if size != self.size:
            self._compile(size)
        result = self.compiled(feeds)
        return [np.asarray(result[o]) for o in self.compiled.outputs]

    def release(self) -> None:
        if self.compiled is not None:
            self.compiled.release_memory()


def openvino_counters(path: str, x: np.ndarray, threads: Optional[int] = None,
                      precision: str = "f32") -> Dict[str, float]:
    """Where OpenVINO spends one run of the export on ``x`` (1, C, h, w), compiled for its size as
    :class:`OnnxModel` runs a whole frame: its per-layer counters (``PERF_COUNT``) summed by operator
    type, in seconds, largest first; ``"total"`` their sum. The mean of two runs after a first one,
    which also touches every buffer for the first time (its layers take up to ten times as long).
    A request's counters are the mean over all its runs so far, so the first run is taken out."""
    config = {**_openvino_config(threads, precision), "PERF_COUNT": "YES"}
    model = _openvino_core().read_model(path)
    request = _compile_for_size(path, model, x.shape, config).create_infer_request()
    request.infer({INPUT_NAME: x})
    first = {layer.node_name: layer.real_time.total_seconds() for layer in request.get_profiling_info()}
    for _ in range(2):
        request.infer({INPUT_NAME: x})
    by_type: Dict[str, float] = {}
    for layer in request.get_profiling_info():   # runs 2 and 3: three times the mean, less run 1
        later = 3 * layer.real_time.total_seconds() - first.get(layer.node_name, 0.0)
        by_type[layer.node_type] = by_type.get(layer.node_type, 0.0) + max(later, 0.0) / 2
    ordered = dict(sorted(by_type.items(), key=lambda kv: -kv[1]))
    return {"total": sum(ordered.values()), **ordered}


def _release(run) -> None:
    """Let a runtime free the buffers it keeps between runs (OpenVINO keeps those of the largest
    input; ONNX Runtime, without its memory arena, keeps none)."""
    release = getattr(run, "release", None)
    if release is not None:
        release()


def tile_graph_path(path: str) -> str:
    """The tile graph written beside an export: ``X.onnx`` -> ``X.tiles.onnx``."""
    return (path[:-5] if path.lower().endswith(".onnx") else path) + ".tiles.onnx"


class _TileGraph(nn.Module):
    """The network with its pooling points exposed, for two-pass tiles (:mod:`cans.tiling`).

    forward(x, use, given) -> (rgb, raw, *features): ``use`` a 0-d float (0: each pooling point
    uses its own pooled value, 1: the ``given`` one, (1, C_k, s, s) per point, in call order);
    ``features`` are what each pooling point pooled, (1, C_k, h_k, w_k). Pass 1 of the tiles runs
    it with ``use`` 0 and sums the features over the frame's pooling windows; pass 2 with 1 and
    the frame-wide means: what :class:`cans.tiling.GlobalPoolStats` does in PyTorch through the same
    tap."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x, use, given):

        feats = []

        def tap(feat, pooled):
            k = len(feats)
            feats.append(feat)
            return torch.where(use > 0, given[k], pooled)
        with blocks.pool_tap(tap):
            rgb, raw = self.net(x)
        return (rgb, raw, *feats)


def pool_points(net: nn.Module, x: torch.Tensor) -> list:
    """[(channels, size)] of every pooling call of one forward pass of ``net`` on ``x``, in order."""

    points = []
    with blocks.pool_tap(lambda feat, pooled: points.append((int(pooled.shape[1]), int(pooled.shape[-1]))) or pooled):
        net(x)
    return points


class OnnxModel(nn.Module):
    """An exported model run on the CPU by OpenVINO or ONNX Runtime, behind the network's interface.

    ``forward(x)``: x (B, in_channel, h, w) float32, h and w at least ``min_input_size`` ->
    ``(rgb (B, 3, h*b, w*b), raw (B, b*b, h, w))`` float32 CPU tensors, unclamped as the network's.
    ``runtime``: 'auto' (the first of :data:`RUNTIMES` installed), 'openvino' or 'onnxruntime';
    ``precision``: one of :data:`PRECISIONS` ('bf16': OpenVINO only);
    ``config``: the exporting run's config (a dict, from the metadata); ``weights_git_blob``: the
    blob id of the checkpoint it was exported from."""

    def __init__(self, path: str, threads: Optional[int] = None, runtime: str = "auto",
                 meta: Optional[Dict[str, str]] = None, precision: str = "f32"):
        super().__init__()
        import yaml

        self.path = path
        if precision not in PRECISIONS:
            raise InferenceError(f"--precision {precision}: expected {' or '.join(PRECISIONS)}")
        self.precision = precision
        if precision != "f32" and runtime == "auto":
            runtime = "openvino"
        self.runtime = require_runtime(runtime)
        if precision != "f32" and self.runtime != "openvino":
            raise InferenceError(f"--precision {precision} runs on OpenVINO (its CPU plugin's {precision}); "
                                 f"ONNX Runtime runs the export in float32: use --runtime openvino")
        self.meta = meta if meta is not None else read_metadata(path)   # meta: read already by the caller
        try:
            self.block_size = int(self.meta["block_size"])
            self.in_channel = int(self.meta["in_channel"])
            self.min_input_size = int(self.meta["min_input_size"])
            self.multiple = int(self.meta["multiple"])
            self.config = exported_config(self.meta)
        except (KeyError, ValueError, yaml.YAMLError) as exc:
            raise InferenceError(f"{path}: damaged cans.* metadata ({type(exc).__name__}: {exc})") from None
        self.weights_git_blob = self.meta.get("weights_git_blob", "")
        self.threads = threads
        self._run = self._load(path, sized=True)
        self._tiles = None    # the tile graph's runner, loaded on first use
        self._stats = None    # the two-pass statistics of the frame being tiled (pool_stats)

    def _load(self, path: str, sized: bool = False):
        """A runner of the graph at ``path``; ``sized``: OpenVINO compiles it for each input's size
        (:class:`_SizedOpenVINORunner`: the whole-frame graph; the tile graph runs tiles of several
        sizes in turn, and compiles once for all)."""
        try:
            if self.runtime == "openvino":
                if sized:
                    return _SizedOpenVINORunner(path, self.threads, self.precision)
                return _openvino_runner(path, self.threads, self.precision)
            return _onnxruntime_runner(path, self.threads)
        except Exception as exc:
            raise InferenceError(f"{path}: {runtime_name(self.runtime)} cannot load it "
                                 f"({runtime_error_text(exc)})") from None

    def run_numpy(self, x: np.ndarray):
        """(rgb, raw) of one (1, C, h, w) float32 array, whole frame."""
        return tuple(self._run({INPUT_NAME: x})[:2])

    def pool_stats(self, frame_hw: Tuple[int, int]):
        """Two-pass tiles (:class:`cans.tiling.TiledModel`): the statistics object the tiles fill
        (pass 1) and read (pass 2), served by the tile graph written beside the export."""

        if self._tiles is None:
            tiles = os.path.join(os.path.dirname(self.path), self.meta.get("tile_graph", ""))
            if not self.meta.get("tile_graph") or not os.path.isfile(tiles):
                raise InferenceError(f"{self.path}: two-pass tiles need its tile graph {tile_graph_path(self.path)}, "
                                     f"which is missing; export again with scripts/export_onnx.py, or pass --one-pass")
            self._tiles = self._load(tiles)
        _release(self._run)   # the whole-frame graph's buffers are not needed while tiles run

        def close():
            self._stats = None
            _release(self._tiles)
        self._stats = GlobalPoolStats(None, frame_hw)
        self._stats.on_close = close
        return self._stats

    def release_memory(self) -> None:
        """Free the buffers the runtime keeps from the last run of each graph."""
        _release(self._run)
        if self._tiles is not None:
            _release(self._tiles)

    def _run_one(self, x: np.ndarray):
        stats = self._stats
        if stats is None or stats.mode not in ("collect", "apply"):
            return self.run_numpy(x)
        points = self.pool_points
        apply = stats.mode == "apply"
        feeds = {INPUT_NAME: x, "use_given": np.asarray(1.0 if apply else 0.0, dtype=np.float32)}
        like = torch.zeros(())
        for k, (c, size) in enumerate(points):
            feeds[f"given_{k}"] = (stats.mean(("onnx", k), like).numpy().astype(np.float32) if apply
                                   else np.zeros((1, c, size, size), np.float32))
        outs = self._tiles(feeds)
        if not apply:
            for k, (c, size) in enumerate(points):
                stats.collect(("onnx", k), torch.from_numpy(outs[2 + k]), size)
        return outs[0], outs[1]

    @property
    def pool_points(self) -> list:
        return [tuple(p) for p in json.loads(self.meta.get("pool_points", "[]"))]

    @property
    def runtime_name(self) -> str:
        return runtime_name(self.runtime)

    def padding(self, h: int, w: int) -> Tuple[int, int, int, int]:
        """(left, right, top, bottom) reflect padding to the multiple, as the graph pads."""
        dh, dw = (-h) % self.multiple, (-w) % self.multiple
        return dw // 2, dw - dw // 2, dh // 2, dh - dh // 2

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channel:
            raise ValueError(f"{os.path.basename(self.path)} expects a packed RAW tensor of shape "
                             f"(B, {self.in_channel}, H, W), got {tuple(x.shape)}")
        if min(x.shape[-2:]) < self.min_input_size:
            raise ValueError(f"input of {x.shape[-2]}x{x.shape[-1]} (packed) is too small: the smallest size "
                             f"accepted is {self.min_input_size}x{self.min_input_size}")

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        self.check_input(x)
        arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
        outs = [self._run_one(arr[i:i + 1]) for i in range(arr.shape[0])]
        if len(outs) == 1:
            return torch.from_numpy(outs[0][0]), torch.from_numpy(outs[0][1])
        return tuple(torch.cat([torch.from_numpy(o[i]) for o in outs]) for i in (0, 1))


@torch.no_grad()
def compare_with_pytorch(onnx_model: OnnxModel, net: nn.Module, sizes: Sequence[Tuple[int, int]],
                         seed: int = 0, each: Optional[Callable[[Dict[str, Any]], None]] = None) -> list:
    """Run both on random packed inputs of each (h, w); per size ``{"size", "max_abs_rgb", "max_abs_raw",
    "rgb_psnr"}`` (:func:`cans.evaluate.metrics.fidelity_psnr`, None when identical). ``each``: called
    with each row as soon as it is measured."""

    rows = []
    gen = torch.Generator().manual_seed(seed)
    for h, w in sizes:
        x = torch.rand(1, onnx_model.in_channel, h, w, generator=gen)
        rgb_t, raw_t = net(x)
        rgb_o, raw_o = onnx_model(x)
        rows.append({"size": (h, w), "max_abs_rgb": float((rgb_o - rgb_t).abs().max()),
                     "max_abs_raw": float((raw_o - raw_t).abs().max()), "rgb_psnr": fidelity_psnr(rgb_o, rgb_t)})
        if each:
            each(rows[-1])
    return rows


def exported_config(meta: Mapping[str, str]) -> Dict[str, Any]:
    """The config stored in an export's metadata (a dict; empty when there is none)."""
    import yaml

    return yaml.safe_load(meta.get("config", "")) or {}


def model_differences(exported: Mapping[str, Any], cfg: Mapping[str, Any]) -> list:
    """The ``model:`` keys in which ``cfg`` differs from an export's config (``type`` first: it says
    the most); none when the export holds no config."""
    exported, wanted = dict(exported.get("model") or {}), dict(cfg.get("model") or {})
    if not exported:
        return []
    return sorted((k for k in set(exported) | set(wanted) if exported.get(k) != wanted.get(k)),
                  key=lambda k: (k != "type", k))


def check_same_model(onnx_model: OnnxModel, cfg: Mapping[str, Any], where: str) -> None:
    """InferenceError when the config's ``model:`` differs from the one the file was exported with
    (a Sony config with a Fuji export, another width ...), naming the keys that differ."""
    exported = dict(onnx_model.config.get("model") or {})
    wanted = dict(cfg.get("model") or {})
    keys = model_differences(onnx_model.config, cfg)
    if keys:
        shown = "; ".join(f"{k}: {wanted.get(k)!r} in {where}, {exported.get(k)!r} in the export" for k in keys[:3])
        raise InferenceError(f"{onnx_model.path} was exported from another model than {where} describes ({shown}); "
                             f"use its config, or leave -c out to use the one stored in the file")


def config_for_export(onnx_model: OnnxModel, config_path: Optional[str], overrides: Sequence[str] = ()) -> Dict:
    """The config a run with an export uses: ``config_path`` (which must describe the exported
    model, :func:`check_same_model`), else the one stored in the file; ``overrides`` applied."""

    if config_path:
        cfg = load_config(config_path, list(overrides))
        check_same_model(onnx_model, cfg, config_path)
        return cfg
    cfg = apply_overrides(dict(onnx_model.config), list(overrides))
    check_no_outside_class(onnx_model, cfg)
    return validate(cfg)


def check_no_outside_class(onnx_model: OnnxModel, cfg: Mapping[str, Any]) -> None:
    """InferenceError when ``cfg`` still holds a ``package.module:Class`` type of the config stored in
    the file (``model.type``, ``data.type``, the losses'): a model file is data, and validating such
    a type would import that module, so it is refused before anything is imported; the user's own
    config (``-c``) or a ``--set`` of that key names a class from the command line instead."""

    def value(tree, key):
        for part in key.split("."):
            tree = tree.get(part) if isinstance(tree, Mapping) else None
        return tree

    for key in registry_keys():
        stored = value(onnx_model.config, key)
        if isinstance(stored, str) and ":" in stored and value(cfg, key) == stored:
            raise InferenceError(f"{onnx_model.path}: the config stored in it names {key} {stored!r}, a class from "
                                 f"outside the repository, which is not imported from a model file; pass -c with "
                                 f"your config (the one it was exported with) to use it")


def weights_info(onnx_model: OnnxModel) -> Dict[str, Optional[str]]:
    """``{"path", "git_blob", "published", "onnx"}`` for reports: the checkpoint the file was exported
    from, by its git blob id (:func:`cans.models.published.describe_weights`'s fields)."""

    blob = onnx_model.weights_git_blob
    return {"path": onnx_model.meta.get("checkpoint", ""), "git_blob": blob or "unknown",
            "published": published_name(blob) if blob else None, "onnx": os.path.abspath(onnx_model.path)}


def check_sizes(facts: Mapping[str, int]) -> list:
    """The (h, w) the export is checked at: the smallest input and sizes that need padding, odd ones included."""
    lo, m = facts["min_input_size"], facts["multiple"]
    return [(lo, lo + 2), (4 * m + 1, 6 * m + 3), (5 * m - 1, 3 * m + 7)]


def export_checkpoint(config: str, *, overrides: Sequence[str] = (), checkpoint: Optional[str] = None,
                      out: Optional[str] = None, opset: Optional[int] = None, runtime: str = "auto",
                      log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Export the model of ``config`` (with its ``--set`` ``overrides``) and ``checkpoint`` (default:
    the config's ``test.checkpoint``, else the published weights' place) to ``out`` (default: the
    checkpoint's path with .onnx) with its tile graph beside it, check the export against PyTorch
    with ``runtime`` on inputs that need padding, and move the files into place only when the check
    passes. ``log`` gets each step as it starts.

    Returns ``{"out", "checkpoint", "written": bool, "worst_psnr": float}``: ``written`` False when the
    check failed (no file is left at ``out`` then)."""

    require_exporter()
    require_runtime(runtime)
    cfg = load_config(config, overrides)
    checkpoint = checkpoint or cfg["test"].get("checkpoint") or default_checkpoint(cfg)
    check_checkpoint_path(checkpoint)
    out = out or default_onnx_path(checkpoint)
    if not out.lower().endswith(".onnx") or os.path.abspath(out) == os.path.abspath(checkpoint):
        raise InferenceError(f"--out {out}: expected a file name ending in .onnx (not the checkpoint, not a folder)")
    check_output_file(out, "--out")
    model = load_model(cfg, checkpoint, torch.device("cpu"))
    weights = describe_weights(checkpoint)
    log(f"weights: {weights_line(weights)}")
    facts = model_facts(model)
    sizes = check_sizes(facts)
    log(f"exporting {type(model).__name__} (block size {facts['block_size']}, {facts['in_channel']} input channels) "
        f"with dynamic height and width, from {facts['min_input_size']} packed pixels up: the model graph, then "
        f"the tile graph, then a check at {len(sizes)} sizes (the paper's CANS++ takes about a minute on 2 CPU "
        f"cores) ...")
    tmp, tmp_tiles = unique_temp_name(out), unique_temp_name(tile_graph_path(out))
    try:
        start = time.perf_counter()
        export_onnx(model, tmp, config=cfg, weights_git_blob=weights["git_blob"], checkpoint=checkpoint,
                    opset=opset, tiles_to=tmp_tiles, tiles_name=os.path.basename(tile_graph_path(out)), log=log)
        took = time.perf_counter() - start
        log(f"exported in {took:.1f} s ({os.path.getsize(tmp) / 2 ** 20:.1f} MiB, the tile graph "
            f"{os.path.getsize(tmp_tiles) / 2 ** 20:.1f} MiB)")
        onnx_model = OnnxModel(tmp, runtime=runtime)
        log(f"check: {onnx_model.runtime_name} against PyTorch at {len(sizes)} sizes, about "
            f"{max(1, round(took / 10))} s (estimated: a tenth of the export) ...")

        shown = []

        def show(r):
            shown.append(r)
            psnr = "identical" if r["rgb_psnr"] is None else f"{r['rgb_psnr']:.1f} dB"
            log(f"check: packed {r['size'][0]}x{r['size'][1]} ({len(shown)}/{len(sizes)}): "
                f"{onnx_model.runtime_name} vs PyTorch max |diff| rgb {r['max_abs_rgb']:.1e}, raw "
                f"{r['max_abs_raw']:.1e}; RGB PSNR {psnr}")
        rows = compare_with_pytorch(onnx_model, model, sizes, each=show)
        worst = min((r["rgb_psnr"] if r["rgb_psnr"] is not None else float("inf")) for r in rows)
        written = worst >= MIN_CHECK_PSNR
        if written:
            os.replace(tmp_tiles, tile_graph_path(out))   # first: the model file names it
            os.replace(tmp, out)
    finally:
        for left in (tmp, tmp_tiles):
            if os.path.exists(left):
                os.remove(left)
    return {"out": out, "checkpoint": checkpoint, "written": written, "worst_psnr": worst}


__all__ = ["INPUT_NAME", "OUTPUT_NAMES", "RUNTIMES", "MissingPackageError", "OnnxModel", "check_no_outside_class",
           "check_same_model", "check_sizes", "compare_with_pytorch", "config_for_export", "default_onnx_path",
           "export_checkpoint", "export_onnx", "exported_config", "model_differences", "model_facts", "pool_points",
           "read_metadata", "require_exporter", "require_runtime", "runtime_error_text", "runtime_name",
           "tile_graph_path", "weights_info"]
