"""Figures of explanations: one compact image x method grid and clinical-feature bar charts (matplotlib).

Figures are ``matplotlib.figure.Figure`` objects (no pyplot state, no backend switch) drawn in this package's one
style (:data:`STYLE`, applied by :func:`figure_style`). Images arrive normalised; a ``to_rgb`` callable
(normalised ``(3, H, W)`` tensor -> ``(H, W, 3)`` floats in [0, 1]) shows them: the runner passes the data's
inverse normalisation, the default is :func:`stretch_to_unit`. ``caption`` (a string, already in lines: what the
figure was made from, e.g. dataset, split, run, checkpoint, SYNTHETIC) goes under every title; dermfuse_xai knows
no run folders.
"""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from dermfuse_xai.scoring import SCORE_LEGEND

ToRGB = Callable[[torch.Tensor], np.ndarray]

#: rcParams of every dermfuse_xai figure
STYLE = {
    "font.size": 7,
    "axes.titlesize": 7,
    "axes.labelsize": 6.5,
    "figure.titlesize": 8,
    "legend.fontsize": 6.5,
    "savefig.dpi": 150,
    "image.interpolation": "nearest",
}
#: heatmap colour map (a perceptually ordered rainbow) and its opacity over the image
HEAT_CMAP, HEAT_ALPHA = "turbo", 0.5
#: side of one image panel and the widest grid before rows are set in side-by-side blocks, inches
PANEL, MAX_WIDTH = 1.25, 7.5
EMPTY_COLOUR = "#c0392b"


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    """Draw and save inside this block to get :data:`STYLE`."""
    with matplotlib.rc_context(STYLE):
        yield


