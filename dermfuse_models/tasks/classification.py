"""Image (+ metadata) classification as a LightningModule with an injected net."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics import ClasswiseWrapper, MetricCollection
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.loggers.logger import DummyLogger
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassCalibrationError,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassRecall,
    MulticlassROC,
)

from dermfuse_models.protocol import NetOutput, call_net
from dermfuse_models.tasks.classification_report import write_test_report

log = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = (None, "cosine", "plateau", "step")


class ClassificationTask(pl.LightningModule):
    """Train/evaluate any classification net on dict batches (DESIGN.md, Models: ``tasks/``).

    Net protocol (``dermfuse_models.protocol``; every paper net follows it, so the task has no
    per-paper cases): the batch reaches the net through ``call_net``, i.e.
    ``net(image, meta=batch.get("meta"), mask=batch.get("mask")) -> {"logits": (B, K), "aux_losses"?:
    {name: scalar}}``; a net ignores the inputs it does not use. ``aux_losses`` values are already
    weighted scalar tensors (attention regularisation, ...). The optimised loss is
    ``CE(logits, label; class weights, label smoothing) + sum(aux_losses.values())``. A plain
    ``image -> logits`` module goes in ``protocol.ImageOnlyNet``.

    Batches: dicts with ``image`` (B,3,H,W), ``label`` (B,), optional ``meta`` (B,F),
    ``mask`` (B,1,H,W) and ``sample_id`` (list).

    Logged keys (``stage`` in train/val/test): ``{stage}/loss`` (total, CE + aux),
    ``{stage}/aux_<name>``; for val/test also ``{stage}/acc`` (micro accuracy),
    ``{stage}/bal_acc`` (macro recall = balanced accuracy), ``{stage}/f1_macro``,
    ``{stage}/auroc_macro``, ``{stage}/recall_<class name>`` and ``{stage}/ece`` (expected
    calibration error of the top-1 softmax probability, ``ece_bins`` equal-width bins, L1).
    Metrics are torchmetrics objects whose ``compute()`` synchronises across DDP ranks.

    Test report (``save_test_report``, and only when the trainer has a real logger, so that
    ``Trainer(logger=False)`` and ``fast_dev_run`` leave no files in the working directory): at
    the end of ``trainer.test`` rank 0 writes, into the trainer's ``log_dir`` (the run folder with
    the CLI's CSV logger), ``figures/confusion_matrix.png``,
    ``figures/roc_curves.png`` (one-vs-rest, with AUCs) and ``test_confusion_matrix.json`` (counts,
    rows = true class, and per-class tp/fp/fn/tn/recall/precision); the two figures are also
    logged to wandb (``test/confusion_matrix``, ``test/roc_curves``) when a ``WandbLogger`` is attached.

    Args:
        net: the ``nn.Module`` to train (injected, e.g. ``model.init_args.net.class_path``).
        num_classes: number of classes K.
        class_weights: ``"inverse_frequency"`` (N / (K * count_k) from
            ``trainer.datamodule.class_counts`` in ``setup``; unweighted with a warning when
            unavailable), an explicit list of K floats, or ``None`` for plain CE.
        lr: learning rate. weight_decay: optimiser weight decay.
        optimizer: ``"adam"`` (the ViTAtt paper), ``"adamw"`` or ``"sgd"`` (momentum 0.9).
        scheduler: ``None``, ``"cosine"`` (CosineAnnealingLR over ``trainer.max_epochs``, else
            ``max_epochs_hint``), ``"plateau"`` (ReduceLROnPlateau on ``val/loss``, factor 0.1,
            patience 5) or ``"step"`` (StepLR, gamma 0.1 every third of the epochs, else 10).
        max_epochs_hint: epochs to use for schedules when the trainer has no ``max_epochs``.
        class_names: names used in ``recall_<name>`` keys; default ``"0".."K-1"``.
        label_smoothing: CE label smoothing.
        ece_bins: number of confidence bins of the expected calibration error.
        save_test_report: write the confusion-matrix / ROC figures and JSON at the end of testing.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        num_classes: int = 2,
        class_weights: str | list[float] | None = "inverse_frequency",
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        optimizer: str = "adam",
        scheduler: str | None = None,
        max_epochs_hint: int | None = None,
        class_names: list[str] | None = None,
        label_smoothing: float = 0.0,
        ece_bins: int = 15,
        save_test_report: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        _check_choice("optimizer", optimizer.lower() if isinstance(optimizer, str) else optimizer, OPTIMIZERS)
        _check_choice("scheduler", scheduler.lower() if isinstance(scheduler, str) else scheduler, SCHEDULERS)
        self.net = net
        self.num_classes = int(num_classes)
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer_name = optimizer.lower()
        self.scheduler_name = scheduler.lower() if isinstance(scheduler, str) else None
        self.max_epochs_hint = max_epochs_hint
        self.label_smoothing = label_smoothing
        self.save_test_report = save_test_report

        names = list(class_names) if class_names is not None else [str(k) for k in range(self.num_classes)]
        if len(names) != self.num_classes:
            raise ValueError(f"class_names has {len(names)} entries but num_classes={self.num_classes}.")
        self.class_names = names

        # Persistent buffer (moves with the device, saved in checkpoints); ones = unweighted.
        self.register_buffer("class_weight", torch.ones(self.num_classes))
        if isinstance(class_weights, str):
            _check_choice("class_weights", class_weights, ("inverse_frequency",))
            self._weight_mode: str | None = "inverse_frequency"
        elif class_weights is None:
            self._weight_mode = None
        else:
            weights = torch.as_tensor(list(class_weights), dtype=torch.float32)
            if weights.shape != (self.num_classes,):
                raise ValueError(
                    f"class_weights has {weights.numel()} values but num_classes={self.num_classes}."
                )
            self.class_weight.copy_(weights)
            self._weight_mode = "explicit"

        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(self.num_classes, average="micro"),
                "bal_acc": MulticlassRecall(self.num_classes, average="macro"),
                "f1_macro": MulticlassF1Score(self.num_classes, average="macro"),
                "auroc_macro": MulticlassAUROC(self.num_classes, average="macro"),
                "recall": ClasswiseWrapper(
                    MulticlassRecall(self.num_classes, average=None),
                    labels=[_key_safe(n) for n in names],
                    prefix="recall_",
                ),
                "ece": MulticlassCalibrationError(self.num_classes, n_bins=ece_bins, norm="l1"),
            },
            # compute groups share states with the wrapped per-class recall inconsistently
            # across resets (spurious "compute before update"); the duplicate updates are cheap.
            compute_groups=False,
        )
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        # curves for the test report (not scalars, so outside the logged collection)
        self.test_confusion = MulticlassConfusionMatrix(self.num_classes)
        self.test_roc = MulticlassROC(self.num_classes)

    # ----------------------------------------------------------------- class weights
    @staticmethod
    def inverse_frequency_weights(class_counts: Sequence[int]) -> torch.Tensor:
        """Class weights ``N / (K * count_k)`` (a class with no samples counts as 1)."""
        counts = torch.as_tensor(list(class_counts), dtype=torch.float64)
        total, k = counts.sum(), counts.numel()
        return (total / (k * counts.clamp(min=1))).to(torch.float32)

    def setup(self, stage: str) -> None:
        """Compute inverse-frequency class weights from the datamodule's training labels."""
        if self._weight_mode != "inverse_frequency":
            return
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        counts = getattr(datamodule, "class_counts", None)
        if counts is None:
            log.warning(
                "class_weights='inverse_frequency' but the trainer has no datamodule with "
                "`class_counts`; training with unweighted cross-entropy."
            )
            return
        counts = list(counts)
        if len(counts) != self.num_classes:
            raise ValueError(
                f"datamodule.class_counts has {len(counts)} entries but num_classes={self.num_classes}."
            )
        if any(c == 0 for c in counts):
            log.warning("Classes with no training samples in class_counts=%s; their weight uses count 1.", counts)
        self.class_weight.copy_(self.inverse_frequency_weights(counts).to(self.class_weight.device))

    # ----------------------------------------------------------------- forward / loss
    def forward(self, batch: Mapping[str, Any]) -> NetOutput:
        """The net's output for a batch (``protocol.call_net``: image, meta and mask where present)."""
        return call_net(self.net, batch)

    def _shared_step(self, batch: Mapping[str, Any], stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss (CE + aux) and logits for a batch, logging ``{stage}/loss`` and aux terms."""
        out = self(batch)
        logits, labels = out["logits"], batch["label"].long()
        weight = self.class_weight.float() if self._weight_mode is not None else None
        loss = F.cross_entropy(logits.float(), labels, weight=weight, label_smoothing=self.label_smoothing)
        batch_size = labels.shape[0]
        for name, value in (out.get("aux_losses") or {}).items():
            loss = loss + value
            self.log(f"{stage}/aux_{name}", value, on_step=False, on_epoch=True, sync_dist=True, batch_size=batch_size)
        self.log(
            f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, prog_bar=True,
            sync_dist=True, batch_size=batch_size,
        )
        return loss, logits

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        """Optimise CE + aux losses."""
        loss, _ = self._shared_step(batch, "train")
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """Accumulate validation loss and metrics."""
        _, logits = self._shared_step(batch, "val")
        self.val_metrics.update(logits.detach().float().softmax(dim=-1), batch["label"].long())

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """Accumulate test loss and metrics."""
        _, logits = self._shared_step(batch, "test")
        probs, labels = logits.detach().float().softmax(dim=-1), batch["label"].long()
        self.test_metrics.update(probs, labels)
        self.test_confusion.update(probs, labels)
        self.test_roc.update(probs, labels)

    def on_validation_epoch_end(self) -> None:
        """Log DDP-synchronised validation metrics and reset them."""
        self._log_metrics(self.val_metrics)

    def on_test_epoch_end(self) -> None:
        """Log DDP-synchronised test metrics, write the test report (figures + JSON), reset."""
        self._log_metrics(self.test_metrics)
        if self.save_test_report and self._trainer is not None and self.test_confusion.update_called:
            # Lightning's fast_dev_run swaps the loggers for DummyLogger: no artefacts then either
            if any(not isinstance(lg, DummyLogger) for lg in self.trainer.loggers):
                self._write_test_report()
        self.test_confusion.reset()
        self.test_roc.reset()

    def _write_test_report(self) -> None:
        """Confusion matrix + ROC figures and JSON into ``trainer.log_dir`` (rank 0), wandb images."""
        matrix = self.test_confusion.compute()  # collective: every rank computes
        fpr, tpr, _ = self.test_roc.compute()
        out_dir = self.trainer.log_dir or self.trainer.default_root_dir  # log_dir broadcasts from rank 0
        if not self.trainer.is_global_zero or out_dir is None:
            return
        paths = write_test_report(out_dir, matrix, list(fpr), list(tpr), self.class_names)
        log.info("Test report written: %s", ", ".join(str(p) for p in paths.values()))
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="test/confusion_matrix", images=[str(paths["confusion_matrix"])])
                logger.log_image(key="test/roc_curves", images=[str(paths["roc_curves"])])

    def _log_metrics(self, metrics: MetricCollection) -> None:
        values = metrics.compute()  # all-gathers states across ranks
        self.log_dict(values, on_step=False, on_epoch=True, sync_dist=True, prog_bar=False)
        metrics.reset()

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """Return ``dict(sample_id, probs (B,K), label)`` for a batch."""
        logits = self(batch)["logits"]
        return {
            "sample_id": batch.get("sample_id"),
            "probs": logits.float().softmax(dim=-1),
            "label": batch.get("label"),
        }

    # ----------------------------------------------------------------- optimisation
    def _schedule_epochs(self) -> int | None:
        max_epochs = getattr(self._trainer, "max_epochs", None) if self._trainer is not None else None
        if max_epochs is not None and max_epochs > 0:
            return int(max_epochs)
        return self.max_epochs_hint

    def configure_optimizers(self) -> Any:
        """Optimizer (adam/adamw/sgd) and optional scheduler (cosine/plateau/step)."""
        _check_choice("optimizer", self.optimizer_name, OPTIMIZERS)
        _check_choice("scheduler", self.scheduler_name, SCHEDULERS)
        params = [p for p in self.parameters() if p.requires_grad]
        if self.optimizer_name == "adam":
            opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        elif self.optimizer_name == "adamw":
            opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        else:
            opt = torch.optim.SGD(params, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay)

        if self.scheduler_name is None:
            return opt
        epochs = self._schedule_epochs()
        if self.scheduler_name == "cosine":
            if epochs is None:
                raise ValueError("scheduler='cosine' needs trainer.max_epochs or max_epochs_hint.")
            sched: Any = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        elif self.scheduler_name == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.1, patience=5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val/loss", "interval": "epoch"}}
        else:
            step_size = max(1, epochs // 3) if epochs else 10
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=0.1)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


def _check_choice(what: str, value: Any, valid: Sequence[Any]) -> None:
    """Raise a ValueError naming the valid choices when ``value`` is not one of them."""
    if value not in valid:
        shown = ", ".join("None" if v is None else repr(v) for v in valid)
        raise ValueError(f"Unknown {what} {value!r}; valid choices: {shown}.")


def _key_safe(name: str) -> str:
    """Class name usable in a metric key: ``"basal cell"`` -> ``"basal_cell"``."""
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", str(name)).strip("_") or "class"
