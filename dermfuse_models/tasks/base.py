"""What every dermfuse task shares: the injected net, its optimisation, the step and its logging."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.utilities.types import OptimizerLRScheduler
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, ReduceLROnPlateau

from dermfuse_models.protocol import NetOutput, call_net
from dermfuse_models.tasks.predictions import TestPredictionLog

#: the metric ReduceLROnPlateau watches (logged by every task)
PLATEAU_MONITOR = "val/loss"

YAML_FORM = (
    "optimizer: {class_path: torch.optim.Adam, init_args: {lr: 1.0e-4}} and lr_scheduler: "
    "{class_path: torch.optim.lr_scheduler.CosineAnnealingLR} under model.init_args"
)


class DermTask(pl.LightningModule):
    """A LightningModule around an injected net: optimisation, the shared step, aux losses, predictions.

    Optimisation is LightningCLI's own form (``OptimizerCallable`` / ``LRSchedulerCallable``): in YAML, under
    ``model.init_args``::

        optimizer:
          class_path: torch.optim.AdamW
          init_args: {lr: 5.0e-5, weight_decay: 0.05}
        lr_scheduler:
          class_path: torch.optim.lr_scheduler.CosineAnnealingLR   # T_max: linked from trainer.max_epochs

    From Python, any callable ``params -> Optimizer`` / ``optimizer -> scheduler`` (a class, a
    ``functools.partial``). ``configure_optimizers`` hands the optimizer the *trainable* parameters only
    (so callbacks that freeze parameters first, e.g. ``FreezeBackbone``, keep them out), steps the
    scheduler once per epoch and gives ``ReduceLROnPlateau`` the monitor ``val/loss``. The CLI
    (``dermfuse_models.runner.cli``) links ``trainer.max_epochs`` to ``CosineAnnealingLR``'s ``T_max``, so a
    cosine schedule spans the run without its length being written twice.

    The step: the batch reaches the net through :func:`~dermfuse_models.protocol.call_net` (``mask_input``
    says whether the batch's mask is a net input); the optimised loss is :meth:`task_loss` plus every
    ``aux_losses`` value the net returns (already weighted). Logged: ``{stage}/loss`` (total, per step and
    epoch in training) and ``{stage}/aux_<name>``. Subclasses write :meth:`task_loss`,
    :meth:`update_metrics` (val/test), :meth:`probabilities` and their epoch-end metric logging.

    Args:
        net: the ``nn.Module`` to train (``model.init_args.net`` in YAML), a dermfuse protocol net.
        optimizer: ``params -> Optimizer``; default ``torch.optim.Adam`` (lr 1e-3).
        lr_scheduler: ``optimizer -> scheduler`` or ``None`` (constant learning rate, the default).
    """

    #: whether the batch's ``mask`` reaches the net (segmentation: it is the target, never an input)
    mask_input = True

    def __init__(
        self,
        net: torch.nn.Module,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        _check_callable("optimizer", optimizer)
        if lr_scheduler is not None:
            _check_callable("lr_scheduler", lr_scheduler)
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        #: per-sample outputs of the last ``trainer.test`` (:class:`TestPredictionLog`), for intervals and CSV
        self.test_predictions: dict | None = None
        self._test_log = TestPredictionLog()

    # ----------------------------------------------------------------- what a task writes
    def task_loss(self, out: NetOutput, batch: Mapping[str, Any], stage: str) -> torch.Tensor:
        """The task's own loss of the net output (without the aux losses); may log its terms."""
        raise NotImplementedError

    def update_metrics(self, stage: str, logits: torch.Tensor, batch: Mapping[str, Any]) -> None:
        """Accumulate the ``val`` / ``test`` metrics of a batch."""
        raise NotImplementedError

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits -> probabilities (softmax over classes, sigmoid per pixel)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- forward / step
    def forward(self, batch: Mapping[str, Any]) -> NetOutput:
        """The net's output for a batch (``protocol.call_net``)."""
        return call_net(self.net, batch, mask_input=self.mask_input)

    def step(self, batch: Mapping[str, Any], stage: str) -> tuple[torch.Tensor, NetOutput]:
        """Total loss (task loss + aux losses) and the net output, logging ``{stage}/loss`` and the aux terms."""
        out = self(batch)
        loss = self.task_loss(out, batch, stage)
        batch_size = int(batch["image"].shape[0])
        for name, value in (out.get("aux_losses") or {}).items():
            loss = loss + value
            self.log(f"{stage}/aux_{name}", value, on_step=False, on_epoch=True, sync_dist=True, batch_size=batch_size)
        self.log(
            f"{stage}/loss",
            loss,
            on_step=stage == "train",
            on_epoch=True,
            prog_bar=True,
            sync_dist=True,
            batch_size=batch_size,
        )
        return loss, out

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        """Optimise the task loss + aux losses."""
        return self.step(batch, "train")[0]

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """Log the validation loss and accumulate the metrics."""
        _, out = self.step(batch, "val")
        self.update_metrics("val", out["logits"], batch)

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """Log the test loss and accumulate the metrics."""
        _, out = self.step(batch, "test")
        self.update_metrics("test", out["logits"], batch)

    def on_test_epoch_start(self) -> None:
        """Start a fresh per-sample log of the test outputs."""
        self._test_log.reset()
        self.test_predictions = None

    def gather_test_predictions(self) -> None:
        """Set :attr:`test_predictions` from every rank's log (collective: call at test epoch end on all ranks)."""
        self.test_predictions = self._test_log.gather()
        self._test_log.reset()

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """``{"sample_id": batch ids, "probs": probabilities of the main logits}``."""
        return {"sample_id": batch.get("sample_id"), "probs": self.probabilities(self(batch)["logits"].float())}

    # ----------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> OptimizerLRScheduler:
        """The optimizer over the trainable parameters and, if configured, its per-epoch scheduler."""
        optimizer = self.optimizer([p for p in self.parameters() if p.requires_grad])
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must build a torch.optim.Optimizer, got {type(optimizer).__name__}; in YAML: {YAML_FORM}."
            )
        if self.lr_scheduler is None:
            return optimizer
        scheduler = self.lr_scheduler(optimizer)
        if not isinstance(scheduler, (LRScheduler, ReduceLROnPlateau)):
            raise TypeError(f"lr_scheduler must build a torch learning-rate scheduler, got {type(scheduler).__name__}.")
        if isinstance(scheduler, CosineAnnealingLR) and scheduler.T_max is None:
            raise ValueError(
                "CosineAnnealingLR has no T_max: the CLI links it from trainer.max_epochs, so set "
                "trainer.max_epochs (from Python, pass T_max)."
            )
        config: dict[str, Any] = {"scheduler": scheduler, "interval": "epoch"}
        if isinstance(scheduler, ReduceLROnPlateau):
            config["monitor"] = PLATEAU_MONITOR
        return {"optimizer": optimizer, "lr_scheduler": config}


def _check_callable(what: str, value: Any) -> None:
    """A clear error for an optimiser/scheduler that is not a callable (e.g. the old string switches)."""
    if isinstance(value, str) or not callable(value):
        raise TypeError(
            f"{what} must be a callable (a torch class or functools.partial), got {value!r}; in YAML: {YAML_FORM}."
        )
