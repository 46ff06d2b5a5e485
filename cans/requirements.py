"""The oldest PyTorch this package runs on, checked when ``cans`` is first imported.

The check reads the installed version from the package metadata, so it costs no ``import torch``
(the data scripts that need no torch stay quick). PyTorch 2.4 is the oldest release the test
suite has passed on; older ones lack APIs the code calls (``torch.amp.GradScaler``,
``torch.is_autocast_enabled(device)``, ``torch.library.custom_op``) and would fail late, deep in
a training run, instead of here.
"""
import re
from importlib import metadata
from typing import Optional, Tuple

MIN_TORCH = (2, 4)


def release(version: str) -> Optional[Tuple[int, int]]:
    """'2.4.1+cu121' -> (2, 4); '2.15.0a0+git1234' -> (2, 15): the major and minor numbers
    (None for a version string that does not start with them)."""
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else None


def check_torch_version(version: Optional[str] = None) -> None:
    """Raise ImportError with one plain sentence when ``version`` (default: the installed torch)
    is older than :data:`MIN_TORCH`; do nothing when torch is not installed (its own import says so)."""
    if version is None:
        try:
            version = metadata.version("torch")
        except metadata.PackageNotFoundError:
            return
    got = release(version)
    if got is not None and got < MIN_TORCH:
        need = ".".join(str(n) for n in MIN_TORCH)
        raise ImportError(f"CANS needs PyTorch >= {need}, but this environment has torch {version}: "
                          f"pip install --upgrade -r requirements.txt")
