"""The authors' published weights: where they are and how to recognise an untouched copy.

The CANS authors committed two checkpoints to their GitHub repository (csmty/CANS), under
``pretrained_weights/``. Git names every committed file by its *blob id*: the SHA-1 of
``b"blob <size>\\0" + content``, which ``git hash-object FILE`` prints. A file whose blob id is
in :data:`PUBLISHED` is byte for byte the authors' file, so a report that prints the id says
exactly which weights produced it. No Fuji or MCR weights are published.
"""
from __future__ import annotations

import hashlib
import os
from typing import Dict, Optional

AUTHORS_REPOSITORY = "https://github.com/csmty/CANS"

#: git blob id -> (model.type, camera, path in the authors' repository)
PUBLISHED: Dict[str, tuple] = {
    "1c9f222a413051f07642edb35467c6a5c2f709bd": ("CANS", "Sony", "pretrained_weights/CANS/Sony.pth"),
    "f9bdd25453632c7df28ed2d4ab043a9df39ba6df": ("CANS_Plus", "Sony", "pretrained_weights/CANS_Plus/Sony.pth"),
}


def git_blob_id(path: str, chunk: int = 1 << 20) -> str:
    """The id ``git hash-object path`` prints: SHA-1 of ``b"blob <size>\\0"`` + the file's bytes."""
    size = os.path.getsize(path)
    digest = hashlib.sha1(f"blob {size}\0".encode("ascii"))
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def published_name(blob_id: str) -> Optional[str]:
    """'the authors' published CANS_Plus Sony weights (pretrained_weights/...)' or None."""
    entry = PUBLISHED.get(blob_id)
    if entry is None:
        return None
    model_type, camera, rel = entry
    return f"the authors' published {model_type} {camera} weights ({rel})"


def describe_weights(path: str) -> Dict[str, Optional[str]]:
    """``{"path", "git_blob", "published"}`` of a weights file, for reports."""
    blob = git_blob_id(path)
    return {"path": os.path.abspath(path), "git_blob": blob, "published": published_name(blob)}


def weights_line(path_or_info) -> str:
    """``'<abs path> (git blob <id>[: the authors' published ... weights])'`` for logs, from a path or
    from what :func:`describe_weights` returned (the file is then not read again)."""
    info = path_or_info if isinstance(path_or_info, dict) else describe_weights(path_or_info)
    return f"{info['path']} (git blob {info['git_blob']}" + (f": {info['published']})" if info["published"] else ")")


__all__ = ["AUTHORS_REPOSITORY", "PUBLISHED", "git_blob_id", "published_name", "describe_weights", "weights_line"]
