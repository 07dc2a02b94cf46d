"""RESUME=1 continues the latest run of the same experiment + data in its own folder, to max_epochs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from dermfuse_models.runner.runs import find_resumable_run, latest_finished_run
from tests.experiments._support import VITATT_SMOKE

SMOKE = [
    *VITATT_SMOKE,
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=1",
    "--trainer.limit_test_batches=1",
]


def _epochs_with_val(run_dir: Path) -> list[int]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f) if r.get("val/loss")]


@pytest.mark.slow
def test_resume_ends_at_max_epochs(runs_dir):
    from dermfuse_models.runner.cli import main

    first = main(["fit", *SMOKE, "--trainer.max_epochs=1"])  # a finished 1-epoch run, extended to 3
    run_dir = Path(first.trainer.default_root_dir)
    assert _epochs_with_val(run_dir) == [0]
    other = main(["fit", *SMOKE, "--trainer.max_epochs=1", "--data.dataset=ham10000"])  # newer, other data
    assert Path(other.trainer.default_root_dir) != run_dir

    resumed = main(["fit", *SMOKE, "--trainer.max_epochs=3", "--resume=true", "--extend=true"])  # it finished
    assert Path(resumed.trainer.default_root_dir) == run_dir  # same folder, not the newer ham10000 run
    assert resumed.trainer.current_epoch == 3  # ended at max_epochs ...
    assert _epochs_with_val(run_dir) == [0, 1, 2]  # ... with each epoch exactly once
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 3 * 2  # 3 epochs x 2 batches, none repeated
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 3
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]["max_epochs"] == 3


def test_resume_without_a_run_says_what_to_do(runs_dir):
    from dermfuse_models.runner.cli import main

    with pytest.raises(RuntimeError, match="RESUME=1 but no run of 'vitatt'.*without RESUME"):
        main([*SMOKE, "--resume=true"], run=False)


def _fake_run(
    runs: Path, experiment: str, name: str, dataset: str, root=None, options=None, finished=True, synthetic=True
) -> Path:
    folder = runs / experiment / name
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (folder / "config.yaml").write_text(
        yaml.safe_dump({"data": {"dataset": dataset, "root": root, "source_options": options}})
    )
    if finished:
        (folder / "metrics.json").write_text(json.dumps({"synthetic": synthetic}))
    return folder


def test_find_resumable_and_finished_runs(tmp_path):
    import os
    import time

    runs = tmp_path / "runs"
    mass = _fake_run(runs, "mammo_xattn", "1-cbis", "cbis_ddsm", options={"abnormality": "mass"}, finished=False)
    time.sleep(0.01)
    calc = _fake_run(runs, "mammo_xattn", "2-cbis", "cbis_ddsm", options={"abnormality": "calc"})
    real = _fake_run(
        runs, "mammo_xattn", "3-cbis", "cbis_ddsm", root=str(tmp_path), options={"abnormality": "mass"}, synthetic=False
    )
    for i, folder in enumerate((mass, calc, real)):
        os.utime(folder / "checkpoints" / "last.ckpt", (1000 + i, 1000 + i))
        if (folder / "metrics.json").exists():
            os.utime(folder / "metrics.json", (1000 + i, 1000 + i))
    assert find_resumable_run("mammo_xattn", "cbis_ddsm", None, runs, {"abnormality": "mass"}) == mass
    assert find_resumable_run("mammo_xattn", "cbis_ddsm", None, runs, {"abnormality": "calc"}) == calc
    assert find_resumable_run("mammo_xattn", "cbis_ddsm", str(tmp_path), runs, {"abnormality": "mass"}) == real
    assert find_resumable_run("mammo_xattn", "cbis_ddsm", "/elsewhere", runs, {"abnormality": "mass"}) is None
    assert latest_finished_run("mammo_xattn", synthetic=True, runs=runs) == calc  # mass never finished
    assert latest_finished_run("mammo_xattn", synthetic=False, runs=runs) == real
    assert latest_finished_run("vitatt", runs=runs) is None


def test_a_run_resumed_after_a_crash_logs_each_step_and_epoch_once(tmp_path):
    """Crash at step 5 (epoch 2), resume from last.ckpt (step 4): metrics.csv has every row once."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import LearningRateMonitor

    from dermfuse_models.runner.checkpoints import RunCheckpoint, read_checkpoint
    from dermfuse_models.runner.loggers import ResumableCSVLogger
    from tests.experiments._tiny import TinyTask, loader

    class CrashAtStep5(pl.Callback):
        def on_train_batch_start(self, trainer, *args):
            if trainer.global_step == 5:
                raise KeyboardInterrupt  # Lightning's graceful shutdown flushes the log, as a late kill would

    def fit(resume_step, callbacks, ckpt_path=None):
        trainer = pl.Trainer(
            accelerator="cpu",
            max_epochs=4,
            limit_train_batches=2,
            default_root_dir=str(tmp_path),
            logger=ResumableCSVLogger(str(tmp_path), resume_step=resume_step),
            callbacks=[
                RunCheckpoint(dirpath=str(tmp_path / "checkpoints"), monitor="epoch", mode="min"),  # never improves
                LearningRateMonitor(logging_interval="epoch"),
                *callbacks,
            ],
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            log_every_n_steps=1,
        )
        trainer.fit(TinyTask(), loader(), loader(), ckpt_path=ckpt_path)

    with pytest.raises(SystemExit):
        fit(None, [CrashAtStep5()])
    last = tmp_path / "checkpoints" / "last.ckpt"
    step = read_checkpoint(last)["global_step"]
    assert step == 4
    fit(step, [], ckpt_path=str(last))
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows if r["val/loss"]] == [0, 1, 2, 3]
    assert [int(r["step"]) for r in rows if r["train/loss_step"]] == list(range(8))
    assert [int(r["step"]) for r in rows if r["lr-SGD"]] == [0, 2, 4, 6]
