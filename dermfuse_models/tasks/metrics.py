"""Classification metrics that are right by construction (torchmetrics objects, DDP-synchronised).

* **Macro averages over the classes present.** A class with no sample in the evaluated split (ISIC 2019's
  ``UNK``: no training image at all; a rare class missing from a small test split) has no recall, F1 or
  AUROC; torchmetrics' ``average="macro"`` scores it 0 (AUROC) or 0/0 and averages it in, e.g. 0.843
  instead of 0.948 for ISIC 2019's 8 real classes. Here ``bal_acc``, ``f1_macro`` and ``auroc_macro`` are
  the mean of the per-class values over the classes with support > 0 in the evaluated split (scikit-learn's
  ``balanced_accuracy_score`` convention); the head keeps its K outputs, and predicting an absent class
  still costs the recall of the class it was taken from. ``recall_<class>`` of an absent class is NaN and
  not logged.
* **Positive-class metrics of binary tasks** (benign vs malignant): ``precision_pos``,
  ``sensitivity_pos``, ``specificity_pos`` and ``f1_pos`` of class index 1 (the positive class, e.g.
  CBIS-DDSM ``MALIGNANT``), the figures a paper means by "precision / recall / F1" of a detector, at the
  argmax decision (probability of class 1 >= 0.5).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import ClasswiseWrapper, MetricCollection
from torchmetrics.classification import (
    BinaryF1Score,
    BinaryPrecision,
    BinaryRecall,
    BinarySpecificity,
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassCalibrationError,
    MulticlassF1Score,
    MulticlassRecall,
)
from torchmetrics.utilities.data import dim_zero_cat

#: label index of the positive class in binary tasks (CBIS-DDSM: BENIGN=0, MALIGNANT=1)
POSITIVE_CLASS = 1


def key_safe(name: str) -> str:
    """Class name usable in a metric key: ``"basal cell"`` -> ``"basal_cell"``."""
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", str(name)).strip("_") or "class"


def mean_over_supported(per_class: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """Mean of ``per_class`` values over the classes with ``support > 0`` (NaN when none has support)."""
    present = support > 0
    if not bool(present.any()):
        return per_class.new_tensor(float("nan"))
    return per_class[present].mean()


class _StatScoresSupport:
    """Per-class support ``tp + fn`` of a torchmetrics stat-scores metric (its synchronised states)."""

    def class_support(self) -> torch.Tensor:
        tp, _, _, fn = self._final_state()
        return tp + fn


class SupportedMacroRecall(_StatScoresSupport, MulticlassRecall):
    """Balanced accuracy: the mean recall over the classes present in the evaluated split."""

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(num_classes, average=None, **kwargs)

    def compute(self) -> torch.Tensor:
        """Mean per-class recall over supported classes."""
        return mean_over_supported(super().compute(), self.class_support())


class SupportedMacroF1(_StatScoresSupport, MulticlassF1Score):
    """Macro F1 over the classes present in the evaluated split."""

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(num_classes, average=None, **kwargs)

    def compute(self) -> torch.Tensor:
        """Mean per-class F1 over supported classes."""
        return mean_over_supported(super().compute(), self.class_support())


class SupportedMacroAUROC(MulticlassAUROC):
    """Macro one-vs-rest AUROC over the classes present in the evaluated split (exact, no binning)."""

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(num_classes, average=None, thresholds=None, **kwargs)

    def compute(self) -> torch.Tensor:
        """Mean per-class AUROC over the classes with at least one positive and one negative sample (where a
        one-vs-rest AUROC is defined; NaN when no class has both, e.g. a split holding one class)."""
        support = torch.bincount(dim_zero_cat(self.target).long(), minlength=self.num_classes)
        defined = (support > 0) & (support < support.sum())
        with warnings.catch_warnings():  # torchmetrics warns about the absent classes we leave out
            warnings.filterwarnings("ignore", message=".*(positive|negative) samples in targets.*")
            per_class = super().compute()
        return mean_over_supported(per_class, defined.long())


class PerClassRecall(_StatScoresSupport, MulticlassRecall):
    """Recall of every class; NaN for a class without support (its key is then not logged)."""

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(num_classes, average=None, **kwargs)

    def compute(self) -> torch.Tensor:
        """Per-class recall, NaN where the class has no sample."""
        recall = super().compute().float()
        return torch.where(self.class_support() > 0, recall, torch.full_like(recall, float("nan")))


class _PositiveClassProbability:
    """Feeds a binary torchmetrics metric the probability of :data:`POSITIVE_CLASS` from ``(B, 2)`` probabilities."""

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        super().update(preds[:, POSITIVE_CLASS], (target == POSITIVE_CLASS).long())


class PositivePrecision(_PositiveClassProbability, BinaryPrecision):
    """Precision (positive predictive value) of the positive class."""


class PositiveSensitivity(_PositiveClassProbability, BinaryRecall):
    """Sensitivity (recall, true positive rate) of the positive class."""


class PositiveSpecificity(_PositiveClassProbability, BinarySpecificity):
    """Specificity (true negative rate) of the positive class."""


class PositiveF1(_PositiveClassProbability, BinaryF1Score):
    """F1 of the positive class (not the macro F1 over both classes)."""


def classification_metrics(
    num_classes: int, class_names: Sequence[str], ece_bins: int = 15, **metric_kwargs: Any
) -> MetricCollection:
    """The logged classification metrics (keys without the ``val/`` / ``test/`` prefix).

    ``acc`` (micro accuracy), ``bal_acc``, ``f1_macro``, ``auroc_macro`` (means over the classes present),
    ``recall_<class>``, ``ece`` (top-1 expected calibration error, ``ece_bins`` equal-width bins, L1) and,
    when ``num_classes == 2``, ``precision_pos``, ``sensitivity_pos``, ``specificity_pos``, ``f1_pos``.
    ``metric_kwargs`` go to every metric (e.g. ``sync_on_compute=False`` for predictions already gathered
    from every rank: ``dermfuse_models.runner.evaluate``).
    """
    kw = metric_kwargs
    metrics = {
        "acc": MulticlassAccuracy(num_classes, average="micro", **kw),
        "bal_acc": SupportedMacroRecall(num_classes, **kw),
        "f1_macro": SupportedMacroF1(num_classes, **kw),
        "auroc_macro": SupportedMacroAUROC(num_classes, **kw),
        "recall": ClasswiseWrapper(
            PerClassRecall(num_classes, **kw), labels=[key_safe(n) for n in class_names], prefix="recall_"
        ),
        "ece": MulticlassCalibrationError(num_classes, n_bins=ece_bins, norm="l1", **kw),
    }
    if num_classes == 2:
        metrics.update(
            precision_pos=PositivePrecision(**kw),
            sensitivity_pos=PositiveSensitivity(**kw),
            specificity_pos=PositiveSpecificity(**kw),
            f1_pos=PositiveF1(**kw),
        )
    # compute groups share states with the wrapped per-class recall inconsistently across resets
    # (spurious "compute before update"); the duplicate updates are cheap.
    return MetricCollection(metrics, compute_groups=False)
