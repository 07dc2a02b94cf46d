"""Binary lesion segmentation as a LightningModule with an injected net."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torchmetrics.classification import BinaryStatScores

from dermfuse_models.losses import DeepSupervisionLoss, dice_bce_loss, resize_logits
from dermfuse_models.protocol import NetOutput, call_net

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = (None, "cosine", "cosine_warm_restarts", "plateau")
METRIC_NAMES = ("dice", "iou", "pixel_acc", "precision", "sensitivity", "specificity")


def segmentation_scores(stats: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean per-image Dice, IoU, pixel accuracy, precision, sensitivity, specificity.

    ``stats`` is ``(N, 4+)`` per-image ``[tp, fp, tn, fn, ...]`` (torchmetrics
    ``BinaryStatScores(multidim_average="samplewise")`` order). Each metric is computed per
    image and averaged over images (the ISIC-challenge convention). A ratio whose denominator
    is 0 has nothing to get wrong and counts as 1: in particular an image whose target and
    prediction are both empty has Dice = IoU = precision = sensitivity = 1; an empty target
    with a non-empty prediction scores Dice = IoU = precision = 0 (sensitivity 1, the error
    shows in the others). A 1-D ``stats`` is one image (torchmetrics squeezes a single sample).
    """
    stats = stats.reshape(-1, stats.shape[-1])
    tp, fp, tn, fn = (stats[:, i].double() for i in range(4))

    def ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        return torch.where(den > 0, num / den.clamp(min=1), torch.ones_like(num)).mean()

    return {
        "dice": ratio(2 * tp, 2 * tp + fp + fn),
        "iou": ratio(tp, tp + fp + fn),
        "pixel_acc": ratio(tp + tn, tp + fp + tn + fn),
        "precision": ratio(tp, tp + fp),
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
    }


