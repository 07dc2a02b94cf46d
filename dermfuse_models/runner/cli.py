"""``python -m dermfuse_models.runner fit --config experiments/<paper>/config.yaml [--key=value ...]``.

A LightningCLI over any task (``model.class_path``) and the one :class:`DermDataModule`. It links
what the data knows to the model (number of classes, class names, metadata feature widths and
names, image size) and gives every run its own folder ``runs/<experiment>/<time>-<dataset>/`` holding:

* ``config.yaml`` (the resolved config), ``metrics.csv`` (CSV log), ``wandb/`` (offline unless
  wandb is configured, see :func:`~dermfuse_models.runner.runs.wandb_mode`);
* ``checkpoints/`` with the best (the config's ``ModelCheckpoint`` monitor) and ``last.ckpt``;
* ``metrics.json`` (after ``fit`` the best checkpoint is tested) and ``figures/`` (the tasks'
  confusion matrix / ROC; segmentation configs add :class:`~dermfuse_models.runner.figures.SegmentationSamplesFigure`).

Trainer defaults (loggers, checkpointing, LR monitor) are configuration: ``experiments/defaults.yaml``
is layered under every ``--config``; the CLI only points the configured loggers at the run folder and
replaces ``bf16``/``16`` precision by fp32 when the run lands on a CPU (bf16 on CPU is ~14x slower
here). ``--resume=true`` (``make ... RESUME=1``) continues the latest run of the same experiment,
dataset and data root from its ``checkpoints/last.ckpt`` in the same folder, up to ``max_epochs``.

Experiment name: the folder of the first ``--config`` (``experiments/vitatt/config.yaml`` ->
``vitatt``), suffixed with the file's stem unless it is ``config`` (``experiments/dualnet/
segmenter.yaml`` -> ``dualnet_segmenter``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelSummary
from pytorch_lightning.cli import LightningCLI

from dermfuse_data.datamodule import DermDataModule
from dermfuse_models.runner.errors import configuration_error, one_line_errors
from dermfuse_models.runner.runs import dataset_tag, find_resumable_run, runs_root
from dermfuse_models.runner.summary import print_summary, run_summary, scalars, write_summary
from dermfuse_models.runner.terminal import RunModelSummary, quiet_third_party

RUN_DIR_ENV = "DERMFUSE_RUN_DIR"
#: trainer defaults every run shares (loggers, checkpointing, LR monitor), layered under every --config
DEFAULTS = (
    Path(__file__).resolve().parents[2] / "experiments" / "defaults.yaml"
)  # handed to DDP child processes so every rank uses one folder


def experiment_name(config_paths: list | None) -> str:
    """Name of the experiment from its first config file (see module doc); ``adhoc`` without one."""
    for p in config_paths or []:
        path = Path(str(getattr(p, "relative", p)))
        if path.parent.name:
            return path.parent.name if path.stem == "config" else f"{path.parent.name}_{path.stem}"
    return "adhoc"


def _is_ddp_child() -> bool:
    """True in a process Lightning launched for rank > 0 (it sets ``LOCAL_RANK`` for those)."""
    return os.environ.get("LOCAL_RANK", "0") != "0"


def _launcher_job_id() -> str | None:
    """The SLURM job id or torchrun run id when an external launcher started this process."""
    for key in ("SLURM_JOB_ID", "TORCHELASTIC_RUN_ID"):
        value = os.environ.get(key)
        if (
            value
            and value.lower() != "none"
            and int(os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", "1"))) > 1
        ):
            return value
    return None


def _options(data_cfg) -> dict:
    options = data_cfg.get("source_options") or {}
    return dict(options.as_dict() if hasattr(options, "as_dict") else options)


def _unique(path: Path) -> Path:
    candidate, n = path, 2
    while candidate.exists():
        candidate, n = path.with_name(f"{path.name}-{n}"), n + 1
    return candidate


def _on_cpu(accelerator: str) -> bool:
    return accelerator == "cpu" or (accelerator in ("auto", "gpu", "cuda") and not torch.cuda.is_available())


class DermCLI(LightningCLI):
    """LightningCLI with dermfuse's data->model links, run folders, loggers, resume and final test."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        # optimisation is the task's own (model.init_args.optimizer / lr_scheduler): no second, top-level way
        kwargs.setdefault("auto_configure_optimizers", False)
        # the defaults go to the parser that holds the trainer's arguments: the subcommand's, or the only one
        parser = {"default_env": False, "default_config_files": [str(DEFAULTS)]}
        main_parser = parser if kwargs.get("run") is False else {"default_env": False}
        kwargs.setdefault("parser_kwargs", {**main_parser, **{c: parser for c in self.subcommands()}})
        self.resume_step: int | None = None
        super().__init__(None, DermDataModule, *args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--run_dir",
            type=str | None,
            default=None,
            help="output folder (default runs/<experiment>/<time>-<dataset>)",
        )
        parser.add_argument(
            "--resume",
            type=bool,
            default=False,
            help="continue the latest run of this experiment+dataset (or --run_dir) from its "
            "checkpoints/last.ckpt, in the same folder, up to trainer.max_epochs",
        )
        links = {
            "data.num_classes": ["model.init_args.num_classes", "model.init_args.net.init_args.num_classes"],
            "data.class_names": ["model.init_args.class_names"],
            "data.meta_groups": ["model.init_args.net.init_args.meta_groups"],
            "data.meta_names": ["model.init_args.net.init_args.meta_names"],
        }
        for source, targets in links.items():
            for target in targets:
                parser.link_arguments(source, target, apply_on="instantiate")
        # one image size: the data's, also the ViTs' position-embedding size (protocol.IMAGE_SIZE_KEYS)
        parser.link_arguments("data.image_size", "model.init_args.net.init_args.img_size", apply_on="parse")
        # a cosine schedule spans the run: CosineAnnealingLR's T_max is the trainer's max_epochs (harmless for others)
        parser.link_arguments("trainer.max_epochs", "model.init_args.lr_scheduler.init_args.T_max", apply_on="parse")

    # -- run folder, resume, loggers -----------------------------------------------------------
    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        experiment = experiment_name(cfg.get("config"))
        run_dir = self._resolve_run_dir(cfg, experiment)
        cfg.run_dir = str(run_dir)
        cfg.trainer.default_root_dir = str(run_dir)
        self._point_loggers_at(cfg.trainer, run_dir)
        self._cpu_precision(cfg.trainer)

    def _point_loggers_at(self, trainer_cfg, run_dir: Path) -> None:
        """Every configured logger writes into the run folder; the CSV log continues on resume."""
        loggers = trainer_cfg.get("logger")
        for logger in loggers if isinstance(loggers, list) else []:
            init_args = logger.get("init_args") if hasattr(logger, "get") else None
            if init_args is None:
                continue
            if init_args.get("save_dir") in (None, "", "."):
                init_args["save_dir"] = str(run_dir)
            if "resume_step" in init_args:
                init_args["resume_step"] = self.resume_step

    def _resolve_run_dir(self, cfg, experiment: str) -> Path:
        if _is_ddp_child() and os.environ.get(RUN_DIR_ENV):
            run_dir = Path(os.environ[RUN_DIR_ENV])
        elif cfg.get("resume"):
            run_dir = (
                Path(cfg.run_dir).resolve()
                if cfg.get("run_dir")
                else find_resumable_run(
                    experiment, cfg.data.dataset, cfg.data.get("root"), source_options=_options(cfg.data)
                )
            )
            if run_dir is None or not (run_dir / "checkpoints" / "last.ckpt").is_file():
                where = run_dir or runs_root() / experiment
                raise RuntimeError(
                    f"RESUME=1 but no run of {experiment!r} on {cfg.data.dataset!r} "
                    f"(root={cfg.data.get('root')}) has checkpoints/last.ckpt under {where}. "
                    "Start a fresh run without RESUME, or pass --run_dir=<run folder>."
                )
        elif cfg.get("run_dir"):
            run_dir = Path(cfg.run_dir).resolve()
        elif _launcher_job_id():
            # SLURM / torchrun start every rank at once: name the folder after the job so they agree
            run_dir = (
                runs_root()
                / experiment
                / f"job{_launcher_job_id()}-{dataset_tag(cfg.data.dataset, _options(cfg.data))}"
            )
        else:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            run_dir = _unique(runs_root() / experiment / f"{stamp}-{dataset_tag(cfg.data.dataset, _options(cfg.data))}")
        if cfg.get("resume") and self.subcommand == "fit":
            last = run_dir / "checkpoints" / "last.ckpt"
            if cfg.get("ckpt_path") in (None, "", "last"):
                cfg.ckpt_path = str(last)
            self.resume_step = int(
                torch.load(cfg.ckpt_path, map_location="cpu", weights_only=False).get("global_step", 0)
            )
            print(f"resuming {run_dir} from {cfg.ckpt_path} (step {self.resume_step})", file=sys.stderr)
        os.environ[RUN_DIR_ENV] = str(run_dir)
        return run_dir

    @staticmethod
    def _cpu_precision(trainer_cfg) -> None:
        """bf16/16-bit precision asked for a run that lands on a CPU becomes fp32 (bf16 is ~14x slower there)."""
        accelerator = str(trainer_cfg.get("accelerator") or "auto")
        precision = str(trainer_cfg.get("precision") or "32-true")
        if _on_cpu(accelerator) and ("bf16" in precision or precision.startswith("16")):
            print(
                f"precision={precision} requested but the run is on CPU: using 32-true "
                "(bf16 on CPU is much slower here)",
                file=sys.stderr,
            )
            trainer_cfg.precision = "32-true"

    def instantiate_classes(self) -> None:
        """LightningCLI's; a class that cannot be built for a user-fixable reason raises a :class:`ConfigurationError`
        carrying the root cause's message (instead of jsonargparse's dump of the whole config)."""
        try:
            super().instantiate_classes()
        except Exception as err:
            wrapped = configuration_error(err)
            if wrapped is None:
                raise
            raise wrapped from err

    def _instantiate_trainer(self, config: dict, callbacks: list) -> pl.Trainer:
        """The trainer, with :class:`RunModelSummary` (no FLOPs column of zeros) unless the summary is off or given."""
        configured = config.get("callbacks") or []
        configured = configured if isinstance(configured, list) else [configured]
        given = any(isinstance(c, ModelSummary) for c in [*callbacks, *configured])
        if config.get("enable_model_summary") is not False and not given:
            callbacks = [*callbacks, RunModelSummary()]
        return super()._instantiate_trainer(config, callbacks)

    # -- after fit: test and summarise ---------------------------------------------------------
    def after_fit(self) -> None:
        """Test the best checkpoint (last weights if none) and write ``metrics.json`` to the run folder."""
        trainer: pl.Trainer = self.trainer
        val = scalars(trainer.callback_metrics)
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
        if trainer.fast_dev_run:
            best = None
        test = trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best, verbose=False)
        cfg = self.config[self.subcommand]
        summary = run_summary(
            trainer,
            self.datamodule,
            experiment_name(cfg.get("config")),
            cfg.get("seed_everything"),
            best,
            val,
            scalars(test[0]) if test else {},
        )
        if trainer.is_global_zero:
            write_summary(trainer.default_root_dir, summary)
            print_summary(summary)


class _ParseOnlyCLI(DermCLI):
    """DermCLI that only parses (no run folder, no instantiation, no training)."""

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass

    def _add_configure_optimizers_method_to_model(self, subcommand) -> None:
        pass

    def _run_subcommand(self, subcommand) -> None:
        pass


def parse_config(args: list[str]):
    """The config ``cli <args>`` would run (e.g. ``["fit", "--config", ...]``), parsed and validated, nothing built."""
    cli = _ParseOnlyCLI(args=args)
    return cli.config[cli.subcommand] if cli.subcommand else cli.config


def main(args: list[str] | None = None, **kwargs) -> DermCLI:
    """Entry point (``python -m dermfuse_models.runner.cli``); ``kwargs`` go to :class:`DermCLI`."""
    return DermCLI(args=args, **kwargs)


def run_from_command_line(args: list[str] | None = None) -> None:
    """``main()`` for shells: dataset and configuration problems print one line, not a traceback (exit 2)."""
    with one_line_errors():
        main(args)


if __name__ == "__main__":
    with quiet_third_party():
        run_from_command_line()
