"""Fixtures of the experiment-infrastructure tests (configs, CLI runs, sweeps, report).

Every test that trains writes its run folders under its own ``tmp_path`` (``DERMFUSE_RUNS``) and
uses the session's synthetic-data cache (``session_cache`` from tests/conftest.py), with wandb off.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.experiments._eval_support import train_tiny
from tests.experiments._support import EXPERIMENTS, REPO


@pytest.fixture
def runs_dir(tmp_path, monkeypatch, session_cache) -> Path:
    """A fresh ``runs`` folder for the test (``DERMFUSE_RUNS``), wandb disabled, shared data cache."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("DERMFUSE_RUNS", str(runs))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("DERMFUSE_RUN_DIR", raising=False)
    monkeypatch.chdir(REPO)
    return runs


@pytest.fixture(autouse=True)
def _no_ddp_env(monkeypatch):
    """In-process CLI runs must not look like DDP children."""
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    os.environ.pop("DERMFUSE_RUN_DIR", None)


@pytest.fixture(scope="session")
def vitatt_run(tmp_path_factory, session_cache) -> Path:
    """A finished tiny ViTAtt run on the PAD-UFES-20 miniature (shared by the session; do not modify)."""
    return train_tiny(tmp_path_factory.mktemp("vitatt-run") / "run")


@pytest.fixture(scope="session")
def vitatt_isic2019_run(tmp_path_factory, session_cache) -> Path:
    """A finished tiny ViTAtt run on the ISIC 2019 miniature (shared by the session; do not modify)."""
    return train_tiny(tmp_path_factory.mktemp("vitatt-isic2019-run") / "run", "vitatt", "isic2019")


@pytest.fixture(scope="session")
def mammo_smoke_run(tmp_path_factory, session_cache) -> tuple[Path, subprocess.CompletedProcess]:
    """``python -m dermfuse_models.runner fit`` of mammo_xattn's smoke profile cut to one batch per stage, as a user
    runs it (a subprocess: wandb offline and not silenced, nothing filtered by pytest), once per session: the
    ``runs`` folder it wrote into and the finished process (its ``stdout`` / ``stderr``)."""
    runs = tmp_path_factory.mktemp("smoke-runs")
    env = {**os.environ, "DERMFUSE_RUNS": str(runs), "DERMFUSE_CACHE": str(session_cache)}
    env.update({"WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "100"})
    for key in ("WANDB_SILENT", "LOCAL_RANK", "DERMFUSE_RUN_DIR"):
        env.pop(key, None)
    folder = EXPERIMENTS / "mammo_xattn"
    configs = ["--config", str(folder / "config.yaml"), "--config", str(folder / "smoke.yaml")]
    limits = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1"]
    command = [
        sys.executable,
        "-m",
        "dermfuse_models.runner",
        "fit",
        *configs,
        *limits,
        "--trainer.limit_test_batches=1",
    ]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return runs, done
