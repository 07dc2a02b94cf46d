"""Binary lesion segmentation as a LightningModule with an injected net."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torchmetrics.classification import BinaryStatScores
from torchmetrics.functional.classification import binary_stat_scores

from dermfuse_models.losses import DeepSupervisionLoss, dice_bce_loss, resize_logits
from dermfuse_models.protocol import NetOutput
from dermfuse_models.tasks.base import DermTask

METRIC_NAMES = ("dice", "iou", "thresholded_jaccard", "pixel_acc", "precision", "sensitivity", "specificity")
#: ISIC 2018 Task 1 challenge: an image whose Jaccard index is below this counts as 0
JACCARD_THRESHOLD = 0.65


def per_image_scores(stats: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image Dice, IoU, thresholded Jaccard, pixel accuracy, precision, sensitivity, specificity.

    ``stats`` is ``(N, 4+)`` per-image ``[tp, fp, tn, fn, ...]`` (torchmetrics
    ``BinaryStatScores(multidim_average="samplewise")`` order); each value is ``(N,)``. A ratio whose
    denominator is 0 has nothing to get wrong and counts as 1: in particular an image whose target and
    prediction are both empty has Dice = IoU = precision = sensitivity = 1; an empty target with a
    non-empty prediction scores Dice = IoU = precision = 0 (sensitivity 1, the error shows in the others).
    ``thresholded_jaccard`` is the ISIC 2018 Task 1 challenge score: the image's IoU, or 0 where it is
    below :data:`JACCARD_THRESHOLD` (0.65). A 1-D ``stats`` is one image (torchmetrics squeezes a single sample).
    """
    stats = stats.reshape(-1, stats.shape[-1])
    tp, fp, tn, fn = (stats[:, i].double() for i in range(4))

    def ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        return torch.where(den > 0, num / den.clamp(min=1), torch.ones_like(num))

    iou = ratio(tp, tp + fp + fn)
    return {
        "dice": ratio(2 * tp, 2 * tp + fp + fn),
        "iou": iou,
        "thresholded_jaccard": torch.where(iou >= JACCARD_THRESHOLD, iou, torch.zeros_like(iou)),
        "pixel_acc": ratio(tp + tn, tp + fp + tn + fn),
        "precision": ratio(tp, tp + fp),
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
    }


def segmentation_scores(stats: torch.Tensor) -> dict[str, torch.Tensor]:
    """The mean over images of every :func:`per_image_scores` value (the ISIC-challenge convention)."""
    return {name: values.mean() for name, values in per_image_scores(stats).items()}


