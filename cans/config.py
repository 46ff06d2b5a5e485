"""YAML configuration: ``base:`` inheritance, ``--set`` overrides, schema validation.

``load_config(path, overrides=None)`` returns the resolved configuration as a plain
``dict``. Every key the project reads is declared in ``SCHEMA`` below, with its type
and default: an unknown or misspelt key fails with its dotted path, where it came from (the
file and line, or the ``--set`` override) and the likeliest valid names; a value of the wrong
type or out of the key's range (a negative ``train.epochs``, ``train.base_lr: 0``, a float that
is inf or nan, a list of the wrong length) fails with what was expected, and where it came from.
Files and overrides nested deeper than ``MAX_NESTING`` are refused as they are read, and so is a
key given twice in one mapping of a file (PyYAML would keep the last silently). A key the schema
no longer has (``RETIRED``) gets a line saying why, not a "did you mean".

Inheritance: a file may name ``base: other.yaml`` (a path relative to the file, or a
list of them, applied in order); the file's own keys are merged over the base's,
mappings recursively. Overrides are ``dotted.key=value`` strings whose values are
parsed as YAML (``train.base_lr=1e-4``, ``model.enc_blk_nums=[1,1,1,1]``).
"""
from __future__ import annotations

import copy
import difflib
import math
import os
import reprlib
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import yaml

from .errors import ConfigError
from .io.files import atomic_write_text
from .registry import DATASETS, LOSSES, MODELS, Registry

_MISSING = object()


class Field:
    """One leaf of the schema: accepted type, default, choices and range.

    ``min`` / ``max`` are inclusive bounds, ``above`` / ``below`` exclusive ones (``above=0``: a
    positive number); for a ``list[...]`` kind they bound each item, and ``length`` fixes the
    number of items. Floats must be finite (YAML's ``.inf`` / ``.nan`` are refused); ``null`` is
    accepted only where ``nullable`` (or the default is ``None``).
    """

    def __init__(self, kind: str, default: Any = _MISSING, choices: Optional[Sequence[Any]] = None,
                 nullable: bool = False, doc: str = "", min: Optional[float] = None, max: Optional[float] = None,
                 above: Optional[float] = None, below: Optional[float] = None, length: Optional[int] = None,
                 registry: Optional[Registry] = None):
        self.kind = kind  # 'int', 'float', 'bool', 'str', 'amp', 'mapping', 'list[int]', 'list[float]', 'list[str]'
        self.item_kind = kind[5:-1] if kind.startswith("list[") else None
        self.default = default
        self._choices = list(choices) if choices is not None else None
        self.registry = registry  # the choices are the registered classes, or package.module:Class
        self.min, self.max, self.above, self.below = min, max, above, below
        self.length = length
        self.nullable = nullable or default is None
        self.doc = doc

    @property
    def choices(self) -> Optional[List[Any]]:
        return self.registry.names() if self.registry is not None else self._choices

    def _bounds(self) -> str:
        parts = [f"{op} {v:g}" if isinstance(v, float) else f"{op} {v}"
                 for op, v in ((">=", self.min), (">", self.above), ("<=", self.max), ("<", self.below))
                 if v is not None]
        return " and ".join(parts)

    def describe(self, item: bool = False) -> str:
        """What the key (``item``: one item of a list key) accepts, e.g. ``float > 0 or null``."""
        bounds = self._bounds()
        if self.choices:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
            if self.registry is not None:
                text += " or package.module:Class"
        elif item:
            return f"{self.item_kind} {bounds}".rstrip()
        elif self.item_kind is not None:
            text = self.kind + (f" of {self.length} items" if self.length is not None else "")
            text += f", each {bounds}" if bounds else ""
        else:
            text = f"{self.kind} {bounds}".rstrip()
        return text + (" or null" if self.nullable else "")

    def check(self, value: Any, path: str) -> Any:
        """``value`` converted to the kind (a float from ``1e-4``), or :class:`ConfigError` naming ``path``."""
        if value is None:
            if self.nullable:
                return None
            raise ConfigError(f"{path}: expected {self.describe()}, got null")
        if self.item_kind is None:
            value = self._check_one(self.kind, value, path, self.describe())
        else:
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{path}: expected {self.describe()}, got {type(value).__name__} {show(value)}")
            if self.length is not None and len(value) != self.length:
                items = "1 item" if len(value) == 1 else f"{len(value)} items"
                raise ConfigError(f"{path}: expected {self.describe()}, got {items}: {show(value)}")
            value = [self._check_one(self.item_kind, v, f"{path}[{i}]", self.describe(item=True))
                     for i, v in enumerate(value)]
        if self.registry is not None and isinstance(value, str) and ":" in value:
            self.registry.get(value)  # importable, and a class: one line naming the key if not
            return value
        if self.choices is not None and value not in self.choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in self.choices], n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"{path}: {show(value)} is not one of {self.choices}{hint}")
        return value

    def _check_one(self, kind: str, value: Any, path: str, expected: str) -> Any:
        """One scalar: its kind, a finite float, the bounds."""
        value = _coerce(kind, value, path, expected)
        if kind == "float" and not math.isfinite(value):
            raise ConfigError(f"{path}: expected a finite {expected}, got {show(value)}")
        if ((self.min is not None and value < self.min) or (self.max is not None and value > self.max)
                or (self.above is not None and value <= self.above)
                or (self.below is not None and value >= self.below)):
            raise ConfigError(f"{path}: expected {expected}, got {show(value)}")
        return value


