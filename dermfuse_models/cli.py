"""``python -m dermfuse_models.cli fit --config experiments/<paper>/config.yaml [--key=value ...]``.

A LightningCLI over any task (``model.class_path``) and the one :class:`DermDataModule`. It links
what the data knows to the model (number of classes, class names, metadata feature widths and
names), gives every run its own folder ``runs/<experiment>/<time>-<dataset>/`` with the resolved
config, checkpoints, a CSV log and a wandb run (offline unless wandb is configured), and after
``fit`` tests the best checkpoint and writes ``metrics.json``.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI

from dermfuse_data.datamodule import DermDataModule


def wandb_mode() -> str:
    """``WANDB_MODE`` if set; ``online`` when an API key is configured; else ``offline``."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    netrc = Path.home() / ".netrc"
    configured = os.environ.get("WANDB_API_KEY") or (netrc.exists() and "api.wandb.ai" in netrc.read_text())
    return "online" if configured else "offline"


def _experiment_name(config_paths: list) -> str:
    for p in config_paths or []:
        path = Path(str(getattr(p, "relative", p)))
        if path.parent.name:
            return path.parent.name
    return "adhoc"


def _scalars(metrics: dict) -> dict:
    return {k: float(v) for k, v in sorted(metrics.items()) if getattr(v, "numel", lambda: 1)() == 1}


class DermCLI(LightningCLI):
    """LightningCLI with dermfuse's data->model links, run folders, loggers and final test."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("parser_kwargs", {"default_env": False})
        super().__init__(None, DermDataModule, *args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--run_dir", type=str | None, default=None,
                            help="output folder (default runs/<experiment>/<time>-<dataset>)")
        links = {"data.num_classes": ["model.init_args.num_classes", "model.init_args.net.init_args.num_classes"],
                 "data.class_names": ["model.init_args.class_names"],
                 "data.meta_groups": ["model.init_args.net.init_args.meta_groups"],
                 "data.meta_names": ["model.init_args.net.init_args.meta_names"]}
        for source, targets in links.items():
            for target in targets:
                parser.link_arguments(source, target, apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        run_dir = cfg.get("run_dir")
        if not run_dir:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            run_dir = f"runs/{_experiment_name(cfg.get('config'))}/{stamp}-{cfg.data.dataset}"
        run_dir = str(Path(run_dir).resolve())
        cfg.run_dir = run_dir
        cfg.trainer.default_root_dir = run_dir
        if cfg.trainer.get("logger") in (None, True):
            loggers = [{"class_path": "pytorch_lightning.loggers.CSVLogger",
                        "init_args": {"save_dir": run_dir, "name": "", "version": ""}}]
            mode = wandb_mode()
            if mode != "disabled":
                loggers.append({"class_path": "pytorch_lightning.loggers.WandbLogger",
                                "init_args": {"save_dir": run_dir, "project": "dermfuse",
                                              "offline": mode != "online",
                                              "name": Path(run_dir).name,
                                              "group": _experiment_name(cfg.get("config"))}})
            cfg.trainer.logger = loggers

    def after_fit(self) -> None:
        """Test the best checkpoint (last weights if none) and write ``metrics.json`` to the run folder."""
        trainer: pl.Trainer = self.trainer
        val = _scalars(trainer.callback_metrics)
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
        if trainer.fast_dev_run:
            best = None
        test = trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best, verbose=False)
        summary = {"run_dir": trainer.default_root_dir, "dataset": self.datamodule.hparams.dataset,
                   "synthetic": self.datamodule.is_synthetic, "seed": self.datamodule.hparams.seed,
                   "split_file": str(self.datamodule.split_file), "best_checkpoint": best,
                   "val": {k: v for k, v in val.items() if k.startswith("val/")},
                   "test": _scalars(test[0]) if test else {}}
        if trainer.is_global_zero:
            path = Path(trainer.default_root_dir) / "metrics.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(summary, indent=2))
            banner = " (SYNTHETIC DATA)" if summary["synthetic"] else ""
            print(f"\nrun folder: {trainer.default_root_dir}{banner}")
            for k, v in summary["test"].items():
                print(f"  {k:<28} {v:.4f}")


def main(args: list[str] | None = None) -> DermCLI:
    """Entry point (``python -m dermfuse_models.cli``)."""
    return DermCLI(args=args)


if __name__ == "__main__":
    main()
