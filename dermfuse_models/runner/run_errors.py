"""Problems of a run a user can act on: the command line prints the message, no traceback.

Each carries the exit status of ``python -m dermfuse_models.runner``: 2 for a configuration or a run
folder to fix before anything runs, 3 for a training that failed (``metrics.json`` says
``"status": "failed"``), 0 for "nothing to do" (``RESUME=1`` on a finished run).
"""

from __future__ import annotations

#: the variable that moves every run folder (``runs/`` in the working directory by default)
RUNS_DIR_ENV = "DERMFUSE_RUNS"
#: the variable that moves the splits, image caches and synthetic data (``.cache/dermfuse`` by default)
CACHE_DIR_ENV = "DERMFUSE_CACHE"


class RunError(RuntimeError):
    """A run cannot start or continue; the message names the key, file or folder and what to do."""

    exit_code = 2


class ConfigError(RunError):
    """A config value that cannot work with this data (checked before any work)."""


class CheckpointError(RunError):
    """A checkpoint that is missing, truncated or corrupt."""


class RunFolderError(RunError):
    """The run folder (or a file in it) cannot be created or written."""

    def __init__(self, folder, err: BaseException):
        super().__init__(
            f"cannot write to the run folder {folder}: {err}. Free space / fix the permissions there, or put "
            f"runs elsewhere with {RUNS_DIR_ENV}=/path/with/space (or --run_dir=/path)."
        )


class CacheFolderError(RunError):
    """The dataset cache folder (splits, decoded images, synthetic data) cannot be written."""

    def __init__(self, folder, err: BaseException):
        super().__init__(
            f"cannot write to the cache folder {folder}: {err}. Free space / fix the permissions there, or put "
            f"the cache elsewhere with {CACHE_DIR_ENV}=/path/with/space (or --data.cache_dir=/path)."
        )


class NonFiniteError(RunError):
    """Training produced a non-finite loss, gradient or weight; the run stopped and is recorded as failed."""

    exit_code = 3


class RunFinished(RunError):
    """``RESUME=1`` found a run that already finished: nothing was done, nothing was changed."""

    exit_code = 0
