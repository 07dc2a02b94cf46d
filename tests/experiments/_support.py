"""Constants and helpers of the experiment-infrastructure tests (imported as tests.experiments._support)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"
#: the five papers the issue names, with their experiment files
PAPERS = ("dualnet", "vitatt", "eamnet", "msvit", "mammo_xattn")
#: trainer arguments that keep a CPU run quiet
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
#: ViTAtt's config and CPU smoke profile, quiet (tests append their limits)
VITATT_SMOKE = [
    "--config",
    str(EXPERIMENTS / "vitatt" / "config.yaml"),
    "--config",
    str(EXPERIMENTS / "vitatt" / "smoke.yaml"),
    *QUIET,
]


def overlays(paper: str) -> list[str]:
    """Dataset overlay names of a paper (``experiments/<paper>/data/*.yaml``)."""
    return sorted(p.stem for p in (EXPERIMENTS / paper / "data").glob("*.yaml"))


def require_paper(paper: str) -> Path:
    """The paper's folder; a paper without its config fails the test (never skips)."""
    folder = EXPERIMENTS / paper
    if not (folder / "config.yaml").is_file():
        pytest.fail(f"experiments/{paper}/config.yaml is missing: every paper of {PAPERS} must have one")
    return folder


def metrics_of(run_dir: str | Path) -> dict:
    """A finished run's ``metrics.json``."""
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def make(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``make`` in the repo, never rebuilding the venv (its stamp counts as up to date)."""
    return subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def child_env(runs: Path, cache: Path, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """The environment of a training subprocess: its own ``runs`` and ``cache`` folders, wandb off, no hub, one
    thread, this checkout importable, and no launcher variables inherited from the test process (plus ``drop``)."""
    env = {
        **os.environ,
        "DERMFUSE_RUNS": str(runs),
        "DERMFUSE_CACHE": str(cache),
        "WANDB_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
    }
    for key in ("LOCAL_RANK", "DERMFUSE_RUN_DIR", *drop):
        env.pop(key, None)
    return env
