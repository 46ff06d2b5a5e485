"""Shared test fixtures: where the reference data lives (``../shared/reference``)."""
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"reference data not found at {REFERENCE} (it sits beside the repo as ../shared/reference "
                    "in the development checkout; a fresh clone does not have it)")
    return REFERENCE


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread per test: the models here are tiny, and on a 2-core machine two
    threads next to a DataLoader worker or another process stall each other."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
