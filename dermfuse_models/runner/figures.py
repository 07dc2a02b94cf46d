"""Segmentation sample figure written at the end of testing: image | prediction with the true outline | errors.

Every segmentation run gets ``<run_dir>/figures/segmentation_samples.png`` (the CLI adds this
callback when ``data.task`` is ``segmentation``), so a reader sees at a glance whether a Dice score
comes from sensible masks, and where it misses (false positives / negatives). Calls the net through
``protocol.call_net`` (``{"logits": (B,1,H,W)}``), draws with matplotlib's object API (no display needed) in
the package's style (:mod:`dermfuse_models.figure_style`) and uses only the first test batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from dermfuse_data.transforms import denormalise
from dermfuse_models.figure_style import FigureContext, figure_style
from dermfuse_models.protocol import call_net, net_of


def mask_logits(module: pl.LightningModule, image: torch.Tensor) -> torch.Tensor:
    """(B,1,H,W) mask logits of ``module`` (its ``net`` if it has one) for normalised ``image``."""
    logits = call_net(net_of(module), {"image": image}, mask_input=False)["logits"]
    if logits.shape[-2:] != image.shape[-2:]:
        logits = torch.nn.functional.interpolate(
            logits.float(), size=image.shape[-2:], mode="bilinear", align_corners=False
        )
    return logits


class SegmentationSamplesFigure(pl.Callback):
    """Save ``num_samples`` test samples as rows of image | prediction with the true outline | errors.

    Args:
        num_samples: how many test samples to show (taken from the first test batches).
        threshold: probability above which a pixel is predicted lesion.
        filename: path relative to the run folder (``trainer.default_root_dir``).
    """

    def __init__(
        self, num_samples: int = 6, threshold: float = 0.5, filename: str = "figures/segmentation_samples.png"
    ) -> None:
        super().__init__()
        self.num_samples, self.threshold, self.filename = num_samples, threshold, filename
        self._rows: list[tuple[np.ndarray, np.ndarray | None, np.ndarray, str]] = []
        self.path: Path | None = None

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._rows = []

    @torch.no_grad()
    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Predict masks for the first ``num_samples`` test samples of this rank."""
        need = self.num_samples - len(self._rows)
        if need <= 0 or not isinstance(batch, dict) or "image" not in batch:
            return
        image = batch["image"][:need]
        prob = torch.sigmoid(mask_logits(pl_module, image).float())
        truth = batch.get("mask")
        ids = batch.get("sample_id") or [str(i) for i in range(len(image))]
        for i in range(len(image)):
            true_mask = truth[i, 0].float().cpu().numpy() if truth is not None else None
            self._rows.append(
                (denormalise(image[i]), true_mask, (prob[i, 0] > self.threshold).cpu().numpy(), str(ids[i]))
            )

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write the figure (global rank 0)."""
        if trainer.is_global_zero and self._rows:
            path = Path(trainer.default_root_dir) / self.filename
            self.path = write_segmentation_figure(self._rows, path, FigureContext.from_trainer(trainer, "test"))


#: colours (Okabe-Ito, colour-blind safe) chosen against orange-brown lesions on skin: blue is their complement
PRED_COLOUR, TRUTH_COLOUR = "#56B4E9", "#F0E442"  # predicted lesion (sky blue), true outline (yellow)
ERROR_COLOURS = {"true positive": "#009E73", "false positive": "#CC79A7", "false negative": "#F0E442"}


def error_overlay(pred: np.ndarray, truth: np.ndarray, alpha: float = 0.8) -> np.ndarray:
    """``(H, W, 4)`` RGBA: true-positive, false-positive and false-negative pixels in :data:`ERROR_COLOURS`,
    transparent where both say background."""
    from matplotlib.colors import to_rgba

    p, t = pred.astype(bool), truth > 0.5
    out = np.zeros((*p.shape, 4))
    for name, where in (("true positive", p & t), ("false positive", p & ~t), ("false negative", ~p & t)):
        out[where] = to_rgba(ERROR_COLOURS[name], alpha)
    return out


def write_segmentation_figure(
    rows: list[tuple[np.ndarray, np.ndarray | None, np.ndarray, str]],
    path: str | Path,
    context: FigureContext | None = None,
) -> Path:
    """Write :func:`segmentation_figure` of ``rows`` as a PNG at ``path`` (folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with figure_style():
        segmentation_figure(rows, context).savefig(path)
    return path


def segmentation_figure(
    rows: list[tuple[np.ndarray, np.ndarray | None, np.ndarray, str]], context: FigureContext | None = None
):
    """The figure of ``(image, true mask, predicted mask, sample id)`` rows (a ``matplotlib.figure.Figure``).

    Columns: the image | the predicted lesion (blue fill and outline) with the true outline (yellow, dashed) |
    the errors over the image in grey (true positives green, false positives purple, false negatives yellow),
    Dice in its title. Outlines carry a black edge so they show on light and dark skin. ``context`` captions the figure.
    """
    import matplotlib.patheffects as pe
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    edge = [pe.withStroke(linewidth=2.2, foreground="black")]
    with figure_style():
        fig = Figure(figsize=(5.4, 1.75 * len(rows) + 0.9), layout="constrained")
        axes = fig.subplots(len(rows), 3, squeeze=False)
        for r, (image, truth, pred, sample_id) in enumerate(rows):
            pred = pred.astype(bool)
            has_truth = truth is not None and truth.min() != truth.max()
            axes[r, 0].imshow(image)
            axes[r, 0].set_title(shorten_id(sample_id), loc="left")
            axes[r, 1].imshow(image)
            axes[r, 1].imshow(np.ma.masked_where(~pred, pred), cmap=ListedColormap([PRED_COLOUR]), alpha=0.35)
            if pred.any() and not pred.all():
                axes[r, 1].contour(pred, levels=[0.5], colors=PRED_COLOUR, linewidths=1.2).set(path_effects=edge)
            if has_truth:
                axes[r, 1].contour(truth, levels=[0.5], colors=TRUTH_COLOUR, linewidths=1.0, linestyles="--").set(
                    path_effects=edge
                )
            axes[r, 1].set_title("prediction" + ("" if pred.any() else " (empty)"))
            if truth is not None:
                grey = np.asarray(image, dtype=float).mean(axis=-1)
                axes[r, 2].imshow(0.25 + 0.5 * grey, cmap="gray", vmin=0, vmax=1)
                axes[r, 2].imshow(error_overlay(pred, truth))
                axes[r, 2].set_title(f"errors (Dice {_dice(pred, truth):.2f})")
            else:
                axes[r, 2].set_title("errors: no true mask")
            for ax in axes[r]:
                ax.set_axis_off()
        handles = [Patch(color=PRED_COLOUR, alpha=0.6, label="predicted lesion")]
        handles += [Patch(facecolor="none", edgecolor=TRUTH_COLOUR, linestyle="--", label="true outline")]
        handles += [Patch(color=c, label=name) for name, c in ERROR_COLOURS.items()]
        fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False, fontsize=6.5)
        title = "Segmentation samples: image | prediction (true outline dashed) | errors"
        fig.suptitle(title + (f"\n{context.caption(int(5.4 * 14))}" if context else ""))
    return fig


def shorten_id(sample_id: str, width: int = 26) -> str:
    """``sample_id`` in at most ``width`` characters: long ids keep their start and end around an ellipsis."""
    text = str(sample_id)
    if len(text) <= width:
        return text
    keep = width - 1
    return text[: keep - keep // 2] + "…" + text[-(keep // 2) :]


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    p, t = pred.astype(bool), truth > 0.5
    denom = p.sum() + t.sum()
    return 1.0 if denom == 0 else float(2 * (p & t).sum() / denom)