_SHOW = reprlib.Repr()
_SHOW.maxlevel, _SHOW.maxlist, _SHOW.maxdict, _SHOW.maxstring, _SHOW.maxother = 3, 6, 6, 60, 60


def show(value: Any) -> str:
    """A short ``repr`` of a config value for an error line (deep or long values abridged with ...)."""
    return _SHOW.repr(value)


def _coerce(kind: str, value: Any, path: str, expected: str) -> Any:
    """``value`` as a scalar ``kind`` (``'amp'``: YAML's bare ``off`` read as False is ``'off'``)."""
    def fail():
        raise ConfigError(f"{path}: expected {expected}, got {type(value).__name__} {show(value)}")

    if kind == "bool":
        if isinstance(value, bool):
            return value
        fail()
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        fail()
    if kind == "float":
        if isinstance(value, bool):
            fail()
        if isinstance(value, (int, float)):
            try:
                return float(value)
            except OverflowError:  # an int beyond the largest float
                fail()
        if isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                fail()
        fail()
    if kind == "str":
        if isinstance(value, str):
            return value
        fail()
    if kind == "mapping":
        if isinstance(value, Mapping):
            return copy.deepcopy(dict(value))
        fail()
    if kind == "amp":  # YAML reads a bare `off` as False
        if value is False:
            return "off"
        if isinstance(value, str):
            return value
        fail()
    raise AssertionError(f"unknown schema kind {kind}")


# ---------------------------------------------------------------------------------------
# The schema. A dict is a section; a Field is a leaf. ``SPLIT`` sections take any key
# of ``data.process`` (overriding it for that split) plus the list file.
# ---------------------------------------------------------------------------------------

PROCESS = {
    "max_clip": Field("float", 1.0, nullable=True, doc="clip the amplified input above"),
    "min_clip": Field("float", None, doc="clip the amplified input below"),
    "transpose": Field("bool", False),
    "h_flip": Field("bool", True),
    "v_flip": Field("bool", True),
    "only_00": Field("bool", False, doc="keep only the first capture (_00_) of each scene"),
    "patch_size": Field("int", None, doc="training crop in Bayer pixels; null = whole image"),
    "repeat": Field("int", 1, min=1, doc="iterate the list this many times per epoch"),
    "max_samples": Field("int", None, min=1, doc="use only the first N pairs of the list"),
    "batch_size": Field("int", 1, min=1),
}

