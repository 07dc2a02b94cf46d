"""After ``trainer.test``: ``test_predictions.csv`` and a grouped bootstrap 95% CI of every test metric.

:func:`add_test_intervals` extends a run's ``metrics.json`` record (``summary.run_summary``) with

* ``ci95``: ``{"test/bal_acc": [lo, hi], ...}`` for every logged test metric (the loss terms are
  optimisation quantities, not metrics of the predictions, and get none);
* ``ci_groups``: how many groups (patients, lesions or images: the dataset's ``group_id``) were resampled;
* ``ci_method``: method, confidence, resamples, seed, unit (see :mod:`dermfuse_models.runner.bootstrap`).

The metrics are recomputed from the saved predictions (:mod:`dermfuse_models.runner.weighted_metrics`);
a recomputed value that differs from the logged one (e.g. DDP's sampler repeating a few samples) is
reported as a warning.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from dermfuse_models.runner.bootstrap import grouped_bootstrap
from dermfuse_models.runner.test_predictions import groups_of, write_test_predictions
from dermfuse_models.runner.weighted_metrics import evaluator_for

log = logging.getLogger(__name__)
#: logged and recomputed test metrics agree to this (float32 torchmetrics vs float64 numpy)
AGREEMENT = 1e-4


def _group_by_sample(datamodule) -> dict[str, str]:
    table = datamodule.split_table("test")
    return dict(zip(table.column("sample_id").to_pylist(), map(str, table.column("group_id").to_pylist())))


def add_test_intervals(summary: dict[str, Any], model, datamodule, run_dir: str | Path, write: bool = True) -> None:
    """Write ``<run_dir>/test_predictions.csv`` (when ``write``) and add ``ci95`` / ``ci_groups`` / ``ci_method``."""
    predictions = getattr(model, "test_predictions", None)
    test = summary.get("test") or {}
    if predictions is None or not test:
        summary.update(ci95={}, ci_groups=0, ci_method={"note": "no per-sample test predictions"})
        return
    groups = groups_of(list(predictions["sample_id"]), _group_by_sample(datamodule))
    class_names = list(getattr(model, "class_names", None) or [])
    if write:
        write_test_predictions(run_dir, predictions, groups, class_names)
    evaluate = evaluator_for(predictions, class_names, int(getattr(model, "hparams", {}).get("ece_bins", 15)))
    point = {f"test/{k}": float(v[0]) for k, v in evaluate(np.ones(len(groups))).items()}
    keys = [k for k in test if k in point]
    if len(set(groups)) < 2:
        summary.update(ci95={}, ci_groups=len(set(groups)), ci_method={"note": "fewer than 2 test groups"})
        return
    result = grouped_bootstrap(evaluate, groups)
    intervals = {k: result.intervals[k.removeprefix("test/")] for k in keys}
    summary["ci95"] = {
        k: [round(lo, 6), round(hi, 6)] for k, (lo, hi) in intervals.items() if np.isfinite([lo, hi]).all()
    }
    summary["ci_groups"] = result.n_groups
    summary["ci_method"] = {**result.describe(), "unit": getattr(datamodule.source, "group", "group_id")}
    disagree = {k: (test[k], point[k]) for k in keys if not math.isclose(test[k], point[k], abs_tol=AGREEMENT)}
    if disagree:
        log.warning("test metrics recomputed from the predictions differ from the logged ones: %s", disagree)
