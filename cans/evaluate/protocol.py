"""Which test protocol a run follows, and how it differs from the paper's.

The authors score SID with ``only_00: true``: only the first capture (``_00_``) of each test
scene. Sony: ``Sony_new_test_list.txt`` (the official test list without the three misaligned
scenes), 88 images (x100 27, x250 27, x300 34). Fuji: ``Fuji_test_list.txt``, 94 images
(x100 41, x250 27, x300 26). MCR file names have no ``_00_``, so MCR is scored on every image.
Scoring every frame of the SID lists (562 Sony / 524 Fuji images) is a different, harder to
compare protocol: ``test.py --all-frames``.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional

from ..data import dataset_class
from ..data.base import PairDataset

#: camera -> (test list, images) of the authors' protocol
PAPER_TEST_SETS = {"Sony": ("Sony_new_test_list.txt", 88), "Fuji": ("Fuji_test_list.txt", 94)}


def reads_data_path(cfg: Mapping[str, Any]) -> bool:
    """Whether the config's data set reads ``data.data_path`` and its list files: every built-in
    one does; a class of one's own says so with ``reads_data_path = True`` (docs/extending.md)."""
    cls = dataset_class(cfg)
    return bool(getattr(cls, "reads_data_path", issubclass(cls, PairDataset)))


def data_source(cfg: Mapping[str, Any]) -> str:
    """Where the config's images come from, for logs and reports: ``data.data_path`` (absolute) and
    the class, or only the class when it reads no ``data.data_path`` (never the schema's default
    folder of a data set that does not look there)."""
    data = cfg["data"]
    if reads_data_path(cfg):
        return f"{os.path.abspath(data['data_path'])} ({data['type']})"
    return f"{data['type']} (reads no data.data_path)"


def is_synthetic(cfg: Mapping[str, Any]) -> bool:
    return reads_data_path(cfg) and os.path.isfile(os.path.join(cfg["data"]["data_path"], "synthetic_sid.json"))


def describe_protocol(cfg: Mapping[str, Any], camera: str, images: Optional[int] = None) -> Dict[str, Any]:
    """``{"dataset", "list", "only_00", "images", "name"}`` of the config's test split."""
    test = cfg["data"].get("test") or {}
    only_00 = bool(test.get("only_00", False))
    dataset = "MCR" if camera == "MCR" else f"SID {camera}"
    cls = dataset_class(cfg)
    if getattr(cls, "own_camera", False):
        dataset = f"own camera ({cfg['data']['type']})"
    elif getattr(cls, "paper_camera", None) is None:  # a data set of the user's
        dataset = f"{cfg['data']['type']}"
    elif is_synthetic(cfg):
        dataset = f"synthetic {dataset}"
    frames = "first capture of each scene (only_00)" if only_00 else "every frame of the list"
    listed = reads_data_path(cfg)
    parts = [dataset] + ([str(test.get("image_list_file")), frames] if listed else [])
    out = {"dataset": dataset, "list": test.get("image_list_file") if listed else None, "only_00": only_00,
           "images": images, "name": ", ".join(parts) + (f", {images} images" if images is not None else "")}
    return out


def paper_differences(protocol: Mapping[str, Any], camera: str, max_images: Optional[int] = None) -> List[str]:
    """Why a run's numbers cannot be set beside the paper's (empty when the protocol is the paper's)."""
    notes = []
    if protocol["dataset"].startswith("synthetic"):
        notes.append("the data set is the synthetic SID, not the real one: the paper's numbers do not apply")
    if camera == "MCR":
        return notes + ["the paper's tables are for SID Sony; this config tests MCR"]
    if camera != "Sony" or protocol["dataset"].startswith("own camera"):
        tested = protocol["dataset"] if protocol["dataset"].startswith("own camera") else f"SID {camera}"
        notes.append(f"the paper's tables are for SID Sony; this config tests {tested}")
    expected = PAPER_TEST_SETS.get(camera)
    if expected is None:
        return notes
    list_name, count = expected
    if os.path.basename(str(protocol.get("list"))) != list_name:
        notes.append(f"the test list is {protocol.get('list')}, the authors use {list_name}")
    if not protocol["only_00"]:
        notes.append("every frame is scored (--all-frames / only_00: false); the authors score only the first "
                     "capture of each scene (only_00: true)")
    if max_images is not None:
        notes.append(f"only the first {max_images} images are scored (--max-images)")
    images = protocol.get("images")
    if images is not None and images != count and not notes:
        notes.append(f"{images} test images were scored, the authors' protocol has {count} "
                     "(missing files? data.skip_bad_files?)")
    return notes


__all__ = ["PAPER_TEST_SETS", "describe_protocol", "paper_differences", "is_synthetic"]
