"""``<run>/test_predictions.csv``: every test sample's prediction, so anyone can recompute any statistic.

One row per test sample: ``sample_id``, ``group`` (the dataset's ``group_id``: patient, lesion or image),
``label`` (class index), then

* classification: ``prob_<class>`` per class (softmax probabilities of the tested checkpoint);
* segmentation: ``dice``, ``iou`` (per image, at the task's threshold) and the pixel counts
  ``tp``, ``fp``, ``tn``, ``fn`` they come from.

DeLong's test between two runs, McNemar's test, or another bootstrap read this file; the report reads it
to bootstrap the seed mean of a comparison. Written atomically (a temporary file renamed).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from dermfuse_models.runner.atomic import atomic_write_text
from dermfuse_models.tasks.metrics import key_safe
from dermfuse_models.tasks.segmentation import per_image_scores

PREDICTIONS_CSV = "test_predictions.csv"
PROB_PREFIX = "prob_"
STAT_COLUMNS = ("tp", "fp", "tn", "fn")


def groups_of(sample_ids: Sequence[str], group_by_sample: Mapping[str, str]) -> np.ndarray:
    """The group of each sample id; a clear error naming the first id without one."""
    missing = [s for s in sample_ids if s not in group_by_sample]
    if missing:
        raise KeyError(
            f"{len(missing)} test sample(s) are not in the dataset's table (e.g. {missing[0]!r}): "
            "the predictions belong to another dataset or split"
        )
    return np.asarray([group_by_sample[s] for s in sample_ids])


def write_test_predictions(
    run_dir: str | Path, predictions: Mapping[str, np.ndarray], groups: np.ndarray, class_names: Sequence[str]
) -> Path:
    """Write ``<run_dir>/test_predictions.csv`` from a task's ``test_predictions``; returns the path."""
    path = Path(run_dir) / PREDICTIONS_CSV
    header = ["sample_id", "group", "label"]
    if "probs" in predictions:
        header += [PROB_PREFIX + key_safe(n) for n in class_names]
        values = np.asarray(predictions["probs"])
    else:
        stats = np.asarray(predictions["stats"])
        scores = per_image_scores(torch.as_tensor(stats))
        header += ["dice", "iou", *STAT_COLUMNS]
        values = np.column_stack([scores["dice"].numpy(), scores["iou"].numpy(), stats])
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    for sid, group, label, row in zip(predictions["sample_id"], groups, predictions["label"], values, strict=True):
        writer.writerow([sid, group, int(label), *(f"{v:.9g}" for v in row)])
    return atomic_write_text(path, text.getvalue())


def read_test_predictions(path: str | Path) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """``(predictions, groups, class names)`` from a ``test_predictions.csv`` (the task's array names).

    Classification files give ``probs`` and the class names of their ``prob_`` columns; segmentation
    files give ``stats`` and no class names.
    """
    path = Path(path)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ValueError(f"{path} has no rows")
    columns = list(rows[0])
    out: dict[str, np.ndarray] = {
        "sample_id": np.asarray([r["sample_id"] for r in rows]),
        "label": np.asarray([int(r["label"]) for r in rows]),
    }
    probs = [c for c in columns if c.startswith(PROB_PREFIX)]
    if probs:
        out["probs"] = np.asarray([[float(r[c]) for c in probs] for r in rows])
    elif all(c in columns for c in STAT_COLUMNS):
        out["stats"] = np.asarray([[float(r[c]) for c in STAT_COLUMNS] for r in rows])
    else:
        raise ValueError(f"{path}: neither prob_<class> columns nor {list(STAT_COLUMNS)}")
    return out, np.asarray([r["group"] for r in rows]), [c.removeprefix(PROB_PREFIX) for c in probs]
