"""Stop a training at its first non-finite loss or gradient, before the optimiser touches the weights.

:class:`NonFiniteGuard` is added to every ``fit`` by the CLI (whatever the config's callback list).
A NaN or inf training loss (``lr=1e10``, a broken image, a log of zero) or gradient raises
:class:`~dermfuse_models.runner.run_errors.NonFiniteError` naming the epoch, the optimiser step and
the ``sample_id`` s of the batch, in ``on_before_optimizer_step``: the step is not taken, so the weights
(and every checkpoint) stay those of the last finite step. The CLI then records the run as failed
(``metrics.json`` ``"status": "failed"``) and exits with status 3.

One device sync per optimiser step (loss flags of the accumulated batches and the max-abs of every
gradient, checked together). Under DDP the ranks agree on the decision (one all-reduce of a flag), so
they stop together instead of one rank waiting for the others. With a ``GradScaler`` (``16-mixed``)
inf gradients are the scaler's business (it skips those steps): only the loss is checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch

from dermfuse_models.runner.run_errors import NonFiniteError

#: what to try, in the error message
ADVICE = (
    "Lower the learning rate (model.init_args.optimizer.init_args.lr), clip gradients "
    "(--trainer.gradient_clip_val=1.0) or check these samples' images and metadata."
)


class NonFiniteGuard(pl.Callback):
    """Raise :class:`NonFiniteError` at the first non-finite training loss or gradient (module doc).

    Args:
        check_gradients: also check the gradients (not only the loss).
        max_ids: how many sample ids of the offending batch the message lists.
    """

    def __init__(self, check_gradients: bool = True, max_ids: int = 32) -> None:
        super().__init__()
        self.check_gradients = check_gradients
        self.max_ids = max_ids
        self._batch: tuple[int, list[str]] = (0, [])
        self._losses: list[tuple[torch.Tensor, int, list[str]]] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int):
        """Remember the batch's ``sample_id`` s for the message."""
        ids = batch.get("sample_id") if isinstance(batch, Mapping) else None
        self._batch = (batch_idx, [str(i) for i in ids] if ids is not None else [])

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        """Keep the loss (no sync here: it is checked with the gradients before the step)."""
        self._losses.append((loss.detach(), *self._batch))

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer) -> None:
        """Check the accumulated losses and the gradients; raise before the step if any is NaN/inf."""
        losses, self._losses = self._losses, []
        grads = self._gradients(trainer, pl_module)
        flags = [torch.isfinite(loss).all() for loss, _, _ in losses]
        if grads:
            flags.append(torch.isfinite(torch.stack(torch._foreach_norm(grads, float("inf")))).all())
        bad = bool(flags) and not bool(torch.stack([f.to(flags[0].device) for f in flags]).all())
        if trainer.world_size > 1:
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            raise NonFiniteError(self._message(trainer, pl_module, losses))

    def _gradients(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> list[torch.Tensor]:
        if not self.check_gradients or getattr(trainer.precision_plugin, "scaler", None) is not None:
            return []
        return [p.grad for p in pl_module.parameters() if p.grad is not None]

    def _message(self, trainer: pl.Trainer, pl_module: pl.LightningModule, losses: list) -> str:
        where = f"epoch {trainer.current_epoch}, optimiser step {trainer.global_step}"
        for loss, batch_idx, ids in losses:
            if not torch.isfinite(loss).all():
                return (
                    f"non-finite training loss ({float(loss):g}) at {where} (batch {batch_idx} of the epoch); "
                    f"{self._ids(ids)}. The step was not taken. {ADVICE}"
                )
        batch_idx, ids = losses[-1][1:] if losses else self._batch
        names = [n for n, p in pl_module.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        if names:
            what = f"in {', '.join(names[:5])}{' ...' if len(names) > 5 else ''} ({len(names)} tensors)"
        else:
            what = "on another process (DDP)"
        return (
            f"non-finite gradient {what} at {where} (batch {batch_idx} of the epoch); {self._ids(ids)}. "
            f"The step was not taken. {ADVICE}"
        )

    def _ids(self, ids: list[str]) -> str:
        if not ids:
            return "the batch has no sample_id"
        shown = ", ".join(ids[: self.max_ids])
        return f"its samples: {shown}{f' ... ({len(ids)} in all)' if len(ids) > self.max_ids else ''}"
