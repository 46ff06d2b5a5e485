"""Shared test fixtures: where the reference data lives.

The reference vectors sit beside the development checkout as ``../shared/reference``; the
environment variable ``CANS_REFERENCE`` names another folder (a GPU machine that received the
checkout without its sibling folders). Tests that need them skip with the reason when absent.
"""
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("CANS_REFERENCE") or REPO.parent / "shared" / "reference").resolve()


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"reference data not found at {REFERENCE} (it sits beside the repo as ../shared/reference "
                    "in the development checkout, or set CANS_REFERENCE; a fresh clone does not have it)")
    return REFERENCE


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread per test: the models here are tiny, and on a 2-core machine two
    threads next to a DataLoader worker or another process stall each other."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
