"""``<run>/provenance.json``: what produced a run, written when it starts (whatever wandb's mode).

One record per session: the first start at the top level, each ``RESUME=1`` appended to ``resumed``.
A record holds the package versions, the git commit of the dermfuse checkout and whether it had
uncommitted changes, the command line, host, start time, launcher job ids, and a fingerprint of the
dataset table (:func:`dataset_fingerprint`: which samples, labels, groups and splits the run saw), so
two runs can be checked for having used the same data and the same code.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch

from dermfuse_models.runner.atomic import atomic_write_text

FILE_NAME = "provenance.json"
#: distributions whose versions are recorded (None where not installed)
PACKAGES = (
    "dermfuse",
    "torch",
    "torchvision",
    "pytorch-lightning",
    "lightning",
    "timm",
    "monai",
    "torchmetrics",
    "captum",
    "jsonargparse",
    "numpy",
    "pyarrow",
    "wandb",
)
FINGERPRINT_COLUMNS = ("sample_id", "label", "group_id", "split")
#: environment variables naming the job that ran the run
JOB_VARIABLES = ("SLURM_JOB_ID", "SLURM_STEP_ID", "TORCHELASTIC_RUN_ID", "WORLD_SIZE")
REPO = Path(__file__).resolve().parents[2]


def package_versions() -> dict[str, str | None]:
    """Installed version of each of :data:`PACKAGES`."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state() -> dict[str, Any]:
    """``{"commit", "dirty"}`` of the checkout dermfuse runs from (both ``None`` outside a git checkout)."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def dataset_fingerprint(table: pa.Table) -> dict[str, Any]:
    """SHA-256 of the table's ``sample_id, label, group_id, split`` rows sorted by sample id, and its sizes."""
    columns = [c for c in FINGERPRINT_COLUMNS if c in table.column_names]
    rows = sorted(zip(*(table.column(c).to_pylist() for c in columns)), key=lambda r: str(r[0]))
    digest = hashlib.sha256()
    for row in rows:
        digest.update(("\x1f".join(str(v) for v in row) + "\n").encode())
    splits: dict[str, int] = {}
    if "split" in table.column_names:
        for split in table.column("split").to_pylist():
            splits[str(split)] = splits.get(str(split), 0) + 1
    return {"sha256": digest.hexdigest(), "columns": columns, "rows": len(rows), "splits": splits}


def session_record(argv: list[str], table: pa.Table | None, wandb_mode: str, data: dict[str, Any]) -> dict[str, Any]:
    """The provenance of one start of a run (module doc)."""
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": [sys.executable, "-m", "dermfuse_models.runner", *argv],
        "cwd": os.getcwd(),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "git": git_state(),
        "cuda": torch.version.cuda,
        "jobs": {k: os.environ[k] for k in JOB_VARIABLES if os.environ.get(k)},
        "wandb_mode": wandb_mode,
        "data": data,
        "dataset_fingerprint": None if table is None else dataset_fingerprint(table),
    }


def write_provenance(run_dir: str | Path, record: dict[str, Any], resumed: bool) -> Path:
    """Write ``record`` as the run's provenance, or append it to ``resumed`` of the existing file."""
    path = Path(run_dir) / FILE_NAME
    if resumed and path.is_file():
        try:
            existing = json.loads(path.read_text())
        except ValueError:
            existing = {"unreadable_previous_provenance": True}
        existing.setdefault("resumed", []).append(record)
        record = existing
    return atomic_write_text(path, json.dumps(record, indent=2, default=str))
