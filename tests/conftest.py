"""Shared test fixtures: where the reference data lives (``../shared/reference``)."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"reference data not found at {REFERENCE} (it sits beside the repo as ../shared/reference "
                    "in the development checkout; a fresh clone does not have it)")
    return REFERENCE
