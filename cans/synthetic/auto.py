"""``data.synthetic.auto_create``: the synthetic stand-in a config asks for, made before its data set
is built (``cans.train.main``, ``cans.evaluate.tester``; a data set only reads data).

The stand-in follows ``data.type``'s ``synthetic`` attribute: a camera name (``"Sony"``,
``"Fuji"``: the synthetic SID of :mod:`cans.synthetic.sid`), ``"bayer"`` / ``"xtrans"`` (the
own-camera set of :mod:`cans.synthetic.own_camera`; for ``CleanFrameDataset`` also its noise
profile, calibrated from simulated frames), or none.
"""
from __future__ import annotations

import difflib
import json
import os
import time
from typing import Any, Callable, Mapping, Optional

from ..data import auto_create_ignored, dataset_class
from ..data.cleanframes import CleanFrameDataset
from ..data.errors import DataError
from ..noise.calibration import calibrate
from ..noise.profile import BUILTIN_PROFILES, write_profile
from ..registry import DATASETS
from .calibration_set import make_own_camera_calibration
from .own_camera import make_own_camera_set
from .sid import MARKER, make_synthetic_sid

#: folder names the shipped demo configs use for synthetic sets
STANDARD_SYNTHETIC_NAMES = ("synthetic_sid", "synthetic_sid_fuji")
#: where the example's calibration frames and profile go inside ``data.data_path``
EXAMPLE_CALIBRATION = "calibration"


def synthetic_exists(path: str) -> bool:
    """True when ``path`` is a folder with something in it (a set is there: nothing is made)."""
    return os.path.isdir(path) and bool(os.listdir(path))


def _synthetic_camera(path: str) -> Optional[str]:
    """The camera of the synthetic set at ``path`` (from its ``synthetic_sid.json``), else None."""
    try:
        with open(os.path.join(path, MARKER), encoding="utf-8") as fh:
            return json.load(fh).get("camera")
    except (OSError, ValueError, AttributeError):
        return None


def _check_create_location(path: str, camera: str) -> None:
    """Refuse to auto-create a synthetic set where a typo or the wrong working folder would put it:
    the parent folder must exist, and the folder's name must not look like a misspelling of an
    existing synthetic set beside it or of the demo configs' standard names."""
    where = os.path.abspath(path)
    parent, name = os.path.dirname(where), os.path.basename(where)
    by_hand = f"python scripts/make_synthetic_sid.py --out {where} --camera {camera}"
    if not os.path.isdir(parent):
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        hint = (f"; relative paths are read from the current folder {os.getcwd()}: run from the repository "
                f"root {root}" if not os.path.isabs(path) and os.path.abspath(os.getcwd()) != root else "")
        raise DataError(f"data.data_path: {where} does not exist, nor does its folder {parent}: not creating a "
                        f"synthetic set there (data.synthetic.auto_create){hint}, or set data.data_path")
    if name in STANDARD_SYNTHETIC_NAMES:
        return
    siblings = [d for d in os.listdir(parent) if os.path.isfile(os.path.join(parent, d, MARKER))]
    close = difflib.get_close_matches(name, siblings + list(STANDARD_SYNTHETIC_NAMES), n=1, cutoff=0.8)
    if close:
        raise DataError(f"data.data_path: {where} does not exist; did you mean {os.path.join(parent, close[0])}? "
                        f"Not creating a new synthetic set at a path that looks misspelt; to make one there on "
                        f"purpose run `{by_hand}`")


def _ensure_own_camera(path: str, syn: Mapping[str, Any], log: Callable[[str], None], sensor: str = "bayer") -> bool:
    """``data.synthetic.auto_create`` for ``RawPairDataset`` (``sensor="bayer"``) and
    ``XTransPairDataset`` (``sensor="xtrans"``): the synthetic own-camera example set
    (:func:`cans.synthetic.own_camera.make_own_camera_set`) at ``path`` when that folder is missing or empty."""
    if synthetic_exists(path):
        return False
    where = os.path.abspath(path)
    if not os.path.isdir(os.path.dirname(where)):
        raise DataError(f"data.data_path: {where} does not exist, nor does its folder {os.path.dirname(where)}: "
                        f"not creating the own-camera example set there (data.synthetic.auto_create)")
    kind = "X-Trans " if sensor == "xtrans" else ""
    log(f"[data] {where} is missing: creating the synthetic {kind}own-camera set there (data.synthetic.auto_create: "
        f"true; {syn['scenes']} scenes, seed {syn['seed']}) ...")
    t0 = time.time()
    make_own_camera_set(path, scenes=syn["scenes"], seed=syn["seed"],
                        height=syn["height"], width=syn["width"], log=log, progress=False,
                        sensor=sensor)
    log(f"[data] own-camera set ready at {where} ({time.time() - t0:.1f} s)")
    return True