SPLIT_EXTRA = {
    "image_list_file": Field("str", None, doc="list file, relative to data.data_path"),
}


class OpenWhenExternal(dict):
    """Marker: a section whose ``type`` may name a user's class (``package.module:Class``); then its
    other keys are that class's options, passed on unchecked (docs/extending.md)."""


class SplitSection(dict):
    """Marker: a data split; its keys are validated but not filled with defaults."""


SPLIT = SplitSection({**SPLIT_EXTRA, **PROCESS})

SCHEMA: Dict[str, Any] = {
    "name": Field("str", None, doc="run name; defaults to <model.type>_<config file stem>"),
    "output_dir": Field("str", None, doc="run folder; defaults to runs/<name>"),
    "model": OpenWhenExternal({
        "type": Field("str", "CANS_Plus", registry=MODELS),
        "in_channel": Field("int", 4, min=1),
        "width": Field("int", 32, min=1),
        "middle_blk_num": Field("int", 2, min=0),
        "enc_blk_nums": Field("list[int]", [2, 2, 2, 2], min=0),
        "dec_blk_nums": Field("list[int]", [2, 2, 2, 2], min=0),
        "adaptive_size": Field("int", 2, min=1),
        "block_size": Field("int", 2, min=1),
        "amp_layernorm": Field("str", "float32", choices=["float32", "reference"],
                               doc="under train/test.amp: LayerNorm2d in float32 (eps 1e-5, as the float32 model), "
                                   "or 'reference': in the half precision with eps 1e-3 (the reference's rule)"),
    }),
    "data": {
        "type": Field("str", "SonyDictSet", registry=DATASETS),
        "options": Field("mapping", {}, doc="options of a data set of your own (data.type package.module:Class), "
                                            "free-form; the in-tree data sets take none"),
        "camera": Field("str", None, doc="Sony, Fuji or MCR; informative (the type decides)"),
        "ratio_mode": Field("str", "exposure", choices=["exposure", "exposure_iso"],
                            doc="RawPairDataset: ratio from exposure times, or exposure times x ISO"),
        "max_ratio": Field("float", 300.0, nullable=True,
                           doc="RawPairDataset: cap of the metadata ratio (null: none)"),
        "data_path": Field("str", "datasets/SID"),
        "load_npy": Field("bool", True, doc="read cached .npy packs instead of the RAW files"),
        "skip_bad_files": Field("bool", False),
        "num_workers": Field("int", 4, min=0),
        "pin_memory": Field("bool", True),
        "persistent_workers": Field("bool", True),
        "prefetch_factor": Field("int", 2, min=1),
        "synthetic": {
            "auto_create": Field("bool", False, doc="create the synthetic SID at data_path if missing "
                                 "(see cans.synthetic.ensure_synthetic for where it may)"),
            "scenes": Field("int", 8),
            "seed": Field("int", 0, min=0),
            "camera": Field("str", None, choices=["Sony", "Fuji"], doc="null: the camera of data.type"),
            "height": Field("int", 384, doc="mosaic height of the synthetic images (Bayer pixels)"),
            "width": Field("int", 576, doc="mosaic width of the synthetic images (Bayer pixels)"),
            "workers": Field("int", 0, min=0, doc="processes that build the caches (0 = in-process)"),
        },
        "noise": {  # CleanFrameDataset: the short exposure synthesised from clean frames (docs/noise_calibration.md)
            "profile": Field("str", None, doc="CleanFrameDataset: a profile.yaml of scripts/calibrate_noise.py, or "
                                              "the built-in A7S2 (the synthetic SID's noise)"),
            "ratios": Field("list[float]", [100.0, 250.0, 300.0], min=1,
                            doc="CleanFrameDataset: exposure ratios a synthetic sample draws from"),
            "fraction": Field("float", 1.0, min=0, max=1,
                              doc="CleanFrameDataset: share of the train samples of a pair list synthesised "
                                  "from its long file (the rest: the real pair); clean-file lists: all"),
        },
        "process": PROCESS,
        "train": SPLIT,
        "valid": SPLIT,
        "test": SPLIT,
    },
    "loss": {
        "raw": {"type": Field("str", "L1", registry=LOSSES), "weight": Field("float", 1.0, min=0)},
        "rgb": {"type": Field("str", "L1", registry=LOSSES), "weight": Field("float", 1.0, min=0)},
        "prior": {
            "weighting": Field("str", "fixed", choices=["fixed", "gradient_agreement"]),
            "every": Field("int", 1, min=1, doc="steps between gamma updates (gradient_agreement)"),
        },
    },
    "train": {
        "base_lr": Field("float", 2e-4, above=0),
        "min_lr": Field("float", 2e-5, min=0),
        "epochs": Field("int", 1000, min=0),
        "warmup_epochs": Field("int", 0, min=0),
        "early_stop": Field("int", None, min=1, doc="stop after N validations without a new best"),
        "clip_grad": Field("float", 0.1, nullable=True, min=0),
        "valid_per_epoch": Field("int", 1, min=1),
        "save_per_epoch": Field("int", 50, min=0),
        "manual_seed": Field("int", 3407, nullable=True, min=0, max=2 ** 32 - 1,
                             doc="seeds random, NumPy (whose seeds stop at 2^32 - 1) and PyTorch; null: a random seed"),
        "deterministic": Field("bool", False),
        "optimizer": {
            "type": Field("str", "AdamW", choices=["AdamW", "Adam"]),
            "betas": Field("list[float]", [0.9, 0.999], length=2, min=0, below=1),
            "eps": Field("float", 1e-8, min=0),
            "weight_decay": Field("float", 0.0, min=0),
        },
        "lr_scheduler": {
            "type": Field("str", "cosine", choices=["cosine", "constant"]),
        },
        "amp": Field("amp", "off", choices=["off", "bf16", "fp16"]),
        "channels_last": Field("bool", False),
        "compile": Field("bool", False),
        "fast": Field("bool", True, doc="CUDA only: TF32, cuDNN benchmark, torch.compile, fused AdamW "
                                        "(docs/performance.md); false = float32 eager"),
        "triton_dwconv": Field("bool", False, doc="CUDA fast path: the RDE's 7x7 depthwise conv as a Triton kernel"),
        "auto_resume": Field("bool", False),
        "pretrained": Field("str", None, doc="weights to start from (published checkpoints too)"),
        "dist_timeout": Field("int", 1800, min=1, doc="seconds a process waits for the others in a collective call "
                              "before the run stops (several processes, torchrun)"),
        "log_every": Field("int", 50, min=1, doc="steps between text-log lines"),
        "max_nonfinite": Field("int", 10, min=1, doc="consecutive non-finite losses that stop the run"),
        "test_at_end": Field("bool", False, doc="run the test report after training"),
        "validate_at_start": Field("bool", False, doc="validate the untrained model before epoch 1"),
        "num_threads": Field("int", None, min=1,
                             doc="torch CPU threads (null: torch's default); 1 keeps a busy CPU demo fast"),
    },
    "test": {
        "checkpoint": Field("str", None),
        "save_images": Field("bool", True),
        "save_16bit": Field("bool", False),
        "save_grid": Field("bool", False),
        "compare_paper": Field("bool", False),
        "throughput_warmup": Field("int", 3, min=0),
        "throughput_iters": Field("int", 10, min=1),
        "amp": Field("amp", "off", choices=["off", "bf16", "fp16"], doc="autocast for test.py / infer"),
        "channels_last": Field("bool", False),
        "fast": Field("bool", True, doc="CUDA only: TF32, cuDNN benchmark, torch.compile (test.py, infer.py)"),
        "triton_dwconv": Field("bool", False, doc="CUDA fast path: the RDE's 7x7 depthwise conv as a Triton kernel"),
        "max_images": Field("int", None, min=1, doc="score only the first N test images"),
    },
}