class SegmentationTask(DermTask):
    """Train/evaluate any binary segmentation net on dict batches (DESIGN.md, Models: ``tasks/``).

    The net, its optimisation (``optimizer`` / ``lr_scheduler``), the step, aux-loss logging and
    predictions are :class:`~dermfuse_models.tasks.base.DermTask`'s; this class adds the loss and metrics.

    Net protocol (``dermfuse_models.protocol``, no per-net cases): the batch reaches the net through
    ``call_net(net, batch, mask_input=False)``, i.e. ``net(image, meta=batch.get("meta"), mask=None)
    -> {"logits": (B,1,H,W), "deep_logits"?: [coarse ... fine], "aux_losses"?: {name: weighted
    scalar}}``: the mask is the target and never reaches the net. A plain ``image -> logits``
    module goes in ``protocol.ImageOnlyNet``.

    Loss: ``L(logits) + sum_i w_i L(up(deep_i)) + sum(aux_losses)`` with
    ``L = dice_weight * soft Dice + bce_weight * BCE`` (MONAI ``DiceCELoss(sigmoid=True)``,
    per-image soft Dice). Deep outputs are bilinearly upsampled to the mask size (the mask is
    never resampled); ``w_i`` = ``deep_supervision_weights`` (one per deep output, coarse to
    fine) or, by default, halving weights (finest 0.5, then 0.25, ...). Nets return
    ``deep_logits`` only in training, so ``val/loss`` and ``test/loss`` are the main-output loss.

    Metrics (val/test): predictions ``sigmoid(logits) >= threshold`` are counted per image by
    torchmetrics ``BinaryStatScores(multidim_average="samplewise")`` (states all-gathered
    across DDP ranks at ``compute``), and :func:`segmentation_scores` gives the per-image mean
    Dice, IoU, thresholded Jaccard (ISIC 2018 challenge: IoU below 0.65 counts 0), pixel accuracy,
    precision, sensitivity and specificity; an image with empty target and empty prediction counts as
    Dice = IoU = 1. ``trainer.test`` also leaves each test image's ``[tp, fp, tn, fn]`` in
    :attr:`test_predictions` (the runner writes ``test_predictions.csv`` and bootstrap intervals from it).

    Logged keys: ``{stage}/loss`` (train/val/test), ``train/loss_main``, ``train/loss_deep``,
    ``{stage}/aux_<name>``; ``{stage}/dice``, ``{stage}/iou``, ``{stage}/thresholded_jaccard``, ``{stage}/pixel_acc``,
    ``{stage}/precision``, ``{stage}/sensitivity``, ``{stage}/specificity`` for val/test.

    Args:
        net: the ``nn.Module`` to train (``model.init_args.net.class_path`` in YAML).
        deep_supervision_weights: weights of the net's ``deep_logits`` (coarse to fine) or None.
        dice_weight, bce_weight: weights of the two loss terms.
        threshold: probability threshold for the metrics.
        optimizer, lr_scheduler: see :class:`~dermfuse_models.tasks.base.DermTask` (default Adam, lr 1e-3,
            constant; EAM-Net's warm restarts are ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts``).
    """

    mask_input = False

    def __init__(
        self,
        net: torch.nn.Module,
        deep_supervision_weights: list[float] | None = None,
        dice_weight: float = 1.0,
        bce_weight: float = 1.0,
        threshold: float = 0.5,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(net, optimizer, lr_scheduler)
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold is a probability in (0, 1), got {threshold}.")
        self.threshold = threshold
        self.criterion = DeepSupervisionLoss(dice_bce_loss(dice_weight, bce_weight), deep_supervision_weights)
        self.val_stats = BinaryStatScores(threshold=threshold, multidim_average="samplewise")
        self.test_stats = BinaryStatScores(threshold=threshold, multidim_average="samplewise")

    # ----------------------------------------------------------------- loss / metrics
    def task_loss(self, out: NetOutput, batch: Mapping[str, Any], stage: str) -> torch.Tensor:
        """Dice + BCE of the main and deep outputs against ``batch["mask"]``; logs the terms in training."""
        if batch.get("mask") is None:
            raise ValueError(
                "SegmentationTask got a batch without 'mask'; use the datamodule with data.task: segmentation."
            )
        mask = batch["mask"].float()
        deep = [d.float() for d in out.get("deep_logits") or []]
        loss, terms = self.criterion(out["logits"].float(), mask, deep)
        if stage == "train":
            for name, value in terms.items():
                self.log(
                    f"train/loss_{name}", value, on_step=False, on_epoch=True, sync_dist=True, batch_size=mask.shape[0]
                )
        return loss

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-pixel sigmoid."""
        return logits.float().sigmoid()

    def update_metrics(self, stage: str, logits: torch.Tensor, batch: Mapping[str, Any]) -> None:
        """Accumulate per-image confusion counts at the mask's size."""
        stats = self.val_stats if stage == "val" else self.test_stats
        probs, target = self._probs_at_mask_size(logits.float(), batch["mask"]), batch["mask"].long()
        stats.update(probs, target)
        if stage == "test":
            per_image = binary_stat_scores(probs, target, self.threshold, multidim_average="samplewise")
            label = batch.get("label")
            label = label if label is not None else torch.full((probs.shape[0],), -1)
            self._test_log.add(batch.get("sample_id"), label=label, stats=per_image.reshape(-1, 5)[:, :4])

    @staticmethod
    def _probs_at_mask_size(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return resize_logits(logits.detach(), mask.shape[-2:]).sigmoid()

    def on_validation_epoch_end(self) -> None:
        """Log DDP-synchronised validation metrics and reset them."""
        self._log_scores(self.val_stats, "val")

    def on_test_epoch_end(self) -> None:
        """Log DDP-synchronised test metrics and reset them."""
        self._log_scores(self.test_stats, "test")
        self.gather_test_predictions()

    def _log_scores(self, stats: BinaryStatScores, stage: str) -> None:
        if not stats.update_called:
            return
        scores = segmentation_scores(stats.compute())  # all-gathers per-image counts across ranks
        values = {f"{stage}/{k}": v.float() for k, v in scores.items()}
        self.log_dict(values, on_step=False, on_epoch=True, sync_dist=True)
        stats.reset()
