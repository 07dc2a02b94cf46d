"""Helpers shared by the model tests (imported as ``tests.models._support``)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn as nn

QUIET = {
    "accelerator": "cpu",
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}


def quiet_trainer(**kwargs) -> pl.Trainer:
    """A CPU ``Trainer`` that writes no files and prints no bars; ``kwargs`` override or add settings."""
    return pl.Trainer(**{**QUIET, **kwargs})


class FixedLogitsNet(nn.Module):
    """Logits = the batch image's first pixel row, so a test chooses the predictions (metric checks)."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(
        self, image: torch.Tensor, meta: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``{"logits": image[:, 0, 0, :3]}`` (plus a zero parameter so optimisers have something to hold)."""
        return {"logits": image[:, 0, 0, :3] + self.dummy}