#: keys the schema no longer has -> (the value a config may still carry, harmless and dropped: what
#: run folders' config.yaml and exports' configs hold; why any other value is refused)
RETIRED = {
    "train.trust_checkpoint": (False, "trust to load a checkpoint with the full unpickler (which can run code "
                                      "from the file) is granted only by --trust-checkpoint on the command "
                                      "line, never by a config: remove the key, pass --trust-checkpoint"),
}


def registry_keys(schema: Mapping[str, Any] = SCHEMA, prefix: str = "") -> List[str]:
    """The dotted keys whose value names a class (``model.type``, ``data.type``, ``loss.raw.type``, ...):
    a registered name, or ``package.module:Class`` imported from the Python path."""
    keys = []
    for name, spec in schema.items():
        if isinstance(spec, Field):
            if spec.registry is not None:
                keys.append(f"{prefix}{name}")
        else:
            keys += registry_keys(spec, f"{prefix}{name}.")
    return keys


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------

def yaml_error_line(exc: yaml.YAMLError) -> str:
    """One line for a YAML syntax error: the line and column, what went wrong, a hint for tabs."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    hint = " (indent with spaces, YAML does not allow tabs)" if "'\\t'" in problem else ""
    return f"{where}{problem}{hint}"


#: deepest nesting of lists / mappings a config file or --set value may have (the schema uses 4:
#: a list under data.synthetic.x would be the deepest); deeper input would hit Python's recursion limit
MAX_NESTING = 32


def _nested_too_deep(value: Any, limit: int = MAX_NESTING) -> bool:
    """Whether lists / mappings in ``value`` nest more than ``limit`` deep (or contain themselves,
    as a YAML alias can make). Iterative, each shared object visited once."""
    if not isinstance(value, (list, dict)):
        return False
    heights: Dict[int, int] = {}  # id -> levels of lists / mappings from that object down
    open_ids = set()  # the objects being visited: the ancestors of the one on top
    stack = [(value, False)]
    while stack:
        node, closing = stack.pop()
        kids = [k for k in (node.values() if isinstance(node, dict) else node) if isinstance(k, (list, dict))]
        if closing:
            open_ids.discard(id(node))
            heights[id(node)] = 1 + max((heights[id(k)] for k in kids), default=0)
            if heights[id(node)] > limit:
                return True
            continue
        if id(node) in heights:
            continue
        if id(node) in open_ids or len(open_ids) >= limit:
            return True
        open_ids.add(id(node))
        stack.append((node, True))
        stack.extend((k, False) for k in kids)
    return False


def _first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, without Python's advice on its int-digit limit."""
    return (str(exc).splitlines() or [type(exc).__name__])[0].split("; use sys.set_int_max_str_digits")[0]


