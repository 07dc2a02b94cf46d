"""The tasks' test metrics recomputed from per-sample predictions under sample weights, vectorised.

A bootstrap resample is a weight per sample (how many times it was drawn); with a ``(B, N)`` weight
matrix every function here returns each metric for all ``B`` resamples at once, as numpy arrays, with
the keys and definitions of :mod:`dermfuse_models.tasks.metrics` / :mod:`dermfuse_models.tasks.segmentation`
(weights of ones give the logged value; the tests check both against scikit-learn with
``sample_weight`` and against torchmetrics). Scikit-learn computes one weighting per call; 1000
resamples x 9 classes of calls would take seconds to minutes, these take milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from dermfuse_models.tasks.metrics import POSITIVE_CLASS, key_safe
from dermfuse_models.tasks.segmentation import per_image_scores

#: ``weights (B, N) -> {metric key: (B,) values}``
Evaluate = Callable[[np.ndarray], dict[str, np.ndarray]]


def _ratio(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
    """``num / den``, ``empty`` where ``den == 0``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), empty)


def _mean_over_present(per_class: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Row-wise mean of ``per_class`` (B, K) over the classes marked ``present`` (NaN when none)."""
    total = np.where(present, np.nan_to_num(per_class), 0.0).sum(axis=1)
    return _ratio(total, present.sum(axis=1), np.nan)


def weighted_auroc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One-vs-rest AUROC of ``scores`` for the ``positive`` samples, per weight row (ties count 1/2).

    The weighted Mann-Whitney statistic ``sum_{i pos, j neg} w_i w_j ([s_i > s_j] + [s_i = s_j] / 2) /
    (W_pos W_neg)``, i.e. the trapezoidal area under the exact ROC curve. NaN without positives or negatives.
    """
    order = np.argsort(scores, kind="stable")
    _, starts = np.unique(scores[order], return_index=True)
    w = weights[:, order]
    pos = np.add.reduceat(w * positive[order], starts, axis=1)
    neg = np.add.reduceat(w * ~positive[order], starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    area = (pos * (below + 0.5 * neg)).sum(axis=1)
    return _ratio(area, pos.sum(axis=1) * neg.sum(axis=1), np.nan)


def classification_evaluator(
    probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str], ece_bins: int = 15
) -> Evaluate:
    """``weights -> metrics`` of a classification test split: ``probs`` (N, K), ``labels`` (N,).

    Keys as :func:`dermfuse_models.tasks.metrics.classification_metrics` logs them: ``acc``, ``bal_acc``,
    ``f1_macro``, ``auroc_macro`` (over the classes present in the resample), ``recall_<class>`` (NaN where
    the class is absent), ``ece``; binary adds ``precision_pos``, ``sensitivity_pos``, ``specificity_pos``,
    ``f1_pos`` (positive = probability of class 1 > 0.5, 0 where undefined, as torchmetrics).
    """
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels).astype(int)
    k = probs.shape[1]
    if len(class_names) != k:
        raise ValueError(f"{len(class_names)} class names for {k} probability columns")
    classes = np.arange(k)
    predicted = probs.argmax(axis=1)
    is_true = (labels[:, None] == classes).astype(np.float64)
    is_pred = (predicted[:, None] == classes).astype(np.float64)
    correct = (predicted == labels).astype(np.float64)
    confidence = probs.max(axis=1)
    bins = np.searchsorted(np.linspace(0, 1, ece_bins + 1), confidence, side="right") - 1
    gap_by_bin = (bins[:, None] == np.arange(ece_bins + 1)) * (correct - confidence)[:, None]
    positive_pred = probs[:, POSITIVE_CLASS] > 0.5 if k == 2 else None

    def evaluate(weights: np.ndarray) -> dict[str, np.ndarray]:
        w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        total = w.sum(axis=1)
        support, tp, n_pred = w @ is_true, w @ (is_true * is_pred), w @ is_pred
        present = support > 0
        recall = _ratio(tp, support, np.nan)
        f1 = _ratio(2 * tp, support + n_pred, 0.0)
        auroc = np.stack([weighted_auroc(probs[:, c], labels == c, w) for c in classes], axis=1)
        out = {
            "acc": _ratio(w @ correct, total, np.nan),
            "bal_acc": _mean_over_present(recall, present),
            "f1_macro": _mean_over_present(f1, present),
            "auroc_macro": _mean_over_present(auroc, present & ~np.isnan(auroc)),
            "ece": _ratio(np.abs(w @ gap_by_bin).sum(axis=1), total, np.nan),
        }
        out.update({f"recall_{key_safe(n)}": recall[:, c] for c, n in enumerate(class_names)})
        if positive_pred is not None:
            actual = labels == POSITIVE_CLASS
            tp1, fp1 = w @ (positive_pred & actual), w @ (positive_pred & ~actual)
            fn1, tn1 = w @ (~positive_pred & actual), w @ (~positive_pred & ~actual)
            out.update(
                precision_pos=_ratio(tp1, tp1 + fp1, 0.0),
                sensitivity_pos=_ratio(tp1, tp1 + fn1, 0.0),
                specificity_pos=_ratio(tn1, tn1 + fp1, 0.0),
                f1_pos=_ratio(2 * tp1, 2 * tp1 + fp1 + fn1, 0.0),
            )
        return out

    return evaluate


def segmentation_evaluator(stats: np.ndarray) -> Evaluate:
    """``weights -> metrics`` of a segmentation test split: per-image ``[tp, fp, tn, fn]`` (N, 4).

    Each metric is the weighted mean of :func:`dermfuse_models.tasks.segmentation.per_image_scores`.
    """
    per_image = {k: v.numpy() for k, v in per_image_scores(torch.as_tensor(np.asarray(stats))).items()}
    table = np.stack(list(per_image.values()), axis=1)

    def evaluate(weights: np.ndarray) -> dict[str, np.ndarray]:
        w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        means = (w @ table) / w.sum(axis=1, keepdims=True)
        return {k: means[:, i] for i, k in enumerate(per_image)}

    return evaluate


def evaluator_for(predictions: dict, class_names: Sequence[str], ece_bins: int = 15) -> Evaluate:
    """The evaluator of a task's ``test_predictions`` (``probs``: classification, ``stats``: segmentation)."""
    if "probs" in predictions:
        return classification_evaluator(predictions["probs"], predictions["label"], class_names, ece_bins)
    if "stats" in predictions:
        return segmentation_evaluator(predictions["stats"])
    raise ValueError(f"test predictions with columns {sorted(predictions)} have neither 'probs' nor 'stats'")
