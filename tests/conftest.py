from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "cases"


@pytest.fixture(autouse=True)
def _numpy_errors_raise():
    """Overflow or invalid operations in numerics are bugs, not warnings."""
    with np.errstate(all="raise", under="ignore"):
        yield


@pytest.fixture
def cases_dir() -> Path:
    return CASES


def pytest_configure(config):
    os.environ.setdefault("MPLBACKEND", "Agg")