def _too_deep_error(where: str) -> ConfigError:
    return ConfigError(f"{where}: lists / mappings nested more than {MAX_NESTING} levels deep; "
                       f"expected a config a few levels deep (e.g. data.synthetic.seed)")


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a key given twice in one mapping (PyYAML keeps the last
    silently): a :class:`ConfigError` naming the file, the dotted key and both lines."""

    def construct_document(self, node):
        _check_duplicate_keys(node, self.name)
        return super().construct_document(node)


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _check_duplicate_keys(root: yaml.Node, where: str) -> None:
    """:class:`ConfigError` for the first mapping of the node tree ``root`` that sets a key twice
    (``<<`` merges aside: a key given next to a merge overrides it). Iterative; each node once."""
    stack, seen_nodes = [(root, "")], set()
    while stack:
        node, path = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            lines: Dict[tuple, int] = {}
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
                    continue
                dotted = f"{path}.{key.value}" if path else key.value
                line = key.start_mark.line + 1
                if (key.tag, key.value) in lines:
                    raise ConfigError(f"{where}: {dotted} is given twice, on lines {lines[key.tag, key.value]} "
                                      f"and {line}; keep one (YAML would silently use the last)")
                lines[key.tag, key.value] = line
                stack.append((value, dotted))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))


def _load_yaml(fh) -> Any:
    """The YAML document of the open file ``fh`` (:class:`_ConfigLoader`: safe, no key twice)."""
    return yaml.load(fh, Loader=_ConfigLoader)


def _read_yaml(path: str) -> Dict[str, Any]:
    if os.path.isdir(path):
        raise ConfigError(f"config file {path} is a folder; expected a YAML file "
                          f"(e.g. {os.path.join(path, '...yaml')})")
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, "r", encoding="utf-8") as fh:
            data = _load_yaml(fh)
    except ConfigError:   # a key given twice
        raise
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {yaml_error_line(exc)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (expected YAML in UTF-8)") from None
    except RecursionError:  # the YAML parser recurses once per level
        raise _too_deep_error(path) from None
    except ValueError as exc:  # a value YAML's constructors cannot build: 2020-13-45, an int of 5000 digits
        raise ConfigError(f"{path}: not valid YAML: {_first_line(exc)}") from None
    if _nested_too_deep(data):
        raise _too_deep_error(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> Dict[str, Any]:
    """Return ``base`` updated by ``over``; mappings merge recursively, other values replace."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_with_bases(path: str, chain: List[str]) -> Dict[str, Any]:
    path = os.path.abspath(path)
    if path in chain:
        raise ConfigError("circular base: " + " -> ".join(chain + [path]))
    data = _read_yaml(path)
    bases = data.pop("base", None)
    if bases is None:
        return data
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: base: expected a path or a list of paths, got {show(bases)}")
    merged: Dict[str, Any] = {}
    for b in bases:
        merged = deep_merge(merged, _load_with_bases(os.path.join(os.path.dirname(path), b), chain + [path]))
    return deep_merge(merged, data)


