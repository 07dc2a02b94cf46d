"""``python -m dermfuse_models.runner fit --config experiments/<paper>/config.yaml [--key=value ...]``.

A LightningCLI over any task (``model.class_path``) and the one :class:`DermDataModule`. It links
what the data knows to the model (number of classes, class names, metadata feature widths and
names, image size) and gives every run its own folder ``runs/<experiment>/<time>-<dataset>/`` holding:

* ``config.yaml`` (the resolved config), ``provenance.json`` (:mod:`~dermfuse_models.runner.provenance`),
  ``metrics.csv`` (CSV log), ``wandb/`` (offline unless wandb is configured, see
  :func:`~dermfuse_models.runner.runs.wandb_mode`);
* ``split.csv``: the run's partition (``sample_id,group_id,label,split``), verified on resume
  (:mod:`~dermfuse_models.runner.run_split`; ``--accept_changed_split=true`` goes on with changed data);
* ``checkpoints/`` with the best (the config's :class:`~dermfuse_models.runner.checkpoints.RunCheckpoint`
  monitor) and ``last.ckpt`` (the last completed epoch), written atomically;
* ``metrics.json`` (after ``fit`` the best checkpoint is tested, with grouped bootstrap 95% CIs, ``ci95``;
  ``val`` holds its epoch's validation metrics; a failed fit writes ``"status": "failed"``),
  ``test_predictions.csv`` (every test sample's prediction) and ``figures/`` (the tasks' confusion matrix /
  ROC; segmentation configs add :class:`~dermfuse_models.runner.figures.SegmentationSamplesFigure`).

The folder is created atomically (two runs started in the same second get two folders). The config is
checked against the data before anything is built (:mod:`~dermfuse_models.runner.config_checks`);
every fit stops at its first non-finite loss or gradient (:class:`~dermfuse_models.runner.finite_guard.NonFiniteGuard`).

Trainer defaults (loggers, checkpointing, LR monitor) are configuration: ``experiments/defaults.yaml``
is layered under every ``--config``; the CLI only points the configured loggers at the run folder and
replaces ``bf16``/``16`` precision by fp32 when the run lands on a CPU (bf16 on CPU is ~14x slower
here). ``--resume=true`` (``make ... RESUME=1``) continues the latest run of the same experiment,
dataset and data root from its ``checkpoints/last.ckpt`` in the same folder, up to ``max_epochs``; a
finished run is left untouched unless ``--extend=true`` (:mod:`~dermfuse_models.runner.resume`).

``validate`` / ``test`` / ``predict`` on an existing run (its checkpoint as ``--ckpt_path``, or its
``config.yaml`` whose ``run_dir`` names it) never write into the run's own files: their logs, config,
figures and (``predict``) ``predictions.csv`` go into a new ``<run>/eval/<time>-<subcommand>/``. The
``eval`` command (:mod:`~dermfuse_models.runner.evaluate`) is the full evaluation.

Experiment name: the folder of the first ``--config`` (``experiments/vitatt/config.yaml`` ->
``vitatt``), suffixed with the file's stem unless it is ``config`` (``experiments/dualnet/
segmenter.yaml`` -> ``dualnet_segmenter``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelSummary
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.utilities import rank_zero_only

from dermfuse_data.datamodule import DermDataModule, default_cache_dir
from dermfuse_data.errors import DatasetError
from dermfuse_data.sources import get_source
from dermfuse_models.runner.atomic import folder_os_error
from dermfuse_models.runner.checkpoints import RunCheckpoint
from dermfuse_models.runner.config_checks import check_batch_size, check_config, processes_of
from dermfuse_models.runner.errors import ConfigurationError, configuration_error, message_of
from dermfuse_models.runner.eval_report import PREDICTIONS_CSV, write_rows
from dermfuse_models.runner.finite_guard import NonFiniteGuard
from dermfuse_models.runner.gather import gathered_records
from dermfuse_models.runner.provenance import session_record, write_provenance
from dermfuse_models.runner.resume import resume_point
from dermfuse_models.runner.run_errors import CacheFolderError, ConfigError, RunError, RunFolderError
from dermfuse_models.runner.run_split import record_run_split
from dermfuse_models.runner.runs import (
    create_run_dir,
    dataset_tag,
    find_resumable_run,
    find_run_config,
    runs_root,
    wandb_mode,
)
from dermfuse_models.runner.speed import SpeedOptions
from dermfuse_models.runner.summary import failure_summary, print_summary, run_summary, scalars, write_summary
from dermfuse_models.runner.terminal import RunModelSummary, quiet_third_party
from dermfuse_models.runner.test_intervals import add_test_intervals

RUN_DIR_ENV = "DERMFUSE_RUN_DIR"
#: subcommands that score a trained model: on an existing run they write into <run>/eval/<time>-<subcommand>/
EVALUATING = ("validate", "test", "predict")
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
    """The SLURM job (and step) id or torchrun run id when an external launcher started this process."""
    for key in ("SLURM_JOB_ID", "TORCHELASTIC_RUN_ID"):
        value = os.environ.get(key)
        if (
            value
            and value.lower() != "none"
            and int(os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", "1"))) > 1
        ):
            step = os.environ.get("SLURM_STEP_ID") if key == "SLURM_JOB_ID" else None
            return f"{value}.{step}" if step else value  # two sruns of one job: two folders
    return None


def multi_node_run_dir_problem(run_dir: str | None) -> str | None:
    """Why this process cannot name its run folder alone, or ``None``: several processes started by an
    external launcher (``WORLD_SIZE`` > 1) with neither a job id nor ``--run_dir`` would each pick their own."""
    if run_dir or _launcher_job_id() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    return (
        f"{os.environ['WORLD_SIZE']} processes were launched without a job id, so each would write its own run "
        "folder: give torchrun --rdzv-id=<job id> (the same on every node; SLURM's job id is used automatically) "
        "or pass --run_dir=<shared folder>"
    )


def precision_for(precision: str | int | None, accelerator: str) -> str:
    """The run's precision, or ``32-true`` where half precision would land on a CPU (bf16 is ~14x slower there)."""
    text = str(precision or "32-true")
    if _on_cpu(accelerator) and ("bf16" in text or text.startswith("16")):
        return "32-true"
    return text


