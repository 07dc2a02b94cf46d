"""The test report's figures: one ROC curve for a binary task, a macro curve for more classes, classes without test
samples drawn as "no samples", curves visible at the frame, and captions naming the data (SYNTHETIC where it is)."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassROC

from dermfuse_models.figure_style import SYNTHETIC_MARK, FigureContext
from dermfuse_models.tasks.classification_report import confusion_matrix_figure, roc_curves_figure

CONTEXT = FigureContext("cbis_ddsm", "test", "mammo_xattn/20261201-run", "best-epoch005.ckpt", synthetic=True)


def _curves(probs: torch.Tensor, labels: torch.Tensor):
    roc = MulticlassROC(probs.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns about the class without positives
        roc.update(probs, labels)
        fpr, tpr, _ = roc.compute()
    return list(fpr), list(tpr)


def _data_lines(ax):
    """The plotted curves (lines with data), without the chance diagonal."""
    return [line for line in ax.get_lines() if len(line.get_xdata()) and not line.get_label().startswith("chance")]


def _legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_binary_roc_is_one_curve_for_the_positive_class_with_sklearns_auc():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (40,), generator=g)
    p1 = (labels.float() * 0.4 + torch.rand(40, generator=g) * 0.6).clamp(0, 1)
    probs = torch.stack([1 - p1, p1], 1)
    fig = roc_curves_figure(*_curves(probs, labels), ["BENIGN", "MALIGNANT"], [20, 20], CONTEXT)
    ax = fig.axes[0]
    curves = _data_lines(ax)
    assert len(curves) == 1
    auc = roc_auc_score(labels.numpy(), p1.numpy())
    assert curves[0].get_label() == f"MALIGNANT vs BENIGN (AUC {auc:.3f})"
    title = fig._suptitle.get_text()
    assert "positive class MALIGNANT" in title and SYNTHETIC_MARK in title and "best-epoch005.ckpt" in title


def test_multiclass_roc_has_a_macro_curve_and_labels_a_class_without_samples():
    g = torch.Generator().manual_seed(1)
    labels = torch.tensor([0, 1, 2] * 10)  # class 3 ("vasc") has no test sample
    logits = torch.randn(30, 4, generator=g) + 2.0 * torch.nn.functional.one_hot(labels, 4)
    probs = logits.softmax(1)
    names = ["nev", "mel", "bcc", "vasc"]
    fig = roc_curves_figure(*_curves(probs, labels), names, [10, 10, 10, 0], CONTEXT)
    ax = fig.axes[0]
    legend = _legend(ax)
    assert "vasc: no samples" in legend and not any("AUC 0.000" in t for t in legend)
    aucs = [roc_auc_score((labels == k).numpy(), probs[:, k].numpy()) for k in range(3)]
    for k in range(3):
        assert f"{names[k]} (AUC {aucs[k]:.3f})" in legend
    assert f"macro average of 3 classes (mean AUC {np.mean(aucs):.3f})" in legend
    assert len(_data_lines(ax)) == 4  # three classes + the macro average; no curve for "vasc"
    for line in _data_lines(ax):  # drawn over the frame: a curve along TPR 1 / FPR 0 stays visible
        assert line.get_clip_on() is False
    assert ax.get_xlim()[0] < 0 < 1 < ax.get_xlim()[1] and ax.get_ylim()[0] < 0 < 1 < ax.get_ylim()[1]


def test_confusion_matrix_names_its_data_and_classes_without_samples():
    matrix = MulticlassConfusionMatrix(3)
    matrix.update(torch.tensor([0, 1, 1, 0]), torch.tensor([0, 1, 0, 0]))
    fig = confusion_matrix_figure(matrix.compute(), ["nev", "mel", "bcc"], CONTEXT)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["nev (n=3)", "mel (n=1)", "bcc (no samples)"]
    title = fig._suptitle.get_text()
    assert title.startswith("Confusion matrix (n=4)\n") and "cbis_ddsm · test split" in title
    assert SYNTHETIC_MARK in title and "run mammo_xattn/20261201-run" in title


def test_context_is_read_from_a_trainer_and_says_when_weights_are_not_a_checkpoint(tmp_path):
    data = SimpleNamespace(hparams={"dataset": "ham10000"}, is_synthetic=False)
    trainer = SimpleNamespace(datamodule=data, default_root_dir=str(tmp_path / "dualnet" / "run1"), ckpt_path=None)
    context = FigureContext.from_trainer(trainer, "test")
    assert context == FigureContext("ham10000", "test", "dualnet/run1", None, False)
    assert context.caption() == "ham10000 · test split · run dualnet/run1 · weights in memory (no checkpoint)"
