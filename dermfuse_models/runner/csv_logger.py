"""A CSV logger that continues a run's ``metrics.csv`` when the run is resumed from a checkpoint.

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when it starts writing in a folder that
already has one. A resumed run (``RESUME=1``) writes into the same run folder, so that would lose the
epochs before the interruption. :class:`ResumableCSVLogger` instead keeps the rows logged up to the
checkpoint (``step <= resume_step``, test rows dropped: the resumed run tests again) and appends.
"""
from __future__ import annotations

import csv
import os

from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment


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
        with open(self.metrics_file_path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)
        self.metrics_keys = sorted(fieldnames)


def _keep(row: dict[str, str], resume_step: int) -> bool:
    """A row logged before the checkpoint (and not a test result)."""
    if any(k.startswith("test/") and v not in ("", None) for k, v in row.items()):
        return False
    try:
        return int(float(row.get("step") or 0)) <= resume_step
    except ValueError:
        return False


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` that, given ``resume_step``, continues an existing ``metrics.csv`` (see module doc).

    Args:
        save_dir, name, version: as ``CSVLogger``.
        resume_step: global step of the checkpoint the run resumes from; ``None`` = a fresh run
            (the plain ``CSVLogger`` behaviour).
    """

    def __init__(self, save_dir: str, name: str = "", version: str | int | None = "",
                 resume_step: int | None = None, **kwargs) -> None:
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