def _options(data_cfg) -> dict:
    options = data_cfg.get("source_options") or {}
    return dict(options.as_dict() if hasattr(options, "as_dict") else options)


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
        self.created_run_dir: Path | None = None
        args_given = kwargs.get("args")
        #: the command line as given (config files and overrides), for the explicit-value checks
        self.raw_args = [str(a) for a in args_given] if isinstance(args_given, (list, tuple)) else sys.argv[1:]
        # every fit stops at its first non-finite loss or gradient, whatever the config's callback list
        defaults = dict(kwargs.get("trainer_defaults") or {})
        extra = defaults.get("callbacks") or []
        defaults["callbacks"] = [*(extra if isinstance(extra, list) else [extra]), NonFiniteGuard()]
        kwargs["trainer_defaults"] = defaults
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
        parser.add_argument(
            "--extend",
            type=bool,
            default=False,
            help="with --resume: continue a FINISHED run up to a larger trainer.max_epochs "
            "(without it a finished run is left untouched)",
        )
        parser.add_argument(
            "--accept_changed_split",
            type=bool,
            default=False,
            help="with --resume: go on although the data's split differs from the run's split.csv",
        )
        # channels-last / torch.compile (``speed:`` in every config): a callback added to every run
        parser.add_lightning_class_args(SpeedOptions, "speed")
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
        if self.subcommand:
            try:
                source = get_source(cfg.data.dataset)
            except ValueError as err:  # an unknown dataset: one line naming the closest names
                raise ConfigurationError(err) from err
            check_config(cfg, self.raw_args, source)
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
            # a run's own config.yaml names its folder: validate/test/predict write into their new one
            if init_args.get("save_dir") in (None, "", ".") or self.subcommand in EVALUATING:
                init_args["save_dir"] = str(run_dir)
            if "resume_step" in init_args:
                init_args["resume_step"] = self.resume_step

    def _resolve_run_dir(self, cfg, experiment: str) -> Path:
        fresh = False
        if cfg.get("extend") and not cfg.get("resume"):
            raise ConfigError("--extend=true continues a finished run: add --resume=true (make ... RESUME=1 EXTEND=1)")
        if _is_ddp_child() and os.environ.get(RUN_DIR_ENV):
            run_dir = Path(os.environ[RUN_DIR_ENV])
        elif self.subcommand in EVALUATING and (existing := self._run_of(cfg)) is not None:
            job = _launcher_job_id()  # SLURM / torchrun start every rank at once: the job names the folder
            name = f"job{job}-{self.subcommand}" if job else f"{time.strftime('%Y%m%d-%H%M%S')}-{self.subcommand}"
            run_dir, fresh = existing / "eval" / name, job is None
            print(
                f"{self.subcommand}: writing into {run_dir}; the run's own files are left alone. Per-sample "
                "predictions, other datasets, TTA: python -m dermfuse_models.runner eval --ckpt <checkpoint>",
                file=sys.stderr,
            )
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
                raise RunError(
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
        elif multi_node_run_dir_problem(cfg.get("run_dir")):
            raise RuntimeError(multi_node_run_dir_problem(cfg.get("run_dir")))
        else:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            run_dir, fresh = (
                runs_root() / experiment / f"{stamp}-{dataset_tag(cfg.data.dataset, _options(cfg.data))}",
                True,
            )
        if cfg.get("resume") and self.subcommand == "fit":
            cfg.ckpt_path, self.resume_step = resume_point(
                run_dir, cfg.get("ckpt_path"), bool(cfg.get("extend")), cfg.trainer.get("max_epochs")
            )
            print(f"resuming {run_dir} from {cfg.ckpt_path} (step {self.resume_step})", file=sys.stderr)
        if self.subcommand:
            run_dir = create_run_dir(run_dir, unique=fresh)  # fresh: atomic, another run's name gets a suffix
            self.created_run_dir = run_dir if fresh else None
        os.environ[RUN_DIR_ENV] = str(run_dir)
        return run_dir

    @staticmethod
    def _run_of(cfg) -> Path | None:
        """The existing run folder a validate/test/predict call points at (its checkpoint's, else ``run_dir``)."""
        ckpt = cfg.get("ckpt_path")
        if ckpt not in (None, "", "last", "best", "hpc"):
            try:
                return find_run_config(ckpt).parent
            except FileNotFoundError:
                pass
        folder = Path(cfg.run_dir).expanduser().resolve() if cfg.get("run_dir") else None
        return folder if folder is not None and folder.is_dir() and any(folder.iterdir()) else None

    @staticmethod
    def _cpu_precision(trainer_cfg) -> None:
        """bf16/16-bit precision asked for a run that lands on a CPU becomes fp32 (bf16 is ~14x slower there)."""
        precision = str(trainer_cfg.get("precision") or "32-true")
        if precision_for(precision, str(trainer_cfg.get("accelerator") or "auto")) != precision:
            print(
                f"precision={precision} requested but the run is on CPU: using 32-true "
                "(bf16 on CPU is much slower here)",
                file=sys.stderr,
            )
            trainer_cfg.precision = "32-true"

    # -- before fit: the checks that need the data table, provenance --------------------------
    def before_fit(self) -> None:
        """Refuse a batch larger than the train split; write ``split.csv`` (fresh run) or refuse a resumed run
        whose split changed (:mod:`.run_split`); write ``provenance.json`` (rank 0)."""
        cfg = self.config[self.subcommand]
        dm = self.datamodule
        check_batch_size(
            dm.hparams.batch_size, len(dm.split_table("train")), dm.hparams.dataset, processes_of(cfg.trainer)
        )
        record_run_split(
            cfg.run_dir,
            dm,
            resume=bool(cfg.get("resume")),
            accept_changed=bool(cfg.get("accept_changed_split")),
            write=self.trainer.is_global_zero,
        )
        if rank_zero_only.rank == 0:
            data = {"dataset": dm.hparams.dataset, "root": dm.hparams.root, "synthetic": dm.is_synthetic}
            record = session_record(self.raw_args, dm.table, wandb_mode(), data)
            write_provenance(self.trainer.default_root_dir, record, resumed=bool(cfg.get("resume")))

    def instantiate_classes(self) -> None:
        """Build data, model and trainer. A build that fails (bad data, full cache disk) leaves no empty run; one
        that fails for a user-fixable reason raises a :class:`ConfigurationError` carrying the root cause's message
        (instead of jsonargparse's dump of the whole config)."""
        try:
            super().instantiate_classes()
        except BaseException as err:
            self._remove_empty_run_dir()
            wrapped = configuration_error(err) if isinstance(err, Exception) and not isinstance(err, RunError) else None
            if wrapped is None:
                raise
            raise wrapped from err

    def _remove_empty_run_dir(self) -> None:
        """Remove the run folder this command created, if nothing was written into it yet."""
        if self.created_run_dir is not None:
            with contextlib.suppress(OSError):
                self.created_run_dir.rmdir()

    def _run_subcommand(self, subcommand: str) -> None:
        """Run it; a fit that raises is recorded as failed in ``metrics.json`` (rank 0), then re-raised.

        A config refused by :meth:`before_fit` records nothing and removes the new, still empty run folder.
        """
        try:
            super()._run_subcommand(subcommand)
        except ConfigError:
            self._remove_empty_run_dir()
            raise
        except Exception as err:
            if subcommand == "fit" and self.trainer.is_global_zero:
                cfg = self.config[subcommand]
                record = failure_summary(self.trainer, experiment_name(cfg.get("config")), cfg.data.dataset, err)
                with contextlib.suppress(OSError):  # the disk that failed the run may not take this either
                    write_summary(self.trainer.default_root_dir, record)
            raise

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
        """Test the best checkpoint (last weights if none); write ``test_predictions.csv`` and ``metrics.json``
        (with grouped bootstrap 95% CIs, :mod:`~dermfuse_models.runner.test_intervals`) to the run folder.

        ``val`` holds the validation metrics logged in the best checkpoint's epoch (:class:`RunCheckpoint`).
        """
        trainer: pl.Trainer = self.trainer
        val = scalars(trainer.callback_metrics)
        checkpoint = trainer.checkpoint_callback
        best = getattr(checkpoint, "best_model_path", "") or None
        if trainer.fast_dev_run:
            best = None
        if best and isinstance(checkpoint, RunCheckpoint) and checkpoint.best_val_metrics:
            val = checkpoint.best_val_metrics
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
        if best and isinstance(checkpoint, RunCheckpoint):
            summary["best_epoch"] = checkpoint.best_epoch
        if trainer.is_global_zero:
            add_test_intervals(summary, self.model, self.datamodule, trainer.default_root_dir)
            write_summary(trainer.default_root_dir, summary)
            print_summary(summary)

    def after_predict(self) -> None:
        """``predictions.csv`` (sample_id, label, pred, prob_<class>) of a classifier in the output folder (rank 0)."""
        trainer: pl.Trainer = self.trainer
        records = gathered_records(trainer, trainer.predict_loop.predictions or [])
        if not trainer.is_global_zero or not records or np.ndim(records[0].get("probs")) != 1:
            return
        names = list(getattr(self.model, "class_names", None) or range(len(records[0]["probs"])))
        header = ["sample_id", "label", "pred", *[f"prob_{n}" for n in names]]
        rows = ([r["sample_id"], int(r["label"]), int(np.argmax(r["probs"])), *map(float, r["probs"])] for r in records)
        path = write_rows(Path(trainer.default_root_dir) / PREDICTIONS_CSV, header, rows)
        print(f"predictions of {len(records)} samples: {path}", file=sys.stderr)


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


def exit_on_user_error(err: BaseException) -> None:
    """Print a problem the user can fix (dataset, config, run folder, checkpoint, failed fit) and exit
    with its status, without a traceback; anything else is re-raised."""
    if isinstance(err, (DatasetError, ConfigurationError)):
        print(f"\n{message_of(err)}", file=sys.stderr)
        raise SystemExit(2) from None
    if isinstance(err, RunError):
        print(f"\n{err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    cause = folder_os_error(err)
    if cause is not None:
        print(f"\n{folder_error(cause)}", file=sys.stderr)
        raise SystemExit(2) from None
    raise err


def folder_error(cause: OSError) -> RunError:
    """A full / read-only disk named by where the write failed: the dataset cache (a file under it, or no
    file name and raised inside ``dermfuse_data``, which writes only there) or else the run folder."""
    cache = default_cache_dir()
    target = Path(cause.filename).resolve() if cause.filename else None
    in_data_code = any(
        f"{os.sep}dermfuse_data{os.sep}" in frame.f_code.co_filename
        for frame, _ in traceback.walk_tb(cause.__traceback__)
    )
    if (target is not None and target.is_relative_to(cache)) or (target is None and in_data_code):
        return CacheFolderError(target.parent if target else cache, cause)
    return RunFolderError(target.parent if target else os.environ.get(RUN_DIR_ENV, runs_root()), cause)


def run_from_command_line(args: list[str] | None = None) -> None:
    """``main()`` for shells: problems the user can fix print their message, not a traceback (exit 2;
    3 for a fit that failed on a non-finite value; 0 for ``RESUME=1`` on a finished run)."""
    try:
        main(args)
    except Exception as err:
        exit_on_user_error(err)


if __name__ == "__main__":
    with quiet_third_party():
        run_from_command_line()
