"""Registries: the one list of models and data sets, and user classes named ``module:Class``.

A class registers itself where it is defined (``@MODELS.register``, ``@DATASETS.register``);
the config schema's choices, the cross-key checks and the tester's camera facts all read the
registered classes, so a new in-tree model or data set is one new file (imported by its
package's ``__init__``). A YAML ``type`` of the form ``package.module:Class`` imports the class
from the Python path instead, with no edit of ``cans/`` (docs/extending.md). Such a class must
subclass the registry's ``base`` (a model ``torch.nn.Module``, a data set
``torch.utils.data.Dataset``, a loss ``torch.nn.Module``), checked before anything calls it: a
config cannot make the run call ``subprocess:Popen`` or any other class.
"""
from __future__ import annotations

import difflib
import importlib
from typing import Callable, Dict, List, Optional

from .errors import ConfigError


class Registry:
    """Names -> classes for one config key (``model.type``, ``data.type``). ``package`` is
    imported on first use: importing it registers the in-tree classes. ``base`` (``module:Class``,
    imported on first use so that this module does not import torch) is what a user's
    ``package.module:Class`` must subclass."""

    def __init__(self, key: str, package: str, base: str):
        self.key, self.package, self.base = key, package, base
        self._classes: Dict[str, type] = {}

    def register(self, cls: Optional[type] = None, *, name: Optional[str] = None) -> Callable:
        """``@REGISTRY.register`` (the class's own name) or ``@REGISTRY.register(name="...")``."""
        def add(c: type) -> type:
            key = name or c.__name__
            if key in self._classes and self._classes[key] is not c:
                raise ValueError(f"{self.key}: {key!r} is registered twice ({self._classes[key]} and {c})")
            self._classes[key] = c
            return c
        return add(cls) if cls is not None else add

    def _load(self) -> None:
        importlib.import_module(self.package)

    def names(self) -> List[str]:
        """The in-tree names, in registration order."""
        self._load()
        return list(self._classes)

    def classes(self) -> Dict[str, type]:
        self._load()
        return dict(self._classes)

    def get(self, name: str) -> type:
        """The class of ``name``: a registered one, or ``package.module:Class`` from the Python path.
        Anything else is a :class:`ConfigError` naming the key, the choices and the closest one."""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{self.key}: expected a name, got {name!r}")
        if ":" in name:
            return import_class(name, self.key, self.base)
        self._load()
        if name not in self._classes:
            close = difflib.get_close_matches(name, list(self._classes), n=2)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise ConfigError(f"{self.key}: unknown {name!r}{hint} Expected one of {', '.join(self._classes)}, "
                              f"or package.module:Class for a class of your own (docs/extending.md)")
        return self._classes[name]


def import_class(spec: str, key: str, base: Optional[str] = None) -> type:
    """``package.module:Class`` imported from the Python path; one :class:`ConfigError` line when it
    cannot be (module missing, error inside it, no such class) or, with ``base`` (``module:Class``),
    when it does not subclass ``base``. Nothing is called: the class is only looked up and checked."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr or ":" in attr:
        raise ConfigError(f"{key}: {spec!r}: expected package.module:Class")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"{key}: cannot import {module_name!r} for {spec!r} ({exc}); is its folder on "
                          f"PYTHONPATH (or the folder you run from)?") from None
    except Exception as exc:
        raise ConfigError(f"{key}: importing {module_name!r} for {spec!r} failed: "
                          f"{type(exc).__name__}: {exc}") from None
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ConfigError(f"{key}: {module_name!r} has no {attr!r} (from {spec!r})")
    if not isinstance(obj, type):
        raise ConfigError(f"{key}: {spec!r} is a {type(obj).__name__}, not a class")
    if base is not None:
        base_module, _, base_name = base.partition(":")
        expected = getattr(importlib.import_module(base_module), base_name)
        if not issubclass(obj, expected):
            raise ConfigError(f"{key}: {spec!r} is a class but not a {base_module}.{base_name} subclass; "
                              f"expected a {base_module}.{base_name} of your own (docs/extending.md)")
    return obj


MODELS = Registry("model.type", "cans.models", base="torch.nn:Module")
DATASETS = Registry("data.type", "cans.data", base="torch.utils.data:Dataset")
LOSSES = Registry("loss.<term>.type", "cans.train.losses", base="torch.nn:Module")

__all__ = ["DATASETS", "LOSSES", "MODELS", "Registry", "import_class"]