def parse_override(text: str) -> tuple:
    """``'a.b=1e-4'`` -> (['a', 'b'], value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {show(text)}: expected dotted.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {show(text)}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {show(text)}: value is not valid YAML: {yaml_error_line(exc)}") from None
    except RecursionError:  # the YAML parser recurses once per level
        raise _too_deep_error(f"override {key}=...") from None
    except ValueError as exc:  # a value YAML's constructors cannot build: 2020-13-45, an int of 5000 digits
        raise ConfigError(f"override {show(text)}: value is not valid YAML: {_first_line(exc)}") from None
    if _nested_too_deep(value):
        raise _too_deep_error(f"override {key}=...")
    return key.split("."), value


def apply_overrides(cfg: Dict[str, Any], overrides: Iterable[str]) -> Dict[str, Any]:
    cfg = copy.deepcopy(cfg)
    for text in overrides or ():
        parts, value = parse_override(text)
        node = cfg
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            elif not isinstance(nxt, dict):
                raise ConfigError(f"override {show(text)}: {'.'.join(parts[:i + 1])} is not a section")
            node = nxt
        node[parts[-1]] = value
    return cfg


def _keyed(exc: ConfigError, path: str) -> ConfigError:
    """``exc`` with ``exc.key`` set to the dotted key it is about, unless a deeper key set it first
    (:func:`load_config` names where that key came from)."""
    if getattr(exc, "key", None) is None:
        exc.key = path
    return exc


def _schema_paths(schema: Mapping[str, Any], prefix: str = "") -> Iterable[tuple]:
    """``(dotted path, last name)`` of every key and section of ``schema``, in declaration order."""
    for name, spec in schema.items():
        yield f"{prefix}{name}", name
        if not isinstance(spec, Field):
            yield from _schema_paths(spec, f"{prefix}{name}.")


def suggest_keys(key: str, schema: Mapping[str, Any], prefix: str = "", n: int = 3) -> List[str]:
    """Up to ``n`` dotted keys a misspelt ``key`` (met in the section ``prefix`` of ``schema``) may
    have meant, likeliest first: names of this section that begin or end with ``key`` (``lr`` ->
    ``base_lr``, ``min_lr``, in schema order) or that ``key`` begins or ends with; then the same name in other
    sections (``train.batch_size`` -> ``data.train.batch_size``: those sharing more of the path
    first); then close spellings (``difflib``, ``base_rl`` -> ``base_lr``)."""
    low = key.lower()
    names = [str(c) for c in schema]
    ends = [c for c in names if len(low) >= 2 and c.lower() != low and
            (c.lower().startswith(low) or c.lower().endswith(low)
             or (len(c) >= 3 and (low.startswith(c.lower()) or low.endswith(c.lower()))))]
    out = [f"{prefix}{c}" for c in ends]
    here = set(prefix.rstrip(".").split(".")) if prefix else set()
    elsewhere = [p for p, name in _schema_paths(SCHEMA) if name.lower() == low and p != f"{prefix}{key}"]
    elsewhere.sort(key=lambda p: -len(here & set(p.split(".")[:-1])))   # stable: schema order next
    out += elsewhere
    out += [f"{prefix}{c}" for c in difflib.get_close_matches(key, names, n=n, cutoff=0.5)]
    return list(dict.fromkeys(out))[:n]


def validate(cfg: Mapping[str, Any], schema: Mapping[str, Any] = SCHEMA, prefix: str = "",
             fill_defaults: bool = True) -> Dict[str, Any]:
    """Check ``cfg`` against ``schema``; return a new dict with defaults filled in."""
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping (a section of keys), "
                          f"got {type(cfg).__name__} {show(cfg)}")
    out: Dict[str, Any] = {}
    for key, value in cfg.items():
        path = f"{prefix}{key}"
        if path in RETIRED and key not in schema:
            harmless, why = RETIRED[path]
            if type(value) is type(harmless) and value == harmless:
                continue
            raise _keyed(ConfigError(f"{path}: {why}"), path)
        if key not in schema:
            close = suggest_keys(str(key), schema, prefix)
            hint = ("; did you mean " + ", ".join(close) + "?") if close else \
                ("; valid keys here: " + ", ".join(sorted(schema)))
            raise _keyed(ConfigError(f"unknown config key {path}{hint}"), path)
        spec = schema[key]
        try:
            if isinstance(spec, Field):
                out[key] = spec.check(value, path)
            elif (isinstance(spec, OpenWhenExternal) and isinstance(value, Mapping)
                  and ":" in str(value.get("type") or "")):
                out[key] = dict(value, type=spec["type"].check(value["type"], f"{path}.type"))
            else:
                section_value = {} if value is None else value
                out[key] = validate(section_value, spec, path + ".",
                                    fill_defaults=not isinstance(spec, SplitSection))
        except ConfigError as exc:
            raise _keyed(exc, path) from None
    if fill_defaults:
        for key, spec in schema.items():
            if key in out:
                continue
            if isinstance(spec, Field):
                out[key] = copy.deepcopy(spec.default) if spec.default is not _MISSING else None
            elif isinstance(spec, SplitSection):
                out[key] = {}
            else:
                out[key] = validate({}, spec, f"{prefix}{key}.")
    return out


def _key_line(path: str, parts: Sequence[str]) -> Optional[int]:
    """The line (1-based) where the YAML file ``path`` sets the dotted key ``parts``, or None when
    it does not set it (or cannot be read again)."""
    try:
        with open(path, "r", encoding="utf-8") as fh:
            node = yaml.compose(fh, Loader=yaml.SafeLoader)
    except Exception:  # noqa: BLE001 - it was read once already; a line number is only a courtesy
        return None
    line = None
    for part in parts:
        if not isinstance(node, yaml.MappingNode):
            return None
        hits = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part]
        if not hits:
            return None
        key_node, node = hits[-1]
        line = key_node.start_mark.line + 1
    return line


def _file_setting(path: str, parts: Sequence[str], chain: Sequence[str] = ()) -> Optional[tuple]:
    """``(file, line)`` of the file that gives the dotted key ``parts`` its value: ``path`` itself,
    else its ``base:`` files, the last listed first (the order :func:`_load_with_bases` merges in);
    None when none sets it."""
    line = _key_line(path, parts)
    if line is not None:
        return path, line
    try:
        with open(path, "r", encoding="utf-8") as fh:
            bases = (_load_yaml(fh) or {}).get("base")
    except Exception:  # noqa: BLE001
        return None
    bases = [bases] if isinstance(bases, str) else bases if isinstance(bases, list) else []
    for b in reversed(bases):
        base = os.path.normpath(os.path.join(os.path.dirname(path), str(b)))
        if os.path.abspath(base) in chain:
            continue
        found = _file_setting(base, parts, list(chain) + [os.path.abspath(path)])
        if found:
            return found
    return None


def key_origin(path: str, overrides: Sequence[str], key: str) -> str:
    """Where the dotted ``key`` (``train.lr``, ``model.enc_blk_nums[1]``) of the config ``path``
    loaded with ``overrides`` got its value, for an error line: ``--set train.lr=1e-3`` when the
    last override setting it (or a section above it) does, else ``configs/x.yaml, line 12``, with
    ``(a base of configs/y.yaml)`` when a ``base:`` file sets it; ``path`` when nothing is found."""
    parts = key.split("[", 1)[0].split(".")
    for text in reversed(list(overrides)):
        try:
            oparts = parse_override(text)[0]
        except ConfigError:
            continue
        if parts[:len(oparts)] == oparts:
            key_text, value = " ".join(text.split()).split("=", 1)   # one line; the error shows the value
            return f"--set {key_text}={value if len(value) <= 30 else value[:27] + '...'}"
    found = _file_setting(path, parts)
    if not found:
        return path
    where, line = found
    same = os.path.abspath(where) == os.path.abspath(path)
    return f"{where}, line {line}" + ("" if same else f" (a base of {path})")


def load_config(path: str, overrides: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Load ``path`` with its bases, apply ``overrides`` and validate; return a plain dict."""
    raw = _load_with_bases(path, [])
    raw = apply_overrides(raw, overrides or [])
    try:
        cfg = validate(raw)
    except ConfigError as exc:
        key = getattr(exc, "key", None)
        raise ConfigError(f"{key_origin(path, overrides or [], key) if key else path}: {exc}") from None
    if not cfg["name"]:
        stem = os.path.splitext(os.path.basename(path))[0]
        cfg["name"] = f"{cfg['model']['type']}_{stem}"
    if not cfg["output_dir"]:
        cfg["output_dir"] = default_output_dir(cfg["name"])
    return cfg


def default_output_dir(name: str) -> str:
    """The run folder of a config that names no ``output_dir``: ``runs/<name>``."""
    return os.path.join("runs", name)


def split_options(cfg: Mapping[str, Any], split: str) -> Dict[str, Any]:
    """The effective options of one data split: ``data.process`` updated by ``data.<split>``."""
    if split not in ("train", "valid", "test"):
        raise ValueError(f"unknown split {split!r}")
    opts = dict(cfg["data"]["process"])
    opts.update(cfg["data"].get(split) or {})
    opts.setdefault("image_list_file", None)
    return opts


def dump_config(cfg: Mapping[str, Any], path: str) -> None:
    """Write ``cfg`` as YAML, whole or not at all (``cans.io.files``)."""
    atomic_write_text(path, to_yaml(cfg), durable=True)


def to_yaml(cfg: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(cfg), sort_keys=False, default_flow_style=None)
