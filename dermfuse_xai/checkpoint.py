"""Rebuild a trained run (task + DataModule) from a checkpoint and the run folder's resolved ``config.yaml``.

``python -m dermfuse_models.cli fit`` writes ``<run>/config.yaml`` (the fully resolved LightningCLI
config) and ``<run>/checkpoints/*.ckpt``. :func:`load_run` finds the config next to or above the
checkpoint, rebuilds the model and the data through ``DermCLI`` (so the data -> model links --
number of classes, metadata blocks and names -- are applied exactly as in training), restores the
weights and the DataModule's fitted metadata encoder from the checkpoint, and never starts training,
loggers or a new run folder.
"""
from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

#: top-level config keys the ``run=False`` DermCLI parser accepts (``fit`` adds ckpt_path etc.)
_CONFIG_KEYS = ("seed_everything", "model", "data", "optimizer", "lr_scheduler")


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
                                "`python -m dermfuse_models.cli fit` (e.g. <run>/checkpoints/last.ckpt).")
    folder = ckpt.parent
    for _ in range(max_levels + 1):
        candidate = folder / "config.yaml"
        if candidate.is_file():
            return candidate
        folder = folder.parent
    raise FileNotFoundError(
        f"no config.yaml next to or up to {max_levels} folders above {ckpt}; the explain command needs the "
        "run folder written by `python -m dermfuse_models.cli fit` (it holds the resolved config.yaml)."
    )


def _sanitised_config(config_path: Path, use_masks: bool | None) -> dict:
    """The run's model/data config without fit-only keys, loggers or accelerator settings."""
    cfg = yaml.safe_load(config_path.read_text()) or {}
    if "model" not in cfg or "data" not in cfg:
        raise ValueError(f"{config_path} has no model/data sections; is it a dermfuse run's resolved config.yaml?")
    out = {k: cfg[k] for k in _CONFIG_KEYS if k in cfg}
    # a bare Trainer (not used for explanation) on the CPU; no loggers, no checkpoint callbacks
    out["trainer"] = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False,
                      "enable_progress_bar": False, "enable_model_summary": False}
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
    from dermfuse_models.cli import DermCLI

    run_dir = config_path.parent
    raw = yaml.safe_load(config_path.read_text()) or {}
    data_cfg = raw.get("data") or {}
    if use_masks is None:
        task = data_cfg.get("task", "classification")
        use_masks = bool(data_cfg.get("use_masks")) or (
            task == "classification" and get_source(data_cfg.get("dataset", "pad_ufes_20")).has_masks)
    cfg = _sanitised_config(config_path, use_masks)
    args = [a if a.startswith("--") else f"--{a}" for a in overrides]
    with tempfile.TemporaryDirectory(prefix="dermfuse-explain-") as tmp:
        tmp_cfg = Path(tmp) / "config.yaml"
        tmp_cfg.write_text(yaml.safe_dump(cfg, sort_keys=False))
        argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when it also sees our own argv
        try:
            cli = DermCLI(args=["--config", str(tmp_cfg), "--run_dir", str(run_dir), *args], run=False)
        except SystemExit as exit_:
            raise ValueError(f"could not rebuild the run from {config_path} (with overrides {list(args)}); "
                             "see the argument error printed above.") from exit_
        finally:
            sys.argv = argv
    model, datamodule = cli.model, cli.datamodule

    try:
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception:  # Lightning checkpoints may pickle callback states; the file is the user's own run
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    if "state_dict" not in state:
        raise ValueError(f"{ckpt_path} is not a Lightning checkpoint (no 'state_dict').")
    missing, unexpected = model.load_state_dict(state["state_dict"], strict=False)
    if missing or unexpected:
        raise RuntimeError(
            f"{ckpt_path} does not match the model built from {config_path}: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}. "
            "Was the config edited after training?"
        )
    dm_state = state.get(type(datamodule).__qualname__)
    if dm_state is not None:
        _ = datamodule.table  # builds the table (and fits the encoder) first so the restore is not overwritten
        datamodule.load_state_dict(dm_state)
    model.eval()
    return LoadedRun(model=model, datamodule=datamodule, run_dir=run_dir, config_path=config_path, checkpoint=ckpt_path)
