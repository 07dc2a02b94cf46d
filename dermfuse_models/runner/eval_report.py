"""Scores and files of an evaluation: the task's own metrics from per-sample predictions, a predictions CSV, figures.

Classification uses the task's metric collection (:func:`~dermfuse_models.tasks.metrics.classification_metrics`:
``acc``, ``bal_acc``, ``f1_macro``, ``auroc_macro``, ``recall_<class>``, ``ece``) and its test report
(confusion matrix + ROC figures, confusion JSON); segmentation the task's per-image mean scores
(:func:`~dermfuse_models.tasks.segmentation.segmentation_scores`). Keys are ``<split>/<metric>``, so
an evaluation of the test split reads like the run's own ``metrics.json``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_confusion_matrix, multiclass_roc

from dermfuse_models.runner.atomic import atomic_write_text
from dermfuse_models.tasks.classification_report import write_test_report
from dermfuse_models.tasks.metrics import classification_metrics
from dermfuse_models.tasks.segmentation import METRIC_NAMES, per_image_scores, segmentation_scores

PREDICTIONS_CSV = "predictions.csv"


def write_rows(path: str | Path, header: Sequence[str], rows: Iterable[Sequence]) -> Path:
    """A CSV file written atomically (:func:`~dermfuse_models.runner.atomic.atomic_write_text`); 8-digit floats."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([f"{v:.8g}" if isinstance(v, float | np.floating) else v for v in row])
    return atomic_write_text(path, text.getvalue())


def classification_scores(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str], prefix: str) -> dict:
    """The task's metrics of ``probs (N, K)`` against ``labels (N,)``, keyed ``<prefix>/<metric>``."""
    metrics = classification_metrics(len(class_names), class_names, sync_on_compute=False).clone(prefix=f"{prefix}/")
    metrics.update(torch.as_tensor(probs, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.long))
    return {k: float(v) for k, v in sorted(metrics.compute().items())}


def write_classification_files(
    folder: Path,
    probs: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    columns: dict[str, list],
) -> dict[str, Path]:
    """``predictions.csv`` (the ``columns`` given, then pred, pred_name, prob_<class>) and the test report figures."""
    pred = probs.argmax(axis=1)
    header = [*columns, "label", "label_name", "pred", "pred_name", *[f"prob_{n}" for n in class_names]]
    rows = (
        [*(columns[c][i] for c in columns), int(labels[i]), class_names[labels[i]], int(pred[i]), class_names[pred[i]]]
        + [float(p) for p in probs[i]]
        for i in range(len(labels))
    )
    paths = {"predictions": write_rows(folder / PREDICTIONS_CSV, header, rows)}
    p, y, k = torch.as_tensor(probs, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.long), len(class_names)
    fpr, tpr, _ = multiclass_roc(p, y, k)
    paths.update(write_test_report(folder, multiclass_confusion_matrix(p, y, k), list(fpr), list(tpr), class_names))
    return paths


def segmentation_scores_of(stats: np.ndarray, prefix: str) -> dict:
    """The task's per-image mean scores of ``stats (N, 4)`` (tp, fp, tn, fn), keyed ``<prefix>/<metric>``."""
    return {f"{prefix}/{k}": float(v) for k, v in segmentation_scores(torch.as_tensor(stats)).items()}


def write_segmentation_predictions(folder: Path, stats: np.ndarray, columns: dict[str, list]) -> Path:
    """``predictions.csv``: the ``columns`` given, then each image's own scores."""
    scores = per_image_scores(torch.as_tensor(stats).reshape(len(stats), -1))  # every image at once
    header = [*columns, *METRIC_NAMES]
    rows = (
        [*(columns[c][i] for c in columns), *(float(scores[m][i]) for m in METRIC_NAMES)] for i in range(len(stats))
    )
    return write_rows(folder / PREDICTIONS_CSV, header, rows)
