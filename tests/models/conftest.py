"""Shared fixtures for the station FMU tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # make `models` and `cosim` importable without installing
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(scope="session")
def fmu_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache directory private to this test session (the repo cache is left alone)."""
    return tmp_path_factory.mktemp("fmu_cache")
