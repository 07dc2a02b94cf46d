"""A non-finite loss or gradient stops the fit before the step, names where, and never reaches a checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from dermfuse_models.runner.checkpoints import RunCheckpoint, nonfinite_tensors, read_checkpoint
from dermfuse_models.runner.finite_guard import NonFiniteGuard
from dermfuse_models.runner.run_errors import NonFiniteError
from tests.experiments._tiny import TinyTask, loader, tiny_trainer


def _fit(tmp_path, model, max_epochs=3):
    ckpt = RunCheckpoint(dirpath=str(tmp_path / "checkpoints"), monitor="val/score", mode="max")
    trainer = tiny_trainer(tmp_path, [NonFiniteGuard(), ckpt], max_epochs=max_epochs)
    with pytest.raises(NonFiniteError) as caught:
        trainer.fit(model, loader(), loader())
    return str(caught.value), model.w.detach().clone()


def _all_checkpoints_finite(folder: Path) -> list[int]:
    steps = []
    for path in sorted(folder.glob("*.ckpt")):
        state = read_checkpoint(path)
        assert nonfinite_tensors(state["state_dict"]) == [], path
        steps.append(state["global_step"])
    return steps


def test_nan_loss_at_step_k_stops_before_the_step_with_the_batch_ids(tmp_path):
    model = TinyTask(nan_loss_at=4)  # 3 batches per epoch: step 4 is epoch 1, batch 1 (samples s004..s007)
    message, weights = _fit(tmp_path, model)
    assert "non-finite training loss (nan) at epoch 1, optimiser step 4 (batch 1 of the epoch)" in message
    assert "s004, s005, s006, s007" in message and "s003" not in message
    assert torch.isfinite(weights).all()  # the step was not taken
    assert _all_checkpoints_finite(tmp_path / "checkpoints") == [3, 3]  # best and last: epoch 0


def test_nan_gradient_with_a_finite_loss_is_caught_too(tmp_path):
    message, weights = _fit(tmp_path, TinyTask(nan_grad_at=2))
    assert "non-finite gradient in w (1 tensors) at epoch 0, optimiser step 2 (batch 2" in message
    assert "s008, s009, s010, s011" in message
    assert torch.isfinite(weights).all()
    assert not (tmp_path / "checkpoints").exists() or _all_checkpoints_finite(tmp_path / "checkpoints") == []


def test_a_checkpoint_with_nan_weights_is_refused(tmp_path):
    class PoisonAfterEpoch0(pl.Callback):
        def on_validation_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                with torch.no_grad():
                    pl_module.w[0] = float("inf")  # e.g. a BatchNorm buffer gone bad without a NaN loss

    ckpt = RunCheckpoint(dirpath=str(tmp_path / "checkpoints"), monitor="val/score", mode="min")
    trainer = tiny_trainer(tmp_path, [PoisonAfterEpoch0(), ckpt], max_epochs=3)
    with pytest.raises(NonFiniteError, match=r"not saving .*epoch 1, step 6 hold NaN/inf in w"):
        trainer.fit(TinyTask(), loader(), loader())
    assert _all_checkpoints_finite(tmp_path / "checkpoints") == [3, 3]