def stretch_to_unit(image: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` tensor -> ``(H, W, 3)`` floats in [0, 1]: a min-max stretch over the whole image
    (all channels together, so colours keep their balance); a constant image becomes black."""
    return _unit(image.detach().float().cpu().permute(1, 2, 0).numpy())


def _unit(saliency: np.ndarray) -> np.ndarray:
    s = np.nan_to_num(np.asarray(saliency, dtype=float))
    lo, hi = s.min(), s.max()
    return (s - lo) / (hi - lo) if hi > lo else np.zeros_like(s)


def wrap_id(sample_id: str, width: int = 20, lines: int = 2) -> str:
    """``sample_id`` broken into at most ``lines`` lines of ``width`` characters (ids have no spaces: broken
    anywhere); what does not fit ends in an ellipsis."""
    parts = textwrap.wrap(str(sample_id), width, break_long_words=True, break_on_hyphens=False) or [""]
    if len(parts) > lines:
        parts = [*parts[: lines - 1], parts[lines - 1][: width - 1] + "…"]
    return "\n".join(parts)


def explanation_grid_figure(
    images: torch.Tensor,
    maps: Mapping[str, torch.Tensor],
    titles: list[str],
    ids: list[str] | None = None,
    masks: torch.Tensor | None = None,
    captions: Mapping[str, list[str]] | None = None,
    empty: Mapping[str, list[bool]] | None = None,
    outlines: torch.Tensor | None = None,
    to_rgb: ToRGB | None = None,
    caption: str | None = None,
) -> Figure:
    """Rows = images, columns = image | lesion mask (only with masks) | one column per map, one colour bar.

    Args:
        images: ``(N, 3, H, W)`` normalised images. maps: map name -> ``(N, H, W)`` heatmaps (each min-max scaled
            per image: the colour bar reads "relative saliency").
        titles: one line per row (classification: ``"id: pred MEL (0.83) | true NEV"``; segmentation:
            ``"id: Dice 0.87 (pred area 0.21)"``); shown under the image, without the id.
        ids: sample ids, wrapped over the image (:func:`wrap_id`); default the text of ``titles`` before ``": "``.
        masks: ``(N, 1, H, W)`` lesion masks or ``None`` (then there is no mask column).
        captions: map name -> one line of scores per row (:func:`dermfuse_xai.scoring.caption`), shown under the
            map and explained by the legend at the bottom (:data:`~dermfuse_xai.scoring.SCORE_LEGEND`).
        empty: map name -> per row whether the map is constant (an all-zero Grad-CAM): drawn as the grey image
            with "all zero" over it in red, not as a blank overlay.
        outlines: ``(N, H, W)`` or ``(N, 1, H, W)`` binary masks outlined in white on every map (the predicted
            lesion of a segmentation net), or ``None``.
        to_rgb: normalised ``(3, H, W)`` -> ``(H, W, 3)`` in [0, 1]; default :func:`stretch_to_unit`.
        caption: what the figure was made from, under the title.

    Returns:
        the ``Figure``: ``N x (1 + [mask] + len(maps))`` image axes, row-major, then the colour bar's axis.
    """
    to_rgb = to_rgb or stretch_to_unit
    names = list(maps)
    n = int(images.shape[0])
    first_map = 2 if masks is not None else 1
    ncols = first_map + len(names)
    blocks = max(1, min(n, int(MAX_WIDTH // (PANEL * ncols))))  # side-by-side blocks of rows when columns are few
    rows = -(-n // blocks)
    blocks = -(-n // rows)
    ids = ids or [t.split(": ", 1)[0] for t in titles]
    with figure_style():
        fig = Figure(figsize=(PANEL * ncols * blocks + 0.8, (PANEL + 0.55) * rows + 1.4), layout="constrained")
        grid = fig.subplots(rows, ncols * blocks, squeeze=False)
        axes = np.empty((n, ncols), dtype=object)
        for i in range(n):
            r, b = i % rows, i // rows
            axes[i] = grid[r, b * ncols : (b + 1) * ncols]
        used = {id(ax) for ax in axes.flat}
        for ax in grid.flat:
            if id(ax) not in used:
                ax.remove()
        for i in range(n):
            header = i % rows == 0
            rgb = to_rgb(images[i])
            grey = np.repeat(rgb.mean(axis=-1, keepdims=True), 3, axis=-1)
            axes[i, 0].imshow(rgb)
            axes[i, 0].set_title(wrap_id(ids[i]), loc="left")
            described = titles[i][len(ids[i]) + 2 :] if titles[i].startswith(f"{ids[i]}: ") else titles[i]
            axes[i, 0].set_xlabel(described.replace(" | ", "\n"))
            if masks is not None:
                axes[i, 1].imshow(masks[i, 0].detach().cpu().numpy(), cmap="gray", vmin=0, vmax=1)
                if header:
                    axes[i, 1].set_title("lesion mask")
            for c, name in enumerate(names, start=first_map):
                ax = axes[i, c]
                if (empty or {}).get(name, [False] * n)[i]:
                    _draw_empty(ax, grey)
                else:
                    ax.imshow(rgb)
                    heat = _unit(maps[name][i].detach().cpu().numpy())
                    ax.imshow(heat, cmap=HEAT_CMAP, alpha=HEAT_ALPHA, vmin=0, vmax=1)
                if outlines is not None:
                    outline = outlines[i].detach().float().cpu().reshape(maps[name][i].shape).numpy()
                    if 0 < outline.mean() < 1:
                        ax.contour(outline, levels=[0.5], colors="white", linewidths=0.8)
                if header:
                    ax.set_title(name.replace("/", "/\n") if len(name) > 20 else name)
                ax.set_xlabel((captions or {}).get(name, [""] * n)[i])
            for ax in axes[i]:
                ax.set_xticks([])
                ax.set_yticks([])
        if names:
            height = (PANEL + 0.55) * rows
            bar = fig.colorbar(
                ScalarMappable(Normalize(0, 1), HEAT_CMAP),
                ax=[ax for ax in grid[:, -1] if id(ax) in used],
                shrink=min(1.0, 2.4 / height),
                aspect=20,
                anchor=(0.0, 1.0),
            )
            bar.set_label("relative saliency (each map: its min = 0, max = 1)")
        shown = ", ".join(names) or "no maps"
        fig.suptitle(f"Explanations of {n} image{'s' * (n != 1)}: {shown}" + _caption_lines(caption))
        fig.supxlabel(textwrap.fill(SCORE_LEGEND, int(fig.get_figwidth() * 17)), fontsize=6, ha="left", x=0.01)
    return fig


def _draw_empty(ax, grey: np.ndarray) -> None:
    """A map with nothing to show: the image in grey, "all zero" over it, a red frame."""
    ax.imshow(0.35 + 0.4 * grey)
    ax.text(
        0.5,
        0.5,
        "all zero",
        transform=ax.transAxes,
        ha="center",
        va="center",
        color=EMPTY_COLOUR,
        fontsize=8,
        fontweight="bold",
        bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
    )
    for spine in ax.spines.values():
        spine.set_edgecolor(EMPTY_COLOUR)
        spine.set_linewidth(1.2)


def _caption_lines(caption: str | None) -> str:
    """``caption`` (already broken into lines by its maker) as the title's next lines; empty without one."""
    return f"\n{caption}" if caption else ""


def save_explanation_grid(path: str | Path, *args, **kwargs) -> Path:
    """Write :func:`explanation_grid_figure` (same arguments after ``path``) as a PNG at ``path``."""
    return _save(explanation_grid_figure(*args, **kwargs), path)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with figure_style():
        fig.savefig(path)
    return path


def feature_bars_figure(
    importances: dict[str, tuple[list[str], np.ndarray]],
    title: str = "clinical feature importance",
    caption: str | None = None,
) -> Figure:
    """One horizontal bar chart per method: mean attribution per clinical feature over the images.

    Args:
        importances: method -> ``(feature names, values (N, F))``; bars show the mean (sign kept,
            red = raises the explained output, blue = lowers it) with the standard deviation over
            images, features sorted by mean absolute value (largest at the top), labelled by name.
        caption: what the figure was made from, under the title.

    Returns:
        the ``Figure`` (one axis per method, titled ``"<method> (n=N)"``).
    """
    k = max(1, len(importances))
    n_features = max((len(names) for names, _ in importances.values()), default=1)
    with figure_style():
        fig = Figure(figsize=(3.2 * k + 0.6, 0.22 * n_features + 1.5), layout="constrained")
        axes = fig.subplots(1, k, squeeze=False)
        for ax, (method, (names, values)) in zip(axes[0], importances.items(), strict=False):
            v = np.asarray(values, dtype=float).reshape(-1, len(names))
            mean, std = np.nanmean(v, 0), np.nanstd(v, 0)
            order = np.argsort(np.nanmean(np.abs(v), 0))
            colours = ["#c0392b" if mean[j] >= 0 else "#2e86c1" for j in order]
            ax.barh(np.arange(len(order)), mean[order], xerr=std[order], color=colours, ecolor="grey")
            ax.set_yticks(np.arange(len(order)), [names[j] for j in order])
            ax.axvline(0, color="black", linewidth=0.6)
            ax.set_title(f"{method} (n={v.shape[0]})")
            ax.set_xlabel("mean attribution ± sd (red raises, blue lowers the output)")
        fig.suptitle(title + _caption_lines(caption))
    return fig


def save_feature_bars(
    path: str | Path,
    importances: dict[str, tuple[list[str], np.ndarray]],
    title: str = "clinical feature importance",
    caption: str | None = None,
) -> Path:
    """Write :func:`feature_bars_figure` as a PNG at ``path`` (folders are created)."""
    return _save(feature_bars_figure(importances, title, caption), path)
