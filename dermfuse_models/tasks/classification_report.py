"""Test-time report of a classification run: confusion matrix (PNG + JSON) and ROC curves (PNG).

Figures are drawn with matplotlib's object API (``matplotlib.figure.Figure``, Agg canvas), so no
global pyplot backend is touched and nothing needs a display, in the package's one style
(:mod:`dermfuse_models.figure_style`), captioned with what they show (:class:`FigureContext`).
torchmetrics' ``MulticlassROC.plot`` draws one curve per class only: the binary single curve, the macro
average and the "no samples" entries are drawn here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from dermfuse_models.figure_style import FigureContext, figure_style

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


def confusion_matrix_figure(
    matrix: torch.Tensor, class_names: Sequence[str], context: FigureContext | None = None
) -> Figure:
    """Heat map of counts (rows true, columns predicted) with counts and row-percentages written in; each true
    class is labelled with its number of samples (``(no samples)`` for none); the caption names the data."""
    m = matrix.detach().to(torch.float64).cpu()
    k = len(class_names)
    support = m.sum(dim=1)
    row_share = m / support[:, None].clamp(min=1)
    with figure_style():
        fig = Figure(figsize=(0.75 * k + 2.6, 0.6 * k + 1.9), layout="constrained")
        ax = fig.add_subplot()
        image = ax.imshow(row_share.numpy(), cmap="Blues", vmin=0, vmax=1)
        fig.colorbar(image, ax=ax, label="share of the true class", shrink=0.8)
        rows = [f"{n} ({'no samples' if c == 0 else f'n={int(c)}'})" for n, c in zip(class_names, support, strict=True)]
        ax.set_xticks(range(k), [str(n) for n in class_names], rotation=45, ha="right")
        ax.set_yticks(range(k), rows)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        for i in range(k):
            for j in range(k):
                colour = "white" if row_share[i, j] > 0.5 else "black"
                text = f"{int(m[i, j])}\n{row_share[i, j]:.0%}" if support[i] else "-"
                ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=7)
        _title(fig, f"Confusion matrix (n={int(m.sum())})", context)
    return fig


def roc_curves_figure(
    fpr: Sequence[torch.Tensor],
    tpr: Sequence[torch.Tensor],
    class_names: Sequence[str],
    support: Sequence[int] | None = None,
    context: FigureContext | None = None,
) -> Figure:
    """ROC curves with their AUC (trapezoidal) in the legend.

    Two classes: ONE curve, class 1 (``class_names[1]``) as the positive class. More: one-vs-rest per class and
    their macro average (the mean true-positive rate over the classes with test samples, on a common
    false-positive-rate grid; the legend gives the mean of their AUCs). A class without test samples
    (``support[k] == 0``) has no curve: it is listed in the legend as "no samples". Curves are drawn above the
    frame (``clip_on=False``, margins), so a curve along TPR 1 or FPR 0 stays visible.

    Args:
        fpr, tpr: per class, the one-vs-rest curve (``torchmetrics.MulticlassROC().compute()``).
        class_names: one name per class. support: test samples per true class (default: all present).
        context: what the figure shows (caption).
    """
    support = list(support) if support is not None else [1] * len(class_names)
    curves = [
        (f.detach().float().cpu().numpy(), t.detach().float().cpu().numpy()) for f, t in zip(fpr, tpr, strict=True)
    ]
    binary = len(class_names) == 2
    shown = [1] if binary else list(range(len(class_names)))
    with figure_style():
        fig = Figure(figsize=(4.4, 4.0), layout="constrained")
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=0.8, label="chance (AUC 0.5)")
        aucs, present = [], []
        for k in shown:
            name = str(class_names[k])
            if support[k] == 0:
                ax.plot([], [], linestyle="none", marker="x", color="grey", label=f"{name}: no samples")
                continue
            f, t = curves[k]
            auc = float(np.trapezoid(t, f)) if f.size > 1 else float("nan")
            label = f"{name} vs {class_names[0]} (AUC {auc:.3f})" if binary else f"{name} (AUC {auc:.3f})"
            ax.plot(f, t, linewidth=1.4 if binary else 1.0, label=label, clip_on=False, zorder=3)
            aucs.append(auc)
            present.append(k)
        if not binary and len(present) > 1:
            grid = np.linspace(0, 1, 201)
            mean_tpr = np.mean([np.interp(grid, *_monotone(*curves[k])) for k in present], axis=0)
            ax.plot(
                grid,
                mean_tpr,
                color="black",
                linestyle="--",
                linewidth=1.6,
                clip_on=False,
                zorder=4,
                label=f"macro average of {len(present)} classes (mean AUC {np.nanmean(aucs):.3f})",
            )
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(loc="lower right", fontsize=6.5, frameon=False)
        what = f"positive class {class_names[1]}" if binary else "one vs rest"
        _title(fig, f"ROC ({what})", context)
    return fig


def _monotone(f: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A ROC curve sorted by false-positive rate (ties by true-positive rate), for ``np.interp``."""
    order = np.lexsort((t, f))
    return f[order], t[order]


def _title(fig: Figure, title: str, context: FigureContext | None) -> None:
    """``title`` and, below it, the context's caption (dataset, split, run, checkpoint, SYNTHETIC)."""
    width = int(fig.get_figwidth() * 14)  # characters of 7-8 pt text per inch, about
    fig.suptitle(title + (f"\n{context.caption(width)}" if context else ""), fontsize=8)


def write_test_report(
    out_dir: str | Path,
    matrix: torch.Tensor,
    fpr: Sequence[torch.Tensor],
    tpr: Sequence[torch.Tensor],
    class_names: Sequence[str],
    context: FigureContext | None = None,
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
    support = matrix.detach().long().cpu().sum(dim=1).tolist()
    with figure_style():
        confusion_matrix_figure(matrix, class_names, context).savefig(paths["confusion_matrix"])
        roc_curves_figure(fpr, tpr, class_names, support, context).savefig(paths["roc_curves"])
    summary = confusion_summary(matrix, class_names)
    if context is not None:
        summary["context"] = asdict(context)
    paths["confusion_json"].write_text(json.dumps(summary, indent=2))
    return paths
