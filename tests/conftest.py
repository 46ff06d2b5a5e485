"""Shared test fixtures: where the reference data lives.

The reference data (the authors' code's test vectors, SID lists, loader samples, checkpoint
layouts) is, in this order of preference:

* the folder named by the environment variable ``CANS_REFERENCE``;
* the developers' full set beside the checkout, ``../shared/reference`` (all eight model parity
  cases with every input and output);
* ``tests/fixtures/reference/``: a compact copy of the full set in the same layout, committed so
  that the tests that need it run in a plain clone (what it holds and how it is made:
  ``tests/fixtures/README.md``). It is unpacked (its ``.xz`` files decompressed) once per test
  session into a temporary folder removed at exit. ``CANS_REFERENCE=tests/fixtures/reference``
  tests the compact copy where the full set is present.
"""
import atexit
import lzma
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pytest
import torch

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # the tests of every sub-folder import ``helpers`` (and this module) by name
    sys.path.insert(0, _HERE)

from helpers import REPO, TESTS  # noqa: E402

# A shell starts a background job (`pytest &`, nohup) with SIGINT ignored, and Python then raises no
# KeyboardInterrupt: the tests of Ctrl-C would fail for that reason alone. Python's own handler
# back (children started from here inherit the default again).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

FIXTURES = TESTS / "fixtures" / "reference"


def unpack_fixtures(src: Path = FIXTURES) -> Path:
    """A temporary copy of ``src`` with every ``NAME.xz`` decompressed to ``NAME`` (deleted at exit)."""
    dst = Path(tempfile.mkdtemp(prefix="cans-reference-"))
    atexit.register(shutil.rmtree, dst, ignore_errors=True)
    for path in sorted(src.rglob("*")):
        if not path.is_file():
            continue
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".xz":
            target.with_suffix("").write_bytes(lzma.decompress(path.read_bytes()))
        else:
            shutil.copyfile(path, target)
    return dst


def find_reference() -> Path:
    """The reference folder to test against (see the module's docstring)."""
    named = os.environ.get("CANS_REFERENCE")
    path = Path(named or REPO.parent / "shared" / "reference").resolve()
    if path == FIXTURES or (not named and not path.is_dir()):
        return unpack_fixtures()
    return path


REFERENCE = find_reference()


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.fail(f"CANS_REFERENCE={os.environ.get('CANS_REFERENCE')}: no such folder (unset it to use "
                    "../shared/reference or, without it, the compact reference in tests/fixtures/reference)")
    return REFERENCE


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread per test: the models here are tiny, and on a 2-core machine two
    threads next to a DataLoader worker or another process stall each other."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
