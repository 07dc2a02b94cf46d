"""Whole runs with faults injected: a kill after a non-improving epoch, RESUME=1 on a finished run, a NaN
from the first steps, two trainings started in the same second (subprocesses; ``slow``)."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dermfuse_models.runner.checkpoints import nonfinite_tensors, read_checkpoint
from tests.experiments._support import EXPERIMENTS, REPO, VITATT_SMOKE, child_env

SCRIPT = Path(__file__).with_name("fault_fit_script.py")
SMOKE = [
    *VITATT_SMOKE,
    "--trainer.limit_train_batches=1",
    "--trainer.limit_val_batches=1",
    "--trainer.limit_test_batches=1",
    "--trainer.log_every_n_steps=1",
]
#: the best checkpoint is epoch 0's and no later epoch improves on it ("epoch", mode min)
NEVER_IMPROVES = {
    "trainer": {
        "callbacks": [
            {
                "class_path": "dermfuse_models.runner.checkpoints.RunCheckpoint",
                "init_args": {"monitor": "epoch", "mode": "min", "filename": "best-{epoch:03d}"},
            }
        ]
    }
}


def _script(args: list[str], runs: Path, cache: Path) -> subprocess.Popen:
    env = child_env(runs, cache)
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _csv_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_kill_after_a_non_improving_epoch_resumes_each_epoch_once_and_a_finished_run_is_left_alone(
    runs_dir, session_cache, tmp_path, capsys
):
    from dermfuse_models.runner.cli import main, run_from_command_line

    overlay = tmp_path / "never_improves.yaml"
    overlay.write_text(yaml.safe_dump(NEVER_IMPROVES))
    args = [*SMOKE, "--config", str(overlay), "--trainer.max_epochs=3"]
    killed = _script(["--kill-at-step", "2", "--", *args], runs_dir, session_cache)  # one step per epoch: epoch 2
    _, err = killed.communicate(timeout=600)
    assert killed.returncode == -9, err.decode()[-3000:]
    (run_dir,) = (runs_dir / "vitatt").iterdir()
    assert not (run_dir / "metrics.json").exists()
    last = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert (last["epoch"], last["global_step"]) == (1, 2)  # the non-improving epoch 1, not the best epoch 0
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best-epoch=000.ckpt", "last.ckpt"]

    resumed = main(["fit", *args, "--resume=true"])
    assert Path(resumed.trainer.default_root_dir) == run_dir
    rows = _csv_rows(run_dir)
    assert [int(r["epoch"]) for r in rows if r.get("val/loss")] == [0, 1, 2]  # each epoch once
    assert [int(r["step"]) for r in rows if r.get("train/loss_step")] == [0, 1, 2]  # each step once
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 3
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["epochs"] == 3 and metrics["best_epoch"] == 0
    val_epoch0 = next(r for r in rows if r.get("val/loss") and r["epoch"] == "0")
    assert metrics["val"]["val/loss"] == pytest.approx(float(val_epoch0["val/loss"]))  # the best's, not the last's
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert len(provenance["resumed"]) == 1 and provenance["dataset_fingerprint"]["rows"] > 0

    before = _hashes(runs_dir)
    capsys.readouterr()
    with pytest.raises(SystemExit) as finished:
        run_from_command_line(["fit", *args, "--resume=true"])
    assert finished.value.code == 0
    assert "already finished (3 of 3 epochs" in capsys.readouterr().err
    assert _hashes(runs_dir) == before  # no file changed, none added

    with pytest.raises(SystemExit) as short:
        run_from_command_line(["fit", *args, "--resume=true", "--extend=true"])
    assert short.value.code == 2 and "trainer.max_epochs=3 is not above the 3 epochs" in capsys.readouterr().err
    assert _hashes(runs_dir) == before

    extended = main(["fit", *args[:-1], "--trainer.max_epochs=4", "--resume=true", "--extend=true"])
    assert Path(extended.trainer.default_root_dir) == run_dir and extended.trainer.current_epoch == 4
    assert [int(r["epoch"]) for r in _csv_rows(run_dir) if r.get("val/loss")] == [0, 1, 2, 3]
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 4


@pytest.mark.slow
def test_a_nan_from_the_first_steps_fails_loudly_and_stays_out_of_the_report(runs_dir, capsys):
    from dermfuse_data.datamodule import DermDataModule
    from dermfuse_models.runner.cli import run_from_command_line
    from dermfuse_models.runner.report import build_report

    with pytest.raises(SystemExit) as caught:
        run_from_command_line(
            ["fit", *SMOKE, "--trainer.max_epochs=2", "--model.init_args.optimizer.init_args.lr=1e10"]
        )
    err = capsys.readouterr().err
    assert caught.value.code == 3 and "Traceback" not in err
    # step 0 (the only step of epoch 0) is finite; its lr=1e10 update makes the next loss NaN
    assert "non-finite training loss (nan) at epoch 1, optimiser step 1 (batch 0 of the epoch)" in err
    train_ids = set(DermDataModule("pad_ufes_20", image_size=64).split_table("train").column("sample_id").to_pylist())
    named = err.split("its samples: ")[1].split(". The step")[0].split(", ")
    assert len(named) == 16 and set(named) <= train_ids  # the offending batch of 16
    (run_dir,) = (runs_dir / "vitatt").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "NonFiniteError" in metrics["reason"] and "test" not in metrics
    for ckpt in (run_dir / "checkpoints").glob("*.ckpt") if (run_dir / "checkpoints").exists() else []:
        assert nonfinite_tensors(read_checkpoint(ckpt)["state_dict"]) == []
    report = build_report(runs_dir, EXPERIMENTS).read_text()
    mentions = [line for line in report.splitlines() if run_dir.name in line]
    assert mentions == [f"- `vitatt/{run_dir.name}`: status failed"]  # listed as left out, in no comparison


@pytest.mark.slow
def test_two_trainings_started_in_the_same_second_get_two_folders(runs_dir, session_cache):
    args = ["--stamp", "20260101-000000", "--", *SMOKE, "--trainer.max_epochs=1", "--trainer.limit_train_batches=1"]
    procs = [_script(args, runs_dir, session_cache) for _ in range(2)]
    errors = [p.communicate(timeout=600)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for e in errors]
    folders = sorted(p.name for p in (runs_dir / "vitatt").iterdir())
    assert folders == ["20260101-000000-pad_ufes_20", "20260101-000000-pad_ufes_20-2"]
    for name in folders:
        run_dir = runs_dir / "vitatt" / name
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["status"] == "finished" and metrics["run_dir"] == str(run_dir)
        assert yaml.safe_load((run_dir / "config.yaml").read_text())["run_dir"] == str(run_dir)
        assert (run_dir / "checkpoints" / "last.ckpt").is_file()
