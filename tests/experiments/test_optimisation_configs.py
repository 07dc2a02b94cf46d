"""Optimisation in the configs is LightningCLI's ``model.init_args.optimizer`` / ``lr_scheduler``, one way only.

Each config keeps the optimiser, lr, weight decay and schedule it had as string switches; the CLI links
``trainer.max_epochs`` to ``CosineAnnealingLR``'s ``T_max`` (a cosine spans the run); the old keys and
LightningCLI's top-level ``--optimizer`` are refused; a 3-epoch CLI fit's lr follows cosine over 3 epochs.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from tests.experiments._support import EXPERIMENTS, QUIET

COSINE = "torch.optim.lr_scheduler.CosineAnnealingLR"
#: config -> (optimizer class, lr, weight decay, scheduler class, scheduler arguments) as before the migration
EXPECTED = {
    "dualnet/config.yaml": ("torch.optim.Adam", 1e-4, 0.0, COSINE, {}),
    "dualnet/segmenter.yaml": ("torch.optim.Adam", 1e-4, 0.0, COSINE, {}),
    "eamnet/config.yaml": (
        "torch.optim.Adam",
        1e-3,
        0.0,
        "torch.optim.lr_scheduler.CosineAnnealingWarmRestarts",
        {"T_0": 10, "T_mult": 2},
    ),
    "mammo_xattn/config.yaml": (
        "torch.optim.Adam",
        1e-4,
        1e-5,
        "torch.optim.lr_scheduler.ReduceLROnPlateau",
        {"mode": "min", "factor": 0.1, "patience": 5},
    ),
    "msvit/config.yaml": ("torch.optim.AdamW", 5e-5, 0.05, COSINE, {}),
    "vitatt/config.yaml": ("torch.optim.Adam", 1e-4, 0.0, COSINE, {}),
}
#: smoke profile -> the lr (and weight decay) it sets over its config's optimizer
SMOKE = {
    "dualnet/smoke.yaml": ("dualnet/config.yaml", 5e-4, 0.0),
    "dualnet/segmenter_smoke.yaml": ("dualnet/segmenter.yaml", 1e-3, 0.0),
    "eamnet/smoke.yaml": ("eamnet/config.yaml", 1e-3, 0.0),
    "mammo_xattn/smoke.yaml": ("mammo_xattn/config.yaml", 1e-3, 1e-5),
    "msvit/smoke.yaml": ("msvit/config.yaml", 5e-4, 0.0),
    "vitatt/smoke.yaml": ("vitatt/config.yaml", 5e-4, 0.0),
}


def _parse(*configs: str, extra: tuple[str, ...] = ()):
    from dermfuse_models.runner.cli import parse_config

    args = [a for c in configs for a in ("--config", str(EXPERIMENTS / c))]
    return parse_config(["fit", *args, *extra])


def _optimisation(cfg) -> tuple[str, float, float, str | None, dict]:
    model = cfg.model.init_args
    opt, sched = model.optimizer, model.lr_scheduler
    sched_args = dict(sched.init_args) if sched is not None else {}
    return (opt.class_path, opt.init_args.lr, opt.init_args.weight_decay, sched and sched.class_path, sched_args)


@pytest.mark.parametrize("config", sorted(EXPECTED))
def test_configs_keep_their_optimiser_and_schedule(config):
    cfg = _parse(config)
    opt_class, lr, wd, sched_class, sched_args = _optimisation(cfg)
    want = EXPECTED[config]
    assert (opt_class, lr, wd, sched_class) == want[:4]
    assert want[4].items() <= sched_args.items()
    if sched_class == COSINE:  # the cosine spans the run: T_max is the trainer's max_epochs, written once
        assert sched_args["T_max"] == cfg.trainer.max_epochs
    else:
        assert "T_max" not in sched_args  # the link is harmless for other schedulers
    for old in ("lr", "weight_decay", "scheduler", "max_epochs_hint", "t0", "t_mult"):
        assert old not in cfg.model.init_args, f"{config} still has the string switch {old!r}"


@pytest.mark.parametrize("smoke", sorted(SMOKE))
def test_smoke_profiles_change_the_lr_not_the_optimiser(smoke):
    config, lr, wd = SMOKE[smoke]
    smoke_cfg = _optimisation(_parse(config, smoke))
    full = _optimisation(_parse(config))
    assert smoke_cfg[0] == full[0] and smoke_cfg[3] == full[3]
    assert smoke_cfg[1:3] == (lr, wd)


def test_t_max_follows_trainer_max_epochs_and_is_never_set_twice():
    cfg = _parse("vitatt/config.yaml", "vitatt/smoke.yaml", extra=("--trainer.max_epochs=3",))
    assert cfg.model.init_args.lr_scheduler.init_args.T_max == 3
    given = _parse("vitatt/config.yaml", extra=("--model.init_args.lr_scheduler.init_args.T_max=99",))
    assert given.model.init_args.lr_scheduler.init_args.T_max == given.trainer.max_epochs  # the link wins


def test_optimisation_is_varied_by_key():
    """Sweeps and overrides set ``model.init_args.optimizer.init_args.<arg>``; the rest stays."""
    cfg = _parse(
        "mammo_xattn/config.yaml",
        extra=("--model.init_args.optimizer.init_args.lr=3e-4", "--model.init_args.lr_scheduler.init_args.patience=2"),
    )
    assert _optimisation(cfg)[:3] == ("torch.optim.Adam", 3e-4, 1e-5)
    assert cfg.model.init_args.lr_scheduler.init_args.patience == 2
    sgd = _parse(
        "vitatt/config.yaml",
        extra=(
            "--model.init_args.optimizer=torch.optim.SGD",
            "--model.init_args.optimizer.init_args.lr=0.01",
            "--model.init_args.optimizer.init_args.momentum=0.9",
        ),
    )
    assert (sgd.model.init_args.optimizer.class_path, sgd.model.init_args.optimizer.init_args.momentum) == (
        "torch.optim.SGD",
        0.9,
    )


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("--model.init_args.lr=1e-3", "Option 'lr' is not accepted"),  # the old string switches are gone
        ("--model.init_args.scheduler=cosine", "Option 'scheduler' is not accepted"),
        ("--optimizer=torch.optim.SGD", "unrecognized arguments: --optimizer"),  # no second, top-level way
        ("--model.init_args.optimizer=torch.optim.NoSuchOptimizer", "has no attribute 'NoSuchOptimizer'"),
    ],
)
def test_bad_optimisation_config_is_refused(bad, message, capsys):
    with pytest.raises(SystemExit):
        _parse("vitatt/config.yaml", extra=(bad,))
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_a_three_epoch_cli_fit_follows_cosine_over_three_epochs(runs_dir):
    """The CLI builds CosineAnnealingLR with T_max = trainer.max_epochs: the logged lr of epoch e is
    ``lr0 (1 + cos(pi e / 3)) / 2`` (LearningRateMonitor, experiments/defaults.yaml)."""
    from dermfuse_models.runner.cli import main

    cli = main(
        [
            "fit",
            "--config",
            str(EXPERIMENTS / "vitatt/config.yaml"),
            "--config",
            str(EXPERIMENTS / "vitatt/smoke.yaml"),
            "--trainer.max_epochs=3",
            "--trainer.limit_train_batches=1",
            "--trainer.limit_val_batches=1",
            "--trainer.limit_test_batches=1",
            *QUIET,
        ]
    )
    (config,) = cli.trainer.lr_scheduler_configs
    assert config.scheduler.T_max == 3 and config.interval == "epoch"
    with (Path(cli.trainer.default_root_dir) / "metrics.csv").open() as f:
        logged = [float(row["lr-Adam"]) for row in csv.DictReader(f) if row.get("lr-Adam")]
    lr0 = cli.model.hparams.optimizer["init_args"]["lr"]
    assert logged == pytest.approx([lr0 * (1 + math.cos(math.pi * e / 3)) / 2 for e in range(3)])
