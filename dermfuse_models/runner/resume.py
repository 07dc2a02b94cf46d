"""Where ``RESUME=1`` continues a run from, and when it must not: a finished run is left alone.

:func:`resume_point` decides before anything is built or written. A finished run (``metrics.json``
with ``status: finished``) raises :class:`~dermfuse_models.runner.run_errors.RunFinished` (exit 0,
no file touched) unless ``--extend=true`` with a larger ``trainer.max_epochs`` asks to train it
further. A failed or interrupted run continues from ``checkpoints/last.ckpt`` (or ``--ckpt_path``),
which :func:`~dermfuse_models.runner.checkpoints.read_checkpoint` loads with a clear error when damaged.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dermfuse_models.runner.checkpoints import read_checkpoint
from dermfuse_models.runner.run_errors import ConfigError, RunFinished
from dermfuse_models.runner.runs import run_metrics, run_status


def resume_point(run_dir: Path, ckpt_path: str | None, extend: bool, max_epochs: int | None) -> tuple[str, int]:
    """``(checkpoint to resume from, its global step)`` for ``run_dir`` (see module doc)."""
    status = run_status(run_dir)
    metrics = run_metrics(run_dir) or {}
    done = metrics.get("epochs")
    if status == "finished" and not extend:
        raise RunFinished(
            f"{run_dir} already finished ({done} of {metrics.get('max_epochs')} epochs, test metrics in "
            "metrics.json): nothing was done and no file changed. To train it further: "
            f"--extend=true --trainer.max_epochs=<more than {done}> (make ... RESUME=1 EXTEND=1 "
            "ARGS=--trainer.max_epochs=N); for a new run, drop RESUME."
        )
    if status == "finished" and isinstance(done, int) and max_epochs is not None and 0 <= max_epochs <= done:
        raise ConfigError(
            f"--extend=true but trainer.max_epochs={max_epochs} is not above the {done} epochs {run_dir} "
            f"already trained: set --trainer.max_epochs={done + 1} or more."
        )
    if status == "finished":
        print(
            f"extending {run_dir} from {done} to {max_epochs} epochs; the learning-rate schedule continues "
            "from the checkpoint (a CosineAnnealingLR keeps the T_max of the first run).",
            file=sys.stderr,
        )
    elif status == "failed":
        print(f"resuming {run_dir}, which failed: {metrics.get('reason')}", file=sys.stderr)
    path = str(run_dir / "checkpoints" / "last.ckpt") if ckpt_path in (None, "", "last") else str(ckpt_path)
    return path, int(read_checkpoint(path).get("global_step", 0))