def ensure_example_profile(cfg: Mapping[str, Any], log: Callable[[str], None] = print) -> bool:
    """``data.synthetic.auto_create`` for the noise profile: when ``data.noise.profile`` is a path
    inside ``data.data_path`` that does not exist yet, write the synthetic own camera's dark and
    flat frames there (``<data_path>/calibration/{dark,flat}``,
    :func:`cans.synthetic.calibration_set.make_own_camera_calibration`) and calibrate them, as
    ``scripts/calibrate_noise.py --dark ... --flat ... --out PROFILE`` does. True when it wrote one."""
    data = cfg["data"]
    spec = (data.get("noise") or {}).get("profile")
    if not (data.get("synthetic") or {}).get("auto_create") or not spec or spec in BUILTIN_PROFILES \
            or os.path.isfile(spec):
        return False
    root, where = os.path.abspath(data["data_path"]), os.path.abspath(spec)
    if os.path.commonpath([root, where]) != root or not os.path.isdir(root):
        return False
    t0 = time.time()
    folder = os.path.join(root, EXAMPLE_CALIBRATION)
    log(f"[data] {where} is missing: simulating the own camera's dark and flat frames in {folder} and "
        f"calibrating them (data.synthetic.auto_create: true) ...")
    dark, flat = make_own_camera_calibration(folder)
    profile, _ = calibrate(dark, flat, log=lambda m: log(f"[data]   {m}"))
    write_profile(profile, where)
    log(f"[data] noise profile written to {where} ({time.time() - t0:.1f} s)")
    return True


def ensure_synthetic(cfg: Mapping[str, Any], log: Callable[[str], None] = print) -> bool:
    """Create the synthetic stand-in of ``data.type`` at ``data.data_path`` when
    ``data.synthetic.auto_create`` is true and the folder is missing or empty, or replace a
    synthetic SID made there for the other camera. Returns True when it created something.

    A synthetic SID is made only where the demo configs put one (``datasets/synthetic_sid``,
    ``datasets/synthetic_sid_fuji``) or in a new folder whose parent exists and whose name does
    not look like a misspelling of those or of a synthetic set beside it; anything else is a
    :class:`DataError` naming the absolute path (``scripts/make_synthetic_sid.py`` makes a set
    anywhere on purpose). ``CleanFrameDataset`` also gets its example noise profile
    (:func:`ensure_example_profile`). A class of the user's own (``package.module:Class``) without
    a ``synthetic`` stand-in: the key is ignored, with one note. Messages give absolute paths."""
    data = cfg["data"]
    syn = data["synthetic"]
    path = data["data_path"]
    if not syn["auto_create"]:
        return False
    cls = dataset_class(cfg)
    stand_in = getattr(cls, "synthetic", None)
    if stand_in in ("bayer", "xtrans"):
        made = _ensure_own_camera(path, syn, log, stand_in)
        if issubclass(cls, CleanFrameDataset):
            made = ensure_example_profile(cfg, log) or made
        return made
    where = os.path.abspath(path)
    fits = stand_in
    if fits is None:
        if auto_create_ignored(cfg):
            log(f"[data] data.synthetic.auto_create is ignored: no synthetic set stands in for data.type "
                f"{data['type']} (a class of your own reads its own data)")
            return False
        have = [n for n, c in DATASETS.classes().items() if getattr(c, "synthetic", None)]
        raise DataError(f"data.synthetic.auto_create: no synthetic set stands in for data.type {data['type']} "
                        f"(only {', '.join(have)} have one); set data.synthetic.auto_create=false")
    camera = syn.get("camera") or fits
    if camera != fits:
        raise DataError(f"data.synthetic.camera is {camera} but data.type is {data['type']} ({fits}); "
                        f"set data.synthetic.camera={fits}")
    overwrite = False
    if synthetic_exists(path):
        made_for = _synthetic_camera(path)
        if made_for is None or made_for == camera:  # a real SID folder is left as it is
            return False
        log(f"[data] {where} holds a synthetic {made_for} set, but data.type {data['type']} needs {camera}: "
            f"replacing it with a synthetic {camera} set (data.synthetic.auto_create: true)")
        overwrite = True
    else:
        _check_create_location(path, camera)
        log(f"[data] {where} is missing: creating the synthetic SID there (data.synthetic.auto_create: true; "
            f"camera {camera}, {syn['scenes']} scenes, seed {syn['seed']}) ...")
    t0 = time.time()
    make_synthetic_sid(path, camera=camera, scenes=syn["scenes"], seed=syn["seed"],
                       height=syn["height"], width=syn["width"],
                       workers=syn["workers"], log=log, progress=False, overwrite=overwrite)
    log(f"[data] synthetic {camera} SID ready at {where} ({time.time() - t0:.1f} s)")
    return True


__all__ = ["STANDARD_SYNTHETIC_NAMES", "EXAMPLE_CALIBRATION", "synthetic_exists", "ensure_example_profile",
           "ensure_synthetic"]
