"""The loggers every run gets (``experiments/defaults.yaml``): a resumable CSV log and wandb (offline by default).

:class:`RunWandbLogger` picks its mode from :func:`~dermfuse_models.runner.runs.wandb_mode` (``WANDB_MODE``,
else online only when an API key is configured, else offline) and names the wandb run after its run
folder, grouped by the folder above (the experiment, or the sweep).

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when it starts writing in a folder that
already has one. A resumed run (``RESUME=1``) writes into the same run folder, so that would lose the
epochs before the interruption. :class:`ResumableCSVLogger` instead keeps the rows logged up to the
checkpoint (``step < resume_step``: Lightning logs a step's rows under the step count before it, and
epoch-start rows such as the learning rate under the one after; test rows dropped: the resumed run
tests again) and appends.
The checkpoint callback flushes the log before each save, so those rows are exactly the steps the
checkpoint holds: a resumed ``metrics.csv`` has every step once. Whole-file rewrites (the trim, a new
column) are atomic: a kill mid-rewrite leaves the previous file.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from pytorch_lightning.loggers import CSVLogger, WandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment

from dermfuse_models.runner.atomic import atomic_write_text
from dermfuse_models.runner.runs import wandb_mode


def _write_csv_atomically(path: str, fieldnames: list[str], rows: list[dict]) -> None:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fieldnames)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, text.getvalue())


class _AppendingExperimentWriter(ExperimentWriter):
    """Experiment writer that trims ``metrics.csv`` to the checkpoint's step instead of deleting it."""

    def __init__(self, log_dir: str, resume_step: int | None) -> None:
        self._resume_step = resume_step
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        if not os.path.isfile(self.metrics_file_path):
            return  # the run folder already holds config.yaml, wandb/...: nothing here is deleted, no warning
        if self._resume_step is None:
            super()._check_log_dir_exists()  # a fresh run over an old metrics.csv: Lightning's warning + delete
            return
        with open(self.metrics_file_path, newline="") as file:
            reader = csv.DictReader(file)
            fieldnames = list(reader.fieldnames or [])
            rows = [r for r in reader if _keep(r, self._resume_step)]
        _write_csv_atomically(self.metrics_file_path, fieldnames, rows)
        self.metrics_keys = sorted(fieldnames)

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        """Lightning's rewrite when a new column appears, atomic."""
        with open(self.metrics_file_path, newline="") as file:
            rows = list(csv.DictReader(file))
        _write_csv_atomically(self.metrics_file_path, fieldnames, rows)


def _keep(row: dict[str, str], resume_step: int) -> bool:
    """A row logged before the checkpoint at ``resume_step`` (and not a test result)."""
    if any(k.startswith("test/") and v not in ("", None) for k, v in row.items()):
        return False
    try:
        return int(float(row.get("step") or 0)) < resume_step
    except ValueError:
        return False


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` that, given ``resume_step``, continues an existing ``metrics.csv`` (see module doc).

    Args:
        save_dir, name, version: as ``CSVLogger``.
        resume_step: global step of the checkpoint the run resumes from; ``None`` = a fresh run
            (the plain ``CSVLogger`` behaviour).
    """

    def __init__(
        self,
        save_dir: str = ".",
        name: str = "",
        version: str | int | None = "",
        resume_step: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(save_dir, name=name, version=version, **kwargs)
        self.resume_step = resume_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        """The writer (created on first use, trimming ``metrics.csv`` when resuming)."""
        if self._experiment is not None:
            return self._experiment
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = _AppendingExperimentWriter(self.log_dir, self.resume_step)
        return self._experiment


class RunWandbLogger(WandbLogger):
    """``WandbLogger`` for a run folder: offline unless wandb is configured, ``disabled`` with ``WANDB_MODE=disabled``.

    Args:
        save_dir: the run folder (the CLI fills it in); the wandb run is named after it and grouped
            by its parent folder (the experiment or sweep).
        project: wandb project (``$WANDB_PROJECT``, else ``dermfuse``).
        **kwargs: passed to ``WandbLogger`` / ``wandb.init``.
    """

    def __init__(self, save_dir: str = ".", project: str | None = None, **kwargs) -> None:
        mode = wandb_mode()
        folder = Path(save_dir).resolve()
        kwargs = {k: v for k, v in kwargs.items() if v is not None}  # the CLI passes every wandb.init key
        kwargs.setdefault("name", folder.name)
        kwargs.setdefault("group", folder.parent.name)
        if mode == "disabled":
            kwargs["mode"] = "disabled"
        super().__init__(
            save_dir=str(folder),
            project=project or os.environ.get("WANDB_PROJECT", "dermfuse"),
            offline=mode != "online",
            **kwargs,
        )
        self._wandb_init.pop("anonymous", None)  # None is not a setting: wandb warns about it
