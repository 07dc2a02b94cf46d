"""Rebuild a trained run (task + DataModule) from a checkpoint and its run folder's resolved ``config.yaml``.

``fit`` writes ``<run>/config.yaml`` (the fully resolved LightningCLI config) and ``<run>/checkpoints/*.ckpt``.
:func:`rebuild` is the one way back: it finds the config next to or above the checkpoint
(:func:`find_run_config`), rebuilds model and data through ``DermCLI`` (so the data -> model links --
classes, metadata blocks and names, image size -- are applied exactly as in training), restores the
weights and the DataModule's fitted metadata encoder from the checkpoint, and never starts training,
loggers or a new run folder. The two-stage pipeline, the explain command and the Python API use it.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from dermfuse_models.runner.runs import find_run_config

#: top-level keys the ``run=False`` DermCLI parser accepts (``fit`` adds ckpt_path, resume, ...)
_MODEL_DATA_KEYS = ("seed_everything", "model", "data")


@dataclass
class TrainedRun:
    """A trained run, rebuilt.

    Attributes:
        model: the LightningModule (``ClassificationTask`` / ``SegmentationTask``) with the checkpoint's
            weights, in eval mode.
        datamodule: the run's ``DermDataModule`` (metadata encoder restored from the checkpoint).
        run_dir: the run folder (where ``config.yaml`` was found). config_path: that file.
        checkpoint: the checkpoint path.
    """

    model: torch.nn.Module
    datamodule: object
    run_dir: Path
    config_path: Path
    checkpoint: Path


def rebuildable_config(
    config: str | Path | dict, source: str | Path | None = None, use_masks: bool | None = None
) -> dict:
    """A run's resolved config reduced to what rebuilding its model and data needs.

    Keeps the model/data sections (no fit-only keys, loggers or callbacks), adds a bare CPU trainer
    and turns ``pretrained``/``weights_path`` of the net off: the checkpoint holds the weights, so no
    hub download is attempted. ``config``: a run's ``config.yaml`` or an already parsed config
    (``source`` names it in errors). ``use_masks`` sets ``data.use_masks`` when given. A config without
    model/data sections is a ``ValueError`` naming the file.
    """
    source = source or config
    raw = copy.deepcopy(config) if isinstance(config, dict) else (yaml.safe_load(Path(config).read_text()) or {})
    if "model" not in raw or "data" not in raw:
        raise ValueError(
            f"{source} is missing or has no model/data sections; a checkpoint must stay inside "
            "the run folder written by `python -m dermfuse_models.runner fit` (it holds the resolved "
            "config.yaml)."
        )
    cfg = {k: raw[k] for k in _MODEL_DATA_KEYS if k in raw}
    net_args = ((cfg["model"].get("init_args") or {}).get("net") or {}).get("init_args") or {}
    if "pretrained" in net_args:
        net_args["pretrained"] = False
    if "weights_path" in net_args:
        net_args["weights_path"] = None
    if use_masks is not None:
        cfg["data"] = {**cfg["data"], "use_masks": bool(use_masks)}
    cfg["trainer"] = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "callbacks": [],
    }
    return cfg


def build_from_config(cfg: dict, run_dir: str | Path, extra_args: Sequence[str] = ()):
    """``DermCLI(run=False)`` on ``cfg`` (see :func:`rebuildable_config`): model and DataModule, nothing trained.

    ``extra_args``: LightningCLI overrides (``--data.root=...``). ``sys.argv`` is hidden from
    LightningCLI meanwhile (it warns when it also sees the caller's own arguments).
    """
    import tempfile

    from dermfuse_models.runner.cli import DermCLI

    with tempfile.TemporaryDirectory(prefix="dermfuse-rebuild-") as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        argv, sys.argv = sys.argv, sys.argv[:1]
        try:
            return DermCLI(args=["--config", str(path), "--run_dir", str(run_dir), *extra_args], run=False)
        finally:
            sys.argv = argv


def load_checkpoint_weights(model: torch.nn.Module, checkpoint: str | Path, config_path: str | Path) -> dict:
    """Load a Lightning checkpoint's ``state_dict`` into ``model`` (strict); returns the checkpoint dict.

    A mismatch raises ``RuntimeError`` naming the checkpoint and the config the model came from.
    """
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
            "Was the config edited after training?"
        )
    return state


def _dataset_has_masks(config_path: Path) -> bool:
    """Whether a classification run's dataset ships lesion masks (for localisation scores)."""
    from dermfuse_data.sources import get_source

    data = (yaml.safe_load(config_path.read_text()) or {}).get("data") or {}
    if data.get("use_masks"):
        return True
    return (
        data.get("task", "classification") == "classification"
        and get_source(data.get("dataset", "pad_ufes_20")).has_masks
    )


def rebuild(checkpoint: str | Path, overrides: Sequence[str] = (), use_masks: bool | str | None = None) -> TrainedRun:
    """Rebuild a run's model and DataModule and load the checkpoint's weights (see module doc).

    Args:
        checkpoint: a ``.ckpt`` inside a run folder.
        overrides: extra LightningCLI arguments (``"--data.root=/data/PAD-UFES-20"``); ``key=value``
            without dashes is accepted too.
        use_masks: serve lesion masks (``data.use_masks``): ``None`` (default) as the run was trained,
            ``"auto"`` when the dataset has masks (localisation scores need them), or a bool.

    Raises:
        FileNotFoundError: missing checkpoint or config. ValueError / RuntimeError: config and
        checkpoint do not match (the message names both files).
    """
    ckpt_path = Path(checkpoint).expanduser().resolve()
    config_path = find_run_config(ckpt_path)  # fails fast, before the heavy imports
    if use_masks == "auto":
        use_masks = _dataset_has_masks(config_path)
    cfg = rebuildable_config(config_path, use_masks=use_masks)
    args = [a if a.startswith("--") else f"--{a}" for a in overrides]
    try:
        cli = build_from_config(cfg, config_path.parent, args)
    except SystemExit as exit_:
        raise ValueError(
            f"could not rebuild the run from {config_path} (with overrides {list(args)}); "
            "see the argument error printed above."
        ) from exit_
    model, datamodule = cli.model, cli.datamodule
    state = load_checkpoint_weights(model, ckpt_path, config_path)
    dm_state = state.get(type(datamodule).__qualname__)
    if dm_state is not None:
        _ = datamodule.table  # builds the table (and fits the encoder) first so the restore is not overwritten
        datamodule.load_state_dict(dm_state)
    model.eval()
    return TrainedRun(
        model=model, datamodule=datamodule, run_dir=config_path.parent, config_path=config_path, checkpoint=ckpt_path
    )
