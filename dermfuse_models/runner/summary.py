"""A run's ``metrics.json``: what ran (data, split, seeds, checkpoint) and its final metrics, and how it is printed.

``status`` is ``finished`` (fit + test done; ``val`` holds the validation metrics of the best
checkpoint's epoch, ``best_epoch``) or ``failed`` (:func:`failure_summary`: why, where it stopped).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from dermfuse_data.splits import uses_official
from dermfuse_models.runner.atomic import atomic_write_text
from dermfuse_models.runner.terminal import aligned, run_outputs


def scalars(metrics: dict) -> dict[str, float]:
    """The scalar entries of a metrics dict as floats, sorted by key."""
    return {k: float(v) for k, v in sorted(metrics.items()) if getattr(v, "numel", lambda: 1)() == 1}


def run_summary(
    trainer: pl.Trainer,
    datamodule,
    experiment: str,
    seed_everything: Any,
    best: str | None,
    val: dict[str, float],
    test: dict[str, float],
) -> dict[str, Any]:
    """The ``metrics.json`` record of a finished fit (data, split, seeds, epochs, best checkpoint, metrics)."""
    hp = datamodule.hparams
    return {
        "run_dir": trainer.default_root_dir,
        "experiment": experiment,
        "dataset": hp.dataset,
        "source_options": dict(hp.source_options or {}),
        "task": hp.task,
        "synthetic": datamodule.is_synthetic,
        "split": "test",
        "official_split": uses_official(datamodule.table, hp.use_official_split),
        "meta_features": [f.name for f in datamodule.features],
        "predicted_masks": hp.predicted_masks,
        "test_meta_missing_fraction": hp.test_meta_missing_fraction,
        "seed": hp.seed,
        "seed_everything": seed_everything,
        "split_file": str(datamodule.split_file),
        "image_size": hp.image_size,
        "epochs": trainer.current_epoch,
        "max_epochs": trainer.max_epochs,
        "best_checkpoint": best,
        "status": "finished",
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "val": {k: v for k, v in val.items() if k.startswith("val/")},
        "test": test,
    }


def failure_summary(trainer: pl.Trainer, experiment: str, dataset: str, error: BaseException) -> dict[str, Any]:
    """The ``metrics.json`` record of a fit that failed: ``status: failed``, the reason and where it stopped."""
    return {
        "run_dir": trainer.default_root_dir,
        "experiment": experiment,
        "dataset": dataset,
        "status": "failed",
        "reason": f"{type(error).__name__}: {error}",
        "epoch": trainer.current_epoch,
        "step": trainer.global_step,
        "max_epochs": trainer.max_epochs,
        "failed": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def write_summary(folder: str | Path, summary: dict[str, Any], name: str = "metrics.json") -> Path:
    """Write ``summary`` as ``<folder>/<name>`` atomically; returns the path."""
    return atomic_write_text(Path(folder) / name, json.dumps(summary, indent=2))


def print_summary(summary: dict[str, Any], key: str = "test", folder: str = "run folder") -> None:
    """Where the run and its outputs are (marked SYNTHETIC where it is) and its ``key`` metrics, aligned, each
    with its 95% CI where ``summary`` has one."""
    banner = " (SYNTHETIC DATA: a pipeline check, not a result)" if summary.get("synthetic") else ""
    print(f"\n{folder}: {summary['run_dir']}{banner}")
    outputs = run_outputs(summary["run_dir"], summary.get("best_checkpoint"))
    if outputs:
        print(aligned(outputs))
    if not summary.get(key):
        return
    intervals = summary.get("ci95") or {}
    print(f"{key} metrics" + (" (best checkpoint)" if summary.get("best_checkpoint") else "") + ":")
    rows = [
        (k, f"{v:.4f}" + (f"  95% CI [{intervals[k][0]:.4f}, {intervals[k][1]:.4f}]" if k in intervals else ""))
        for k, v in summary[key].items()
    ]
    print(aligned(rows))
    if intervals:
        print(
            f"  (95% CI: grouped bootstrap over {summary.get('ci_groups')} test groups; "
            "per-sample predictions in test_predictions.csv)"
        )
