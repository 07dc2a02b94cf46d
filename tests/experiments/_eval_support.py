"""Helpers of the evaluation tests: a tiny trained run, digests of its files, CSV rows, its split ids."""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

from tests.experiments._support import REPO, metrics_of


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


def train_tiny(run_dir: Path, paper: str = "vitatt", dataset: str = "pad_ufes_20", *extra: str) -> Path:
    """Fit ``paper``'s smoke profile on ``dataset``'s miniature for a few steps into ``run_dir``; returns it.

    One epoch of two training batches, one validation batch (the best checkpoint's monitor), the whole
    test split (``metrics.json``). Model quality is irrelevant: the tests compare numbers and files.
    """
    from dermfuse_models.runner.cli import main

    folder = REPO / "experiments" / paper
    main(
        [
            "fit",
            "--config",
            str(folder / "config.yaml"),
            "--config",
            str(folder / "data" / f"{dataset}.yaml"),
            "--config",
            str(folder / "smoke.yaml"),
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=1",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            f"--run_dir={run_dir}",
            *extra,
        ]
    )
    os.environ.pop("DERMFUSE_RUN_DIR", None)
    return run_dir
