"""Segmentation sample figure written at the end of testing: image | true mask | predicted overlay.

Every segmentation run gets ``<run_dir>/figures/segmentation_samples.png`` (the CLI adds this
callback when ``data.task`` is ``segmentation``), so a reader sees at a glance whether a Dice score
comes from sensible masks. Calls the net through ``protocol.call_net`` (``{"logits": (B,1,H,W)}``),
uses matplotlib's Agg backend (no display needed) and only the first test batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from dermfuse_data.transforms import denormalise
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
    """Save ``num_samples`` test samples as rows of image | true mask | predicted mask overlay.

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
            self.path = write_segmentation_figure(self._rows, Path(trainer.default_root_dir) / self.filename)


def write_segmentation_figure(
    rows: list[tuple[np.ndarray, np.ndarray | None, np.ndarray, str]], path: str | Path
) -> Path:
    """Draw ``(image, true mask, predicted mask, sample id)`` rows into a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.5 * len(rows)), squeeze=False)
    for r, (image, truth, pred, sample_id) in enumerate(rows):
        axes[r, 0].imshow(image)
        axes[r, 0].set_title(sample_id, fontsize=8)
        if truth is not None:
            axes[r, 1].imshow(truth, cmap="gray", vmin=0, vmax=1)
        axes[r, 1].set_title("true mask" if truth is not None else "no true mask", fontsize=8)
        axes[r, 2].imshow(image)
        axes[r, 2].imshow(
            np.ma.masked_where(~pred.astype(bool), pred), cmap=ListedColormap(["#ff7f0e"]), alpha=0.5, vmin=0, vmax=1
        )
        if truth is not None and truth.any() and truth.min() != truth.max():
            axes[r, 2].contour(truth, levels=[0.5], colors="cyan", linewidths=0.8)
        dice = _dice(pred, truth) if truth is not None else None
        axes[r, 2].set_title("prediction" + (f" (Dice {dice:.2f})" if dice is not None else ""), fontsize=8)
        for ax in axes[r]:
            ax.axis("off")
    fig.suptitle("test samples: image | true mask | predicted mask (orange) with true contour (cyan)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    p, t = pred.astype(bool), truth > 0.5
    denom = p.sum() + t.sum()
    return 1.0 if denom == 0 else float(2 * (p & t).sum() / denom)
