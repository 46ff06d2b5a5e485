"""The data pipeline's exception (defined with the others in ``cans.errors``) and its advice."""
from __future__ import annotations

from ..errors import DataError


def prepare_hint(data_path: str, camera: str = "Sony") -> str:
    """The command that creates the data a message complains about."""
    if camera == "MCR":
        return ("download MCR and write its list files (see datasets/README.md)")
    return (f"prepare SID with `python scripts/prepare_sid.py --data-path {data_path} --camera {camera}` "
            f"or make a synthetic set with `python scripts/make_synthetic_sid.py --out {data_path} "
            f"--camera {camera}` (see datasets/README.md)")


__all__ = ["DataError", "prepare_hint"]
