"""Figures of explanations: image | mask | heatmap overlay grids and clinical-feature bar charts (matplotlib).

Images arrive normalised; a ``to_rgb`` callable (normalised ``(3, H, W)`` tensor -> ``(H, W, 3)`` floats in
[0, 1]) shows them: the runner passes the data's inverse normalisation, the default is
:func:`stretch_to_unit`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

ToRGB = Callable[[torch.Tensor], np.ndarray]


def stretch_to_unit(image: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` tensor -> ``(H, W, 3)`` floats in [0, 1]: a min-max stretch over the whole image
    (all channels together, so colours keep their balance); a constant image becomes black."""
    return _unit(image.detach().float().cpu().permute(1, 2, 0).numpy())


def _unit(saliency: np.ndarray) -> np.ndarray:
    s = np.nan_to_num(np.asarray(saliency, dtype=float))
    lo, hi = s.min(), s.max()
    return (s - lo) / (hi - lo) if hi > lo else np.zeros_like(s)


def heatmap_grid_figure(
    images: torch.Tensor,
    maps: torch.Tensor,
    titles: list[str],
    masks: torch.Tensor | None = None,
    method: str = "",
    alpha: float = 0.5,
    captions: list[str] | None = None,
    outlines: torch.Tensor | None = None,
    to_rgb: ToRGB | None = None,
) -> Figure:
    """One row per image: image | lesion mask | heatmap (min-max scaled per image) over the image.

    Args:
        images: ``(N, 3, H, W)`` normalised images. maps: ``(N, H, W)`` heatmaps.
        titles: one caption per row, over the image (classification: ``"id: pred MEL (0.83) | true
            NEV"``; segmentation: ``"id: Dice 0.87 (pred area 0.21)"``).
        masks: ``(N, 1, H, W)`` lesion masks, or ``None`` (the column says "no mask").
        method: shown in the figure title.
        captions: one caption per heatmap (e.g. its scores); default the method name.
        outlines: ``(N, H, W)`` or ``(N, 1, H, W)`` binary masks drawn as a white contour over the
            heatmap (the predicted lesion of a segmentation net), or ``None``.
        to_rgb: normalised ``(3, H, W)`` -> ``(H, W, 3)`` in [0, 1]; default :func:`stretch_to_unit`.

    Returns:
        the open matplotlib ``Figure`` (``N x 3`` axes, row-major); close it when done.
    """
    to_rgb = to_rgb or stretch_to_unit
    n = images.shape[0]
    fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.6 * n + 0.4), squeeze=False)
    for i in range(n):
        rgb = to_rgb(images[i])
        axes[i, 0].imshow(rgb)
        axes[i, 0].set_title(titles[i], fontsize=8, loc="left")
        if masks is not None:
            axes[i, 1].imshow(masks[i, 0].detach().cpu().numpy(), cmap="gray", vmin=0, vmax=1)
            axes[i, 1].set_title("lesion mask", fontsize=8)
        else:
            axes[i, 1].text(0.5, 0.5, "no mask", ha="center", va="center", fontsize=9)
        axes[i, 2].imshow(rgb)
        axes[i, 2].imshow(_unit(maps[i].detach().cpu().numpy()), cmap="jet", alpha=alpha, vmin=0, vmax=1)
        if outlines is not None:
            outline = outlines[i].detach().float().cpu().reshape(maps[i].shape).numpy()
            if 0 < outline.mean() < 1:
                axes[i, 2].contour(outline, levels=[0.5], colors="white", linewidths=0.8)
        axes[i, 2].set_title(captions[i] if captions else method, fontsize=7)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{method}: image | mask | heatmap", fontsize=10)
    fig.tight_layout()
    return fig


def save_heatmap_grid(path: str | Path, *args, **kwargs) -> Path:
    """Write :func:`heatmap_grid_figure` (same arguments after ``path``) as a PNG at ``path`` (folders are created)."""
    return _save(heatmap_grid_figure(*args, **kwargs), path)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


def feature_bars_figure(
    importances: dict[str, tuple[list[str], np.ndarray]], title: str = "clinical feature importance"
) -> Figure:
    """One horizontal bar chart per method: mean attribution per clinical feature over the images.

    Args:
        importances: method -> ``(feature names, values (N, F))``; bars show the mean (sign kept,
            red = raises the explained output, blue = lowers it) with the standard deviation over
            images, features sorted by mean absolute value (largest at the top), labelled by name.

    Returns:
        the open ``Figure`` (one axis per method, titled ``"<method> (n=N)"``); close it when done.
    """
    k = max(1, len(importances))
    n_features = max((len(names) for names, _ in importances.values()), default=1)
    fig, axes = plt.subplots(1, k, figsize=(4.2 * k, 0.32 * n_features + 1.4), squeeze=False)
    for ax, (method, (names, values)) in zip(axes[0], importances.items(), strict=False):
        v = np.asarray(values, dtype=float).reshape(-1, len(names))
        mean, std = np.nanmean(v, 0), np.nanstd(v, 0)
        order = np.argsort(np.nanmean(np.abs(v), 0))
        colours = ["#c0392b" if mean[j] >= 0 else "#2e86c1" for j in order]
        ax.barh(np.arange(len(order)), mean[order], xerr=std[order], color=colours, ecolor="grey")
        ax.set_yticks(np.arange(len(order)), [names[j] for j in order], fontsize=7)
        ax.axvline(0, color="black", linewidth=0.6)
        ax.set_title(f"{method} (n={v.shape[0]})", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def save_feature_bars(
    path: str | Path, importances: dict[str, tuple[list[str], np.ndarray]], title: str = "clinical feature importance"
) -> Path:
    """Write :func:`feature_bars_figure` as a PNG at ``path`` (folders are created)."""
    return _save(feature_bars_figure(importances, title), path)
