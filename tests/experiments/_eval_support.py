"""Helpers of the evaluation tests: digests of a run's files, CSV rows, a run's split ids."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from tests.experiments._support import metrics_of


def digests(run_dir: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file of the run outside ``eval/``."""
    return {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.relative_to(run_dir).parts[0] not in ("eval", "predictions")
    }


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def split_ids(run_dir: Path) -> list[str]:
    """The sample ids of the run's test split (the run's own split file)."""
    split_file = Path(metrics_of(run_dir)["split_file"])
    return [line.split(",")[0] for line in split_file.read_text().splitlines()[1:] if line.endswith(",test")]
