"""A tiny LightningModule and data for the checkpoint / non-finite tests (seconds, no dataset, no CLI).

Batches are dicts like dermfuse's (``x``, ``y``, ``sample_id``). The module logs ``val/score`` from a
fixed per-epoch list (so a test decides when the monitor improves) and ``val/loss``; it can make the
loss NaN, or the gradient NaN with a finite loss, at a chosen optimiser step.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

FEATURES = 4


class DictData(Dataset):
    """``n`` samples ``{"x": (4,), "y": float, "sample_id": "s000"}`` (fixed seed)."""

    def __init__(self, n: int = 12, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, FEATURES, generator=g)
        self.y = self.x.sum(1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "y": self.y[i], "sample_id": f"s{i:03d}"}


def loader(n: int = 12, batch_size: int = 4) -> DataLoader:
    """Unshuffled batches of :class:`DictData` (batch k holds samples 4k .. 4k+3)."""
    return DataLoader(DictData(n), batch_size=batch_size, shuffle=False)


class TinyTask(pl.LightningModule):
    """Linear regression; ``scores[epoch]`` logged as ``val/score``; NaN loss or gradient at a chosen step."""

    def __init__(self, scores=(0.5, 0.4, 0.3, 0.2), nan_loss_at: int = -1, nan_grad_at: int = -1) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(FEATURES))
        self.scores, self.nan_loss_at, self.nan_grad_at = list(scores), nan_loss_at, nan_grad_at

    def training_step(self, batch, batch_idx):
        loss = ((batch["x"] @ self.w - batch["y"]) ** 2).mean()
        if self.global_step == self.nan_loss_at:
            loss = loss * float("nan")
        if self.global_step == self.nan_grad_at:
            loss = loss + torch.sqrt(self.w.sum() * 0.0)  # value 0, gradient inf * 0 = NaN
        self.log("train/loss", loss, on_step=True, on_epoch=True, batch_size=len(batch["x"]))
        return loss

    def validation_step(self, batch, batch_idx):
        size = len(batch["x"])
        self.log("val/loss", ((batch["x"] @ self.w - batch["y"]) ** 2).mean(), batch_size=size)
        self.log("val/score", float(self.scores[min(self.current_epoch, len(self.scores) - 1)]), batch_size=size)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def tiny_trainer(root, callbacks, max_epochs: int = 3, **kwargs) -> pl.Trainer:
    """A quiet CPU Trainer writing into ``root`` (CSV log, no progress bars)."""
    from pytorch_lightning.loggers import CSVLogger

    return pl.Trainer(
        accelerator="cpu",
        max_epochs=max_epochs,
        default_root_dir=str(root),
        logger=CSVLogger(str(root), name="", version=""),
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        **kwargs,
    )
