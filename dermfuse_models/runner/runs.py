"""Run folders written by ``python -m dermfuse_models.runner fit``: where they go and how to find them.

A run folder (``runs/<experiment>/<time>-<dataset>/``, created atomically by :func:`create_run_dir`)
holds the resolved ``config.yaml``, ``provenance.json``, ``checkpoints/{best-*,last}.ckpt`` and, once the
run ended, ``metrics.json``: ``"status": "finished"`` after fit + test, ``"failed"`` (with ``reason``)
after a failed fit. Older runs' ``metrics.json`` without ``status`` are finished runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from dermfuse_models.runner.atomic import FOLDER_ERRNOS
from dermfuse_models.runner.run_errors import RUNS_DIR_ENV, RunFolderError


def wandb_mode() -> str:
    """``WANDB_MODE`` if set; ``online`` when an API key is configured; else ``offline``."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    netrc = Path.home() / ".netrc"
    configured = os.environ.get("WANDB_API_KEY") or (netrc.exists() and "api.wandb.ai" in netrc.read_text())
    return "online" if configured else "offline"


def runs_root() -> Path:
    """Where run folders go: ``$DERMFUSE_RUNS`` if set, else ``runs`` in the working directory."""
    return Path(os.environ.get(RUNS_DIR_ENV, "runs")).resolve()


def run_config(run_dir: str | Path) -> dict:
    """The resolved ``config.yaml`` of a run folder ({} if absent or unreadable)."""
    try:
        return yaml.safe_load((Path(run_dir) / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def create_run_dir(path: str | Path, unique: bool = True) -> Path:
    """Create the run folder ``path`` and return it.

    ``unique``: the folder must be new; ``os.mkdir`` is atomic, so when another run took the name
    (two runs started in the same second) the next free ``<name>-2``, ``<name>-3``, ... is taken.
    Otherwise an existing folder is reused (resume, an explicit ``--run_dir``, the ranks of one job).
    A folder that cannot be created (permissions, full or read-only disk) is a :class:`RunFolderError`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not unique:
            path.mkdir(exist_ok=True)
            return path
        candidate, n = path, 2
        while True:
            try:
                os.mkdir(candidate)
                return candidate
            except FileExistsError:
                candidate, n = path.with_name(f"{path.name}-{n}"), n + 1
    except OSError as err:
        if err.errno in FOLDER_ERRNOS:
            raise RunFolderError(path, err) from None
        raise


def run_status(run_dir: str | Path) -> str:
    """``finished``, ``failed`` (``metrics.json`` says so) or ``unfinished`` (no readable ``metrics.json``)."""
    metrics = run_metrics(run_dir)
    return "unfinished" if metrics is None else str(metrics.get("status", "finished"))


#: sub-folders of a run holding what was scored from it (``eval``, ``predict``): never runs themselves
RUN_OUTPUT_FOLDERS = frozenset({"eval", "predictions"})


def run_metric_files(base: str | Path) -> list[Path]:
    """Every run's ``metrics.json`` below ``base``, leaving out those of evaluations inside a run
    (:data:`RUN_OUTPUT_FOLDERS`)."""
    base = Path(base)
    return [p for p in base.glob("**/metrics.json") if not RUN_OUTPUT_FOLDERS & set(p.relative_to(base).parts[:-1])]


def run_metrics(run_dir: str | Path) -> dict | None:
    """The run's ``metrics.json`` (``None`` while the run has not ended; see :func:`run_status`)."""
    try:
        return json.loads((Path(run_dir) / "metrics.json").read_text())
    except (OSError, ValueError):
        return None


def _norm_root(root: str | None) -> str | None:
    return None if root in (None, "") else str(Path(root).expanduser().resolve())


def same_data(config: dict, dataset: str, root: str | None, source_options: dict | None = None) -> bool:
    """Whether a run's config used ``dataset`` at ``root`` (``None`` = the synthetic miniature) with
    the same source options (e.g. CBIS-DDSM ``abnormality``)."""
    data = config.get("data") or {}
    return (
        data.get("dataset") == dataset
        and _norm_root(data.get("root")) == _norm_root(root)
        and dict(data.get("source_options") or {}) == dict(source_options or {})
    )


def dataset_tag(dataset: str, source_options: dict | None = None) -> str:
    """``cbis_ddsm`` or ``cbis_ddsm-mass``: the dataset plus its source option values, for folder names."""
    values = [str(v) for v in (source_options or {}).values()]
    return "-".join([dataset, *values]).replace("/", "_")


def find_resumable_run(
    experiment: str, dataset: str, root: str | None, runs: Path | None = None, source_options: dict | None = None
) -> Path | None:
    """Latest run folder of ``experiment`` on ``dataset``/``root``/``source_options`` with ``checkpoints/last.ckpt``."""
    base = (runs or runs_root()) / experiment
    candidates = [ckpt.parent.parent for ckpt in base.glob("**/checkpoints/last.ckpt")]
    candidates = [d for d in candidates if same_data(run_config(d), dataset, root, source_options)]
    if not candidates:
        return None
    return max(candidates, key=lambda d: (d / "checkpoints" / "last.ckpt").stat().st_mtime)


def latest_finished_run(experiment: str, synthetic: bool | None = None, runs: Path | None = None) -> Path | None:
    """Latest finished run folder of ``experiment`` (optionally: on synthetic data or not); failed runs never count."""
    base = (runs or runs_root()) / experiment
    finished = []
    for path in run_metric_files(base):
        metrics = run_metrics(path.parent)
        if metrics is None or metrics.get("status", "finished") != "finished":
            continue
        if synthetic is not None and bool(metrics.get("synthetic")) != synthetic:
            continue
        finished.append(path.parent)
    return max(finished, key=lambda d: (d / "metrics.json").stat().st_mtime) if finished else None


def best_checkpoint(run_dir: str | Path) -> Path:
    """The run's best checkpoint (from ``metrics.json``), else ``checkpoints/last.ckpt``."""
    run_dir = Path(run_dir)
    best = (run_metrics(run_dir) or {}).get("best_checkpoint")
    if best and Path(best).is_file():
        return Path(best)
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.is_file():
        return last
    raise FileNotFoundError(
        f"{run_dir} has no checkpoint (neither metrics.json's best_checkpoint nor "
        "checkpoints/last.ckpt): did the run finish?"
    )


def find_run_config(checkpoint: str | Path, max_levels: int = 3) -> Path:
    """``config.yaml`` in the checkpoint's folder or up to ``max_levels`` folders above it."""
    ckpt = Path(checkpoint).expanduser().resolve()
    if not ckpt.is_file():
        raise FileNotFoundError(
            f"checkpoint {ckpt} does not exist; pass the .ckpt written by "
            "`python -m dermfuse_models.runner fit` (e.g. <run>/checkpoints/last.ckpt)."
        )
    folder = ckpt.parent
    for _ in range(max_levels + 1):
        candidate = folder / "config.yaml"
        if candidate.is_file():
            return candidate
        folder = folder.parent
    raise FileNotFoundError(
        f"no config.yaml next to or up to {max_levels} folders above {ckpt}; a checkpoint must stay inside the "
        "run folder written by `python -m dermfuse_models.runner fit` (it holds the resolved config.yaml)."
    )
