"""How a run's checkpoints are written and read: atomically, always up to the last epoch, never non-finite.

:class:`RunCheckpoint` is the ``ModelCheckpoint`` of ``experiments/defaults.yaml`` and every paper config
(``dermfuse_models.runner.checkpoints.RunCheckpoint``, same arguments as Lightning's). Lightning 2.6
writes a checkpoint into ``$TMPDIR`` and moves it: across filesystems that move is a copy that first
truncates the destination, so a kill leaves a 0-byte ``last.ckpt`` (and a stray temp file per kill), and
``save_last`` only rewrites ``last.ckpt`` when the monitored metric improved. Here:

* every write goes through :class:`AtomicCheckpointIO` (installed on the strategy at setup):
  :func:`~dermfuse_models.runner.atomic.atomic_write` in the checkpoint folder itself, so the previous
  file stays whole until the new one is complete; a killed writer's temp file is removed at the next
  setup; a full disk or a read-only folder raises
  :class:`~dermfuse_models.runner.run_errors.RunFolderError` naming the folder and ``DERMFUSE_RUNS``;
* ``last.ckpt`` is written at the end of EVERY epoch (and every ``last_every_n_train_steps`` optimiser
  steps if set, for long epochs), after flushing the loggers so ``metrics.csv`` holds the same steps:
  a kill loses at most that much;
* a checkpoint whose weights hold NaN/inf is refused (:class:`~dermfuse_models.runner.run_errors.NonFiniteError`),
  so it never becomes best or last;
* the validation metrics of the epoch that produced the best checkpoint are kept
  (:attr:`RunCheckpoint.best_val_metrics`, part of the checkpoint state): ``metrics.json``'s ``val`` reports them.

:func:`read_checkpoint` loads a checkpoint for resuming; a truncated or corrupt file is a
:class:`~dermfuse_models.runner.run_errors.CheckpointError` that names it and the checkpoints that still load.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning_fabric.utilities.cloud_io import _is_local_file_protocol
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.trainer.states import TrainerFn

from dermfuse_models.runner.atomic import atomic_write, folder_os_error, remove_stale_temp_files
from dermfuse_models.runner.run_errors import CheckpointError, NonFiniteError, RunFolderError


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves are atomic in the checkpoint's own folder (module doc)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        """``torch.save`` into a temp file next to ``path``, fsync, ``os.replace``; remote paths as Lightning."""
        if storage_options is not None or not _is_local_file_protocol(str(path)):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        try:
            atomic_write(path, lambda file: torch.save(checkpoint, file))
        except Exception as err:
            cause = folder_os_error(err)
            if cause is not None:
                raise RunFolderError(path.parent, cause) from err
            raise


def nonfinite_tensors(state_dict: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors of ``state_dict`` holding NaN or inf (one device sync)."""
    floats = [(k, v) for k, v in state_dict.items() if torch.is_tensor(v) and v.is_floating_point() and v.numel()]
    if not floats:
        return []
    finite = torch.stack([torch.isfinite(v).all() for _, v in floats]).cpu()
    return [k for (k, _), ok in zip(floats, finite.tolist()) if not ok]


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that writes atomically, keeps ``last.ckpt`` at the last epoch and refuses NaN weights.

    Args:
        last_every_n_train_steps: also rewrite ``last.ckpt`` every N optimiser steps (0 = only at the
            end of each epoch), for epochs long enough that losing one matters.
        save_last: default ``True`` (``last.ckpt`` is what ``RESUME=1`` continues from).
        enable_version_counter: default ``False``: a run folder holds one run, so ``last.ckpt`` is always
            ``last.ckpt`` (Lightning would write ``last-v1.ckpt`` next to a ``last.ckpt`` it did not write,
            e.g. after the run folder moved, and ``RESUME=1`` would then continue from the stale one).
        **kwargs: Lightning's ``ModelCheckpoint`` arguments (``monitor``, ``mode``, ``filename``, ...).
    """

    def __init__(
        self,
        last_every_n_train_steps: int = 0,
        save_last: bool | None = True,
        enable_version_counter: bool = False,
        **kwargs,
    ) -> None:
        if last_every_n_train_steps < 0:
            raise ValueError(f"RunCheckpoint last_every_n_train_steps must be >= 0, got {last_every_n_train_steps}")
        super().__init__(save_last=save_last, enable_version_counter=enable_version_counter, **kwargs)
        self.last_every_n_train_steps = int(last_every_n_train_steps)
        #: ``val/*`` metrics logged in the epoch of the best checkpoint, and that epoch
        self.best_val_metrics: dict[str, float] = {}
        self.best_epoch: int | None = None
        self._last_step_written: int | None = None

    # -- where and how files are written --------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Resolve the folder (Lightning), install :class:`AtomicCheckpointIO`, remove a killed save's temp files."""
        super().setup(trainer, pl_module, stage)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        if trainer.is_global_zero and stage == "fit" and self.dirpath and _is_local_file_protocol(str(self.dirpath)):
            for path in remove_stale_temp_files(self.dirpath):
                print(f"removed {path.name}: the temp file of a save that was interrupted", file=sys.stderr)

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        bad = nonfinite_tensors(trainer.lightning_module.state_dict())
        if bad:
            raise NonFiniteError(
                f"not saving {filepath}: the weights at epoch {trainer.current_epoch}, step {trainer.global_step} "
                f"hold NaN/inf in {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}. Lower the learning rate "
                "(model.init_args.optimizer.init_args.lr) or clip gradients (trainer.gradient_clip_val)."
            )
        if filepath == self.best_model_path:
            self.best_epoch = int(trainer.current_epoch)
            self.best_val_metrics = {
                k: float(v)
                for k, v in sorted(trainer.callback_metrics.items())
                if k.startswith("val/") and getattr(v, "numel", lambda: 1)() == 1
            }
        for logger in trainer.loggers:  # metrics.csv then holds every step the checkpoint holds
            logger.save()
        super()._save_checkpoint(trainer, filepath)

    # -- last.ckpt at every epoch end (Lightning rewrites it only when a top-k checkpoint was saved) ----
    def _save_last_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        if self.save_last:
            self._last_step_written = trainer.global_step

    def _write_last_if_missing(self, trainer: pl.Trainer) -> None:
        skip = bool(trainer.fast_dev_run) or trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking
        if not self.save_last or skip or trainer.global_step in (0, self._last_step_written):
            return  # off, not fitting, nothing trained yet, or already written at this step
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Lightning's top-k save, then ``last.ckpt`` if this epoch did not write it."""
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._write_last_if_missing(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Lightning's top-k save, then ``last.ckpt`` if this validation did not write it."""
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._write_last_if_missing(trainer)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        """Lightning's step-based saves, then ``last.ckpt`` every ``last_every_n_train_steps`` steps."""
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        n = self.last_every_n_train_steps
        if n and trainer.global_step % n == 0:
            previous = self._last_global_step_saved
            self._write_last_if_missing(trainer)
            self._last_global_step_saved = previous  # the epoch's own top-k save at this step still happens

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """Lightning's ``save_on_exception``, except after a non-finite failure (those weights are not kept)."""
        if not isinstance(exception, NonFiniteError):
            super().on_exception(trainer, pl_module, exception)

    # -- state kept across resumes --------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Lightning's state plus the best epoch and its validation metrics."""
        return {**super().state_dict(), "best_val_metrics": self.best_val_metrics, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Lightning's restore plus the best epoch and its validation metrics."""
        super().load_state_dict(state_dict)
        self.best_val_metrics = dict(state_dict.get("best_val_metrics") or {})
        self.best_epoch = state_dict.get("best_epoch")


def _load(path: Path) -> dict[str, Any]:
    """The checkpoint memory-mapped (tensors read on use), or fully read where it is not a zip file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception:
        return torch.load(path, map_location="cpu", weights_only=False)


def _loads(path: Path) -> bool:
    try:
        _load(path)
    except Exception:
        return False
    return True


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint loaded on CPU; a missing, truncated or corrupt file is a :class:`CheckpointError`
    naming it, the run's other checkpoints that still load and what to do."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist.")
    try:
        return _load(path)
    except Exception as err:
        others = sorted((p for p in path.parent.glob("*.ckpt") if p != path), key=lambda p: -p.stat().st_mtime)
        usable = [p for p in others if _loads(p)]
        hint = (
            f"resume from the newest checkpoint that loads: --ckpt_path={usable[0]}"
            if usable
            else "no other checkpoint of this run loads: start a new run (without RESUME)"
        )
        raise CheckpointError(
            f"checkpoint {path} is damaged ({path.stat().st_size} bytes; {type(err).__name__}: {err}): it was "
            f"probably cut short by a kill or a full disk while being written. {hint}, or delete it."
        ) from None
