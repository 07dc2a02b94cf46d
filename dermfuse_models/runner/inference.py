"""Per-sample predictions of a trained task over a dataset, on one or several devices, each sample once.

:func:`predict_samples` runs Lightning's ``Trainer.predict`` with a :class:`Predictor` around the
trained task (test-time augmentation, :mod:`~dermfuse_models.runner.tta`). Under DDP Lightning gives
every rank an unpadded share of the samples (its ``UnrepeatedDistributedSampler`` for prediction),
the ranks' records are gathered (``torch.distributed.all_gather_object``) and put back in the
dataset's order, and a sample predicted twice or not at all is an error, never a silent double count.
Every rank returns the same full list, so metrics computed from it need no further synchronisation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset
from torchmetrics.functional.classification import binary_stat_scores

from dermfuse_models.runner.cli import precision_for
from dermfuse_models.runner.gather import gathered_records, in_dataset_order
from dermfuse_models.runner.tta import check_mode, tta_probabilities

#: ``mask_writer(sample_ids, probabilities (B, 1, H, W), threshold, sizes (B, 2) of the originals) -> lesion share
#: per sample`` (segmentation)
MaskWriter = Callable[[list[str], torch.Tensor, float, torch.Tensor], list[float]]


def is_segmentation(task: torch.nn.Module) -> bool:
    """Whether ``task`` predicts masks (a ``SegmentationTask``: per-pixel sigmoid and a threshold)."""
    from dermfuse_models.tasks.segmentation import SegmentationTask

    return isinstance(task, SegmentationTask)


class Predictor(pl.LightningModule):
    """A trained task for ``Trainer.predict``: per-sample probabilities with test-time augmentation.

    Classification batches give ``{"sample_id", "probs" (B, K), "label" (B,)}``. Segmentation batches
    give ``{"sample_id"}`` plus, where the batch has a true mask, the per-image confusion counts
    ``"stats" (B, 4)`` (tp, fp, tn, fn at the task's threshold, torchmetrics order) and, with a
    ``mask_writer``, the predicted masks written by it and their ``"lesion_share"``. Batch keys named
    in ``passthrough`` are copied into the records.
    """

    def __init__(
        self,
        task: pl.LightningModule,
        tta: str = "none",
        mask_writer: MaskWriter | None = None,
        passthrough: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.task = task
        self.tta = check_mode(tta)
        self.mask_writer = mask_writer
        self.passthrough = passthrough
        self.segmentation = is_segmentation(task)

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """The batch's records (see class doc)."""
        ids = [str(i) for i in batch["sample_id"]]
        out: dict[str, Any] = {"sample_id": ids, **{k: batch[k] for k in self.passthrough}}
        truth = batch.get("mask") if self.segmentation else None
        size = tuple(truth.shape[-2:]) if truth is not None else None
        probs = tta_probabilities(self.task, batch, self.tta, size=size)
        if not self.segmentation:
            return {**out, "probs": probs.cpu(), "label": batch["label"].cpu()}
        threshold = float(self.task.threshold)
        if truth is not None:
            stats = binary_stat_scores(probs, truth.long(), threshold=threshold, multidim_average="samplewise")
            out["stats"] = stats.reshape(len(ids), -1)[:, :4].cpu()
        if self.mask_writer is not None:
            out["lesion_share"] = self.mask_writer(ids, probs, threshold, batch["size"])
        return out


def predict_samples(
    task: pl.LightningModule,
    dataset: Dataset,
    sample_ids: Sequence[str],
    *,
    tta: str = "none",
    accelerator: str = "auto",
    devices: int | str = 1,
    precision: str | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = True,
    mask_writer: MaskWriter | None = None,
    passthrough: tuple[str, ...] = (),
) -> tuple[list[dict[str, Any]], pl.Trainer]:
    """Predict every sample of ``dataset`` once (see module doc); ``(records in dataset order, trainer)``.

    ``sample_ids``: the dataset's ids in index order. ``devices > 1`` runs DDP (Lightning relaunches
    the command for the other ranks; every rank returns the full records, ``trainer.is_global_zero``
    says which one writes files).
    """
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        persistent_workers=False,
    )
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        precision=precision_for(precision, accelerator),
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        callbacks=[],
        default_root_dir=os.environ.get("TMPDIR", "/tmp"),
    )
    outputs = trainer.predict(
        Predictor(task, tta, mask_writer, passthrough), dataloaders=loader, return_predictions=True
    )
    return in_dataset_order(gathered_records(trainer, outputs or []), list(sample_ids)), trainer