class SegmentationTask(pl.LightningModule):
    """Train/evaluate any binary segmentation net on dict batches (DESIGN.md, Models: ``tasks/``).

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
    Dice, IoU, pixel accuracy, precision, sensitivity and specificity; an image with empty
    target and empty prediction counts as Dice = IoU = 1.

    Logged keys: ``{stage}/loss`` (train/val/test), ``train/loss_main``, ``train/loss_deep``,
    ``{stage}/aux_<name>``; ``{stage}/dice``, ``{stage}/iou``, ``{stage}/pixel_acc``,
    ``{stage}/precision``, ``{stage}/sensitivity``, ``{stage}/specificity`` for val/test.

    Args:
        net: the ``nn.Module`` to train (``model.init_args.net.class_path`` in YAML).
        lr: learning rate. weight_decay: optimiser weight decay.
        optimizer: ``"adam"`` (EAM-Net), ``"adamw"`` or ``"sgd"`` (momentum 0.9).
        scheduler: ``None``, ``"cosine"`` (CosineAnnealingLR over ``trainer.max_epochs`` or
            ``max_epochs_hint``), ``"cosine_warm_restarts"`` (CosineAnnealingWarmRestarts with
            ``T_0=t0``, ``T_mult=t_mult``, stepped per epoch) or ``"plateau"`` (ReduceLROnPlateau
            on ``val/loss``, factor 0.1, patience 5).
        t0, t_mult: warm-restart period (epochs) and its growth factor.
        deep_supervision_weights: weights of the net's ``deep_logits`` (coarse to fine) or None.
        dice_weight, bce_weight: weights of the two loss terms.
        threshold: probability threshold for the metrics.
        max_epochs_hint: epochs for ``"cosine"`` when the trainer has no ``max_epochs``.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: str = "adam",
        scheduler: str | None = "cosine_warm_restarts",
        t0: int = 10,
        t_mult: int = 2,
        deep_supervision_weights: list[float] | None = None,
        dice_weight: float = 1.0,
        bce_weight: float = 1.0,
        threshold: float = 0.5,
        max_epochs_hint: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.optimizer_name = _normalise_choice("optimizer", optimizer, OPTIMIZERS)
        self.scheduler_name = _normalise_choice("scheduler", scheduler, SCHEDULERS)
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold is a probability in (0, 1), got {threshold}.")
        if t0 < 1 or t_mult < 1:
            raise ValueError(f"t0 and t_mult must be >= 1 (CosineAnnealingWarmRestarts), got t0={t0}, t_mult={t_mult}.")
        self.net = net
        self.lr, self.weight_decay = lr, weight_decay
        self.t0, self.t_mult = t0, t_mult
        self.threshold = threshold
        self.max_epochs_hint = max_epochs_hint
        self.criterion = DeepSupervisionLoss(dice_bce_loss(dice_weight, bce_weight), deep_supervision_weights)
        self.val_stats = BinaryStatScores(threshold=threshold, multidim_average="samplewise")
        self.test_stats = BinaryStatScores(threshold=threshold, multidim_average="samplewise")

    # ----------------------------------------------------------------- forward / loss
    def forward(self, batch: Mapping[str, Any]) -> NetOutput:
        """The net's output for a batch (``protocol.call_net`` with the image and meta, never the mask)."""
        return call_net(self.net, batch, mask_input=False)

    def _shared_step(self, batch: Mapping[str, Any], stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Total loss and main logits for a batch, logging the loss terms."""
        if batch.get("mask") is None:
            raise ValueError(
                "SegmentationTask got a batch without 'mask'; use the datamodule with data.task: segmentation."
            )
        out = self(batch)
        mask = batch["mask"].float()
        logits = out["logits"].float()
        deep = [d.float() for d in out.get("deep_logits") or []]
        loss, terms = self.criterion(logits, mask, deep)
        batch_size = mask.shape[0]
        for name, value in (out.get("aux_losses") or {}).items():
            loss = loss + value
            self.log(f"{stage}/aux_{name}", value, on_step=False, on_epoch=True, sync_dist=True,
                     batch_size=batch_size)
        if stage == "train":
            for name, value in terms.items():
                self.log(f"train/loss_{name}", value, on_step=False, on_epoch=True, sync_dist=True,
                         batch_size=batch_size)
        self.log(
            f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, prog_bar=True,
            sync_dist=True, batch_size=batch_size,
        )
        return loss, logits

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        """Optimise Dice + BCE (+ deep supervision, + aux losses)."""
        loss, _ = self._shared_step(batch, "train")
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """Accumulate validation loss and per-image confusion counts."""
        _, logits = self._shared_step(batch, "val")
        self.val_stats.update(self._probs_at_mask_size(logits, batch["mask"]), batch["mask"].long())

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """Accumulate test loss and per-image confusion counts."""
        _, logits = self._shared_step(batch, "test")
        self.test_stats.update(self._probs_at_mask_size(logits, batch["mask"]), batch["mask"].long())

    @staticmethod
    def _probs_at_mask_size(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return resize_logits(logits.detach(), mask.shape[-2:]).sigmoid()

    def on_validation_epoch_end(self) -> None:
        """Log DDP-synchronised validation metrics and reset them."""
        self._log_scores(self.val_stats, "val")

    def on_test_epoch_end(self) -> None:
        """Log DDP-synchronised test metrics and reset them."""
        self._log_scores(self.test_stats, "test")

    def _log_scores(self, stats: BinaryStatScores, stage: str) -> None:
        if not stats.update_called:
            return
        scores = segmentation_scores(stats.compute())  # all-gathers per-image counts across ranks
        values = {f"{stage}/{k}": v.float() for k, v in scores.items()}
        self.log_dict(values, on_step=False, on_epoch=True, sync_dist=True)
        stats.reset()

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """Return ``dict(sample_id, probs (B, 1, H, W))`` (sigmoid of the main logits)."""
        logits = self(batch)["logits"]
        return {"sample_id": batch.get("sample_id"), "probs": logits.float().sigmoid()}

    # ----------------------------------------------------------------- optimisation
    def _schedule_epochs(self) -> int | None:
        max_epochs = getattr(self._trainer, "max_epochs", None) if self._trainer is not None else None
        if max_epochs is not None and max_epochs > 0:
            return int(max_epochs)
        return self.max_epochs_hint

    def configure_optimizers(self) -> Any:
        """Optimizer (adam/adamw/sgd) and optional scheduler (cosine/cosine_warm_restarts/plateau)."""
        params = [p for p in self.parameters() if p.requires_grad]
        if self.optimizer_name == "adam":
            opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        elif self.optimizer_name == "adamw":
            opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        else:
            opt = torch.optim.SGD(params, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay)

        if self.scheduler_name is None:
            return opt
        if self.scheduler_name == "plateau":
            sched: Any = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.1, patience=5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val/loss", "interval": "epoch"}}
        if self.scheduler_name == "cosine":
            epochs = self._schedule_epochs()
            if epochs is None:
                raise ValueError("scheduler='cosine' needs trainer.max_epochs or max_epochs_hint.")
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=self.t0, T_mult=self.t_mult)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


def _normalise_choice(what: str, value: Any, valid: Sequence[Any]) -> Any:
    """Lower-case a string choice and raise a ValueError listing the valid ones if unknown."""
    value = value.lower() if isinstance(value, str) else value
    if value not in valid:
        shown = ", ".join("None" if v is None else repr(v) for v in valid)
        raise ValueError(f"Unknown {what} {value!r}; valid choices: {shown}.")
    return value
