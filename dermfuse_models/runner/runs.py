"""Run folders written by ``python -m dermfuse_models.runner.cli fit``: find them and rebuild their model.

A run folder (``runs/<experiment>/<time>-<dataset>/``) holds the resolved ``config.yaml``,
``checkpoints/{best-*,last}.ckpt`` and, once the run finished (fit + test), ``metrics.json``.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml

RUNS_DIR_ENV = "DERMFUSE_RUNS"
#: top-level keys the ``run=False`` DermCLI parser accepts (``fit`` adds ckpt_path, resume, ...)
_MODEL_DATA_KEYS = ("seed_everything", "model", "data", "optimizer", "lr_scheduler")


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


def run_metrics(run_dir: str | Path) -> dict | None:
    """The run's ``metrics.json`` (``None`` while the run has not finished)."""
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
    return (data.get("dataset") == dataset and _norm_root(data.get("root")) == _norm_root(root)
            and dict(data.get("source_options") or {}) == dict(source_options or {}))


def dataset_tag(dataset: str, source_options: dict | None = None) -> str:
    """``cbis_ddsm`` or ``cbis_ddsm-mass``: the dataset plus its source option values, for folder names."""
    values = [str(v) for v in (source_options or {}).values()]
    return "-".join([dataset, *values]).replace("/", "_")


def find_resumable_run(experiment: str, dataset: str, root: str | None, runs: Path | None = None,
                       source_options: dict | None = None) -> Path | None:
    """Latest run folder of ``experiment`` on ``dataset``/``root``/``source_options`` with ``checkpoints/last.ckpt``."""
    base = (runs or runs_root()) / experiment
    candidates = [ckpt.parent.parent for ckpt in base.glob("**/checkpoints/last.ckpt")]
    candidates = [d for d in candidates if same_data(run_config(d), dataset, root, source_options)]
    if not candidates:
        return None
    return max(candidates, key=lambda d: (d / "checkpoints" / "last.ckpt").stat().st_mtime)


def latest_finished_run(experiment: str, synthetic: bool | None = None, runs: Path | None = None) -> Path | None:
    """Latest run folder of ``experiment`` with a ``metrics.json`` (optionally: on synthetic data or not)."""
    base = (runs or runs_root()) / experiment
    finished = []
    for path in base.glob("**/metrics.json"):
        metrics = run_metrics(path.parent)
        if metrics is None or (synthetic is not None and bool(metrics.get("synthetic")) != synthetic):
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
    raise FileNotFoundError(f"{run_dir} has no checkpoint (neither metrics.json's best_checkpoint nor "
                            "checkpoints/last.ckpt): did the run finish?")


def rebuildable_config(raw: dict, source: str | Path) -> dict:
    """A run's resolved config reduced to what rebuilding its model and data needs.

    Keeps the model/data sections (no fit-only keys, loggers or callbacks), adds a bare CPU trainer
    and turns ``pretrained``/``weights_path`` of the net off: the checkpoint holds the weights, so
    no hub download is attempted. ``source`` names the config in the error for a config without
    model/data sections (``ValueError``).
    """
    if "model" not in raw or "data" not in raw:
        raise ValueError(f"{source} is missing or has no model/data sections; a checkpoint must stay inside the "
                         "run folder written by `python -m dermfuse_models.runner.cli fit` (it holds the resolved config.yaml).")
    cfg = {k: raw[k] for k in _MODEL_DATA_KEYS if k in raw}
    net_args = (((cfg["model"].get("init_args") or {}).get("net") or {}).get("init_args") or {})
    if "pretrained" in net_args:
        net_args["pretrained"] = False
    if "weights_path" in net_args:
        net_args["weights_path"] = None
    cfg["trainer"] = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False,
                      "enable_progress_bar": False, "enable_model_summary": False}
    return cfg


def build_from_config(cfg: dict, run_dir: str | Path, extra_args: Sequence[str] = ()):
    """``DermCLI(run=False)`` on ``cfg`` (see :func:`rebuildable_config`): model and DataModule, nothing trained.

    ``extra_args``: LightningCLI overrides (``--data.root=...``). ``sys.argv`` is hidden from
    LightningCLI meanwhile (it warns when it also sees the caller's own arguments).
    """
    import sys

    from dermfuse_models.runner.cli import DermCLI

    with tempfile.TemporaryDirectory(prefix="dermfuse-rebuild-") as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        argv, sys.argv = sys.argv, sys.argv[:1]
        try:
            return DermCLI(args=["--config", str(path), "--run_dir", str(run_dir), *extra_args], run=False)
        finally:
            sys.argv = argv


def load_checkpoint_weights(model, checkpoint: str | Path, config_path: str | Path) -> dict:
    """Load a Lightning checkpoint's ``state_dict`` into ``model`` (strict); returns the checkpoint dict.

    A mismatch raises ``RuntimeError`` naming the checkpoint and the config the model came from.
    """
    import torch

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception:  # Lightning checkpoints may pickle callback states; the file is the user's own run
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if "state_dict" not in state:
        raise ValueError(f"{checkpoint} is not a Lightning checkpoint (no 'state_dict').")
    missing, unexpected = model.load_state_dict(state["state_dict"], strict=False)
    if missing or unexpected:
        raise RuntimeError(
            f"{checkpoint} does not match the model built from {config_path}: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}. "
            "Was the config edited after training?")
    return state


def load_trained_module(checkpoint: str | Path, run_dir: str | Path | None = None):
    """The run's LightningModule rebuilt from its ``config.yaml`` with ``checkpoint``'s weights, in eval mode.

    ``run_dir`` defaults to the checkpoint's ``checkpoints/`` parent (see :func:`rebuildable_config`).
    """
    checkpoint = Path(checkpoint).expanduser().resolve()
    run_dir = Path(run_dir) if run_dir is not None else checkpoint.parent.parent
    config_path = run_dir / "config.yaml"
    with tempfile.TemporaryDirectory(prefix="dermfuse-load-") as tmp:
        model = build_from_config(rebuildable_config(run_config(run_dir), config_path), Path(tmp) / "run").model
    load_checkpoint_weights(model, checkpoint, config_path)
    return model.eval()
