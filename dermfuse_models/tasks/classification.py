"""Image (+ metadata) classification as a LightningModule with an injected net."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.loggers.logger import DummyLogger
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassROC

from dermfuse_models.figure_style import FigureContext
from dermfuse_models.protocol import NetOutput
from dermfuse_models.tasks.base import DermTask
from dermfuse_models.tasks.classification_report import write_test_report
from dermfuse_models.tasks.metrics import classification_metrics

log = logging.getLogger(__name__)


class ClassificationTask(DermTask):
    """Train/evaluate any classification net on dict batches (DESIGN.md, Models: ``tasks/``).

    The net, its optimisation (``optimizer`` / ``lr_scheduler``), the step, aux-loss logging and
    predictions are :class:`~dermfuse_models.tasks.base.DermTask`'s; this class adds the loss and metrics.

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
    ``{stage}/bal_acc`` (balanced accuracy), ``{stage}/f1_macro``, ``{stage}/auroc_macro`` (each
    averaged over the classes present in the split only, so ISIC 2019's empty ``UNK`` never enters),
    ``{stage}/recall_<class name>`` (classes present) and ``{stage}/ece`` (expected calibration error
    of the top-1 softmax probability, ``ece_bins`` equal-width bins, L1); binary tasks add
    ``{stage}/precision_pos``, ``sensitivity_pos``, ``specificity_pos`` and ``f1_pos`` of class 1
    (:mod:`dermfuse_models.tasks.metrics`). Metrics are torchmetrics objects whose ``compute()``
    synchronises across DDP ranks. ``trainer.test`` also leaves every test sample's probabilities in
    :attr:`test_predictions` (the runner writes ``test_predictions.csv`` and bootstrap intervals from it).

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
        class_names: names used in ``recall_<name>`` keys; default ``"0".."K-1"``.
        label_smoothing: CE label smoothing.
        ece_bins: number of confidence bins of the expected calibration error.
        save_test_report: write the confusion-matrix / ROC figures and JSON at the end of testing.
        optimizer, lr_scheduler: see :class:`~dermfuse_models.tasks.base.DermTask` (default Adam, lr 1e-3,
            constant).
    """

    def __init__(
        self,
        net: torch.nn.Module,
        num_classes: int = 2,
        class_weights: str | list[float] | None = "inverse_frequency",
        class_names: list[str] | None = None,
        label_smoothing: float = 0.0,
        ece_bins: int = 15,
        save_test_report: bool = True,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(net, optimizer, lr_scheduler)
        self.num_classes = int(num_classes)
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
                raise ValueError(f"class_weights has {weights.numel()} values but num_classes={self.num_classes}.")
            self.class_weight.copy_(weights)
            self._weight_mode = "explicit"

        metrics = classification_metrics(self.num_classes, names, ece_bins)
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
            raise ValueError(f"datamodule.class_counts has {len(counts)} entries but num_classes={self.num_classes}.")
        if any(c == 0 for c in counts):
            log.warning("Classes with no training samples in class_counts=%s; their weight uses count 1.", counts)
        self.class_weight.copy_(self.inverse_frequency_weights(counts).to(self.class_weight.device))

    # ----------------------------------------------------------------- loss / metrics
    def task_loss(self, out: NetOutput, batch: Mapping[str, Any], stage: str) -> torch.Tensor:
        """Cross-entropy (class weights, label smoothing) of the logits against ``batch["label"]``."""
        weight = self.class_weight.float() if self._weight_mode is not None else None
        return F.cross_entropy(
            out["logits"].float(), batch["label"].long(), weight=weight, label_smoothing=self.label_smoothing
        )

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax over the classes."""
        return logits.float().softmax(dim=-1)

    def update_metrics(self, stage: str, logits: torch.Tensor, batch: Mapping[str, Any]) -> None:
        """Accumulate the stage's metrics (and, in test, the confusion matrix and ROC of the report)."""
        probs, labels = self.probabilities(logits.detach()), batch["label"].long()
        if stage == "val":
            self.val_metrics.update(probs, labels)
            return
        self.test_metrics.update(probs, labels)
        self._test_log.add(batch.get("sample_id"), label=labels, probs=probs)
        self.test_confusion.update(probs, labels)
        self.test_roc.update(probs, labels)

    def on_validation_epoch_end(self) -> None:
        """Log DDP-synchronised validation metrics and reset them."""
        self._log_metrics(self.val_metrics)

    def on_test_epoch_end(self) -> None:
        """Log DDP-synchronised test metrics, write the test report (figures + JSON), reset."""
        self._log_metrics(self.test_metrics)
        self.gather_test_predictions()
        # Lightning's fast_dev_run swaps the loggers for DummyLogger: no artefacts then either
        real_logger = self._trainer is not None and any(not isinstance(lg, DummyLogger) for lg in self.trainer.loggers)
        if self.save_test_report and real_logger and self.test_confusion.update_called:
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
        context = FigureContext.from_trainer(self.trainer, "test")
        paths = write_test_report(out_dir, matrix, list(fpr), list(tpr), self.class_names, context)
        log.info("Test report written: %s", ", ".join(str(p) for p in paths.values()))
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="test/confusion_matrix", images=[str(paths["confusion_matrix"])])
                logger.log_image(key="test/roc_curves", images=[str(paths["roc_curves"])])

    def _log_metrics(self, metrics: MetricCollection) -> None:
        values = metrics.compute()  # all-gathers states across ranks
        # a class absent from the evaluated split has no recall (NaN): no key rather than a fake number
        values = {k: v for k, v in values.items() if not (_is_class_recall(k) and torch.isnan(v))}
        self.log_dict(values, on_step=False, on_epoch=True, sync_dist=True, prog_bar=False)
        metrics.reset()

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """Return ``dict(sample_id, probs (B,K), label)`` for a batch."""
        return {**super().predict_step(batch, batch_idx, dataloader_idx), "label": batch.get("label")}


def _check_choice(what: str, value: Any, valid: Sequence[Any]) -> None:
    """Raise a ValueError naming the valid choices when ``value`` is not one of them."""
    if value not in valid:
        shown = ", ".join("None" if v is None else repr(v) for v in valid)
        raise ValueError(f"Unknown {what} {value!r}; valid choices: {shown}.")


def _is_class_recall(key: str) -> bool:
    """Whether a logged key is a per-class recall (``val/recall_MEL``)."""
    return key.rpartition("/")[2].startswith("recall_")
