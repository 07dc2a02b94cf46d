"""Rebuild a trained run (task + DataModule) from a checkpoint and the run folder's resolved ``config.yaml``.

``python -m dermfuse_models.runner.cli fit`` writes ``<run>/config.yaml`` (the fully resolved LightningCLI
config) and ``<run>/checkpoints/*.ckpt``. :func:`load_run` finds the config next to or above the
checkpoint, rebuilds the model and the data through ``DermCLI`` (so the data -> model links --
number of classes, metadata blocks and names -- are applied exactly as in training), restores the
weights and the DataModule's fitted metadata encoder from the checkpoint, and never starts training,
loggers or a new run folder.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import yaml



@dataclass
class LoadedRun:
    """A trained run, ready to explain.

    Attributes:
        model: the LightningModule (e.g. ``ClassificationTask``) with the checkpoint's weights, in eval mode.
        datamodule: the run's ``DermDataModule`` (metadata encoder restored from the checkpoint).
        run_dir: the run folder (where ``config.yaml`` was found). config_path: that file.
        checkpoint: the checkpoint path.
    """

    model: torch.nn.Module
    datamodule: object
    run_dir: Path
    config_path: Path
    checkpoint: Path


def find_run_config(checkpoint: str | Path, max_levels: int = 3) -> Path:
    """``config.yaml`` in the checkpoint's folder or up to ``max_levels`` folders above it."""
    ckpt = Path(checkpoint).expanduser().resolve()
    if not ckpt.is_file():
        raise FileNotFoundError(f"checkpoint {ckpt} does not exist; pass the .ckpt written by "
                                "`python -m dermfuse_models.runner.cli fit` (e.g. <run>/checkpoints/last.ckpt).")
    folder = ckpt.parent
    for _ in range(max_levels + 1):
        candidate = folder / "config.yaml"
        if candidate.is_file():
            return candidate
        folder = folder.parent
    raise FileNotFoundError(
        f"no config.yaml next to or up to {max_levels} folders above {ckpt}; the explain command needs the "
        "run folder written by `python -m dermfuse_models.runner.cli fit` (it holds the resolved config.yaml)."
    )


def _sanitised_config(config_path: Path, use_masks: bool | None) -> dict:
    """The run's model/data config for rebuilding (:func:`dermfuse_models.runner.runs.rebuildable_config`),
    with ``data.use_masks`` set when ``use_masks`` is given."""
    from dermfuse_models.runner.runs import rebuildable_config

    out = rebuildable_config(yaml.safe_load(config_path.read_text()) or {}, config_path)
    if use_masks is not None:
        out["data"] = {**out["data"], "use_masks": bool(use_masks)}
    return out


def load_run(checkpoint: str | Path, overrides: list[str] | tuple[str, ...] = (),
             use_masks: bool | None = None) -> LoadedRun:
    """Rebuild a run's model and DataModule and load the checkpoint's weights (see module doc).

    Args:
        checkpoint: a ``.ckpt`` inside a run folder.
        overrides: extra LightningCLI arguments (``"--data.root=/data/PAD-UFES-20"``); ``key=value``
            without dashes is accepted too.
        use_masks: serve lesion masks (``data.use_masks``); ``None`` = when the dataset's source has
            masks (needed for the localisation scores).

    Raises:
        FileNotFoundError: missing checkpoint or config. ValueError / RuntimeError: config and
        checkpoint do not match (the message names both files).
    """
    ckpt_path = Path(checkpoint).expanduser().resolve()
    config_path = find_run_config(ckpt_path)  # fails fast, before the heavy imports below

    from dermfuse_data.sources import get_source
    from dermfuse_models.runner.runs import build_from_config, load_checkpoint_weights

    run_dir = config_path.parent
    data_cfg = (yaml.safe_load(config_path.read_text()) or {}).get("data") or {}
    if use_masks is None:
        task = data_cfg.get("task", "classification")
        use_masks = bool(data_cfg.get("use_masks")) or (
            task == "classification" and get_source(data_cfg.get("dataset", "pad_ufes_20")).has_masks)
    args = [a if a.startswith("--") else f"--{a}" for a in overrides]
    try:
        cli = build_from_config(_sanitised_config(config_path, use_masks), run_dir, args)
    except SystemExit as exit_:
        raise ValueError(f"could not rebuild the run from {config_path} (with overrides {list(args)}); "
                         "see the argument error printed above.") from exit_
    model, datamodule = cli.model, cli.datamodule
    state = load_checkpoint_weights(model, ckpt_path, config_path)
    dm_state = state.get(type(datamodule).__qualname__)
    if dm_state is not None:
        _ = datamodule.table  # builds the table (and fits the encoder) first so the restore is not overwritten
        datamodule.load_state_dict(dm_state)
    model.eval()
    return LoadedRun(model=model, datamodule=datamodule, run_dir=run_dir, config_path=config_path, checkpoint=ckpt_path)
