"""Test-time report of a classification run: confusion matrix (PNG + JSON) and ROC curves (PNG).

Figures are drawn with matplotlib's object API (``matplotlib.figure.Figure``, Agg canvas), so no
global pyplot backend is touched and nothing needs a display.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure

CONFUSION_PNG = "confusion_matrix.png"
ROC_PNG = "roc_curves.png"
CONFUSION_JSON = "test_confusion_matrix.json"


def confusion_summary(matrix: torch.Tensor, class_names: Sequence[str]) -> dict:
    """JSON-ready confusion matrix: ``matrix[true][pred]`` counts and per-class one-vs-rest counts.

    ``per_class[name]`` holds ``tp, fp, fn, tn, support, recall, precision`` (``None`` where the
    denominator is 0).
    """
    m = matrix.detach().to(torch.long).cpu()
    total = int(m.sum())
    per_class = {}
    for k, name in enumerate(class_names):
        tp = int(m[k, k])
        fn = int(m[k].sum()) - tp
        fp = int(m[:, k].sum()) - tp
        per_class[str(name)] = {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "tn": total - tp - fp - fn,
            "support": tp + fn,
            "recall": tp / (tp + fn) if tp + fn else None,
            "precision": tp / (tp + fp) if tp + fp else None,
        }
    return {
        "class_names": [str(n) for n in class_names],
        "rows": "true class",
        "columns": "predicted class",
        "matrix": m.tolist(),
        "total": total,
        "per_class": per_class,
    }


def confusion_matrix_figure(matrix: torch.Tensor, class_names: Sequence[str]) -> Figure:
    """Heat map of counts (rows true, columns predicted) with counts and row-percentages written in."""
    m = matrix.detach().to(torch.float64).cpu()
    k = len(class_names)
    row_share = m / m.sum(dim=1, keepdim=True).clamp(min=1)
    fig = Figure(figsize=(1.2 * k + 3, 1.1 * k + 2.5), dpi=120)
    ax = fig.add_subplot()
    image = ax.imshow(row_share.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of true class")
    ax.set_xticks(range(k), [str(n) for n in class_names], rotation=45, ha="right")
    ax.set_yticks(range(k), [str(n) for n in class_names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            colour = "white" if row_share[i, j] > 0.5 else "black"
            ax.text(j, i, f"{int(m[i, j])}\n{row_share[i, j]:.0%}", ha="center", va="center", color=colour, fontsize=8)
    ax.set_title(f"Test confusion matrix (n={int(m.sum())})")
    fig.tight_layout()
    return fig


def roc_curves_figure(fpr: Sequence[torch.Tensor], tpr: Sequence[torch.Tensor], class_names: Sequence[str]) -> Figure:
    """One-vs-rest ROC curve per class with its AUC (trapezoidal) in the legend."""
    fig = Figure(figsize=(5.5, 5), dpi=120)
    ax = fig.add_subplot()
    for f, t, name in zip(fpr, tpr, class_names, strict=True):
        f, t = f.detach().float().cpu(), t.detach().float().cpu()
        auc = float(torch.trapezoid(t, f)) if f.numel() > 1 else float("nan")
        ax.plot(f.numpy(), t.numpy(), label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("Test ROC (one vs rest)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def write_test_report(
    out_dir: str | Path,
    matrix: torch.Tensor,
    fpr: Sequence[torch.Tensor],
    tpr: Sequence[torch.Tensor],
    class_names: Sequence[str],
) -> dict[str, Path]:
    """Write ``figures/confusion_matrix.png``, ``figures/roc_curves.png`` and ``test_confusion_matrix.json``.

    Returns the written paths by name (``confusion_matrix``, ``roc_curves``, ``confusion_json``).
    """
    out_dir = Path(out_dir)
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    paths = {
        "confusion_matrix": figures / CONFUSION_PNG,
        "roc_curves": figures / ROC_PNG,
        "confusion_json": out_dir / CONFUSION_JSON,
    }
    confusion_matrix_figure(matrix, class_names).savefig(paths["confusion_matrix"])
    roc_curves_figure(fpr, tpr, class_names).savefig(paths["roc_curves"])
    paths["confusion_json"].write_text(json.dumps(confusion_summary(matrix, class_names), indent=2))
    return paths
