"""Test-wide settings: never touch the network, keep caches out of the repo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_SILENT", "true")

REPO = Path(__file__).resolve().parents[1]
REAL_METADATA = REPO.parent / "shared" / "real_metadata"


@pytest.fixture
def real_metadata() -> Path:
    """``../shared/real_metadata`` (the test is skipped where it is absent, e.g. for users)."""
    if not REAL_METADATA.is_dir():
        pytest.skip("../shared/real_metadata is absent (only the developers' checkout has it)")
    return REAL_METADATA


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One cache folder per test session, shared by the tests that build synthetic data."""
    path = tmp_path_factory.mktemp("dermfuse-cache")
    os.environ["DERMFUSE_CACHE"] = str(path)
    return path
