"""Evaluation never touches training: ``make eval-<paper>`` and the LightningCLI ``test``/``predict`` subcommands
on a finished run leave every file of the run byte-identical and write into a new sub-folder."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, recall_score

from tests.experiments._eval_support import digests, read_rows, split_ids
from tests.experiments._support import QUIET, REPO, metrics_of

TRAINING_FILES = ("config.yaml", "metrics.csv", "metrics.json", "test_confusion_matrix.json")


def new_folder(run_dir: Path, before: set[Path]) -> Path:
    (folder,) = set((run_dir / "eval").iterdir()) - before
    return folder


def _existing(run_dir: Path) -> set[Path]:
    return set((run_dir / "eval").iterdir()) if (run_dir / "eval").is_dir() else set()


@pytest.mark.slow
def test_make_eval_leaves_the_run_untouched_and_reproduces_its_test_metrics(vitatt_run):
    before, folders = digests(vitatt_run), _existing(vitatt_run)
    assert set(TRAINING_FILES) <= set(before) and any(k.startswith("checkpoints/") for k in before)
    ckpt = metrics_of(vitatt_run)["best_checkpoint"]
    result = subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "eval-vitatt", f"CKPT={ckpt}", "EVAL_ARGS=--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert digests(vitatt_run) == before  # every file the run had, byte for byte, and no new one outside eval/
    folder = new_folder(vitatt_run, folders)
    assert folder.name.endswith("-pad_ufes_20-test") and str(folder) in result.stdout
    for name in ("metrics.json", "predictions.csv", "test_confusion_matrix.json"):
        assert (folder / name).is_file(), name
    assert (folder / "figures" / "confusion_matrix.png").stat().st_size > 5000
    record = json.loads((folder / "metrics.json").read_text())
    assert record["checkpoint"] == ckpt and record["split"] == "test" and not record["external"]
    # the same checkpoint on the same split: the run's own test metrics (test/loss aside)
    trained = metrics_of(vitatt_run)["test"]
    for key, value in record["metrics"].items():
        assert value == pytest.approx(trained[key], abs=1e-6), key
    rows = read_rows(folder / "predictions.csv")
    assert len(rows) == record["samples"] == len({r["sample_id"] for r in rows})
    probs = np.array([[float(r[k]) for k in r if k.startswith("prob_")] for r in rows])
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    labels, preds = [int(r["label"]) for r in rows], [int(r["pred"]) for r in rows]
    assert preds == probs.argmax(axis=1).tolist()
    assert record["metrics"]["test/acc"] == pytest.approx(accuracy_score(labels, preds), abs=1e-6)
    names = [k.removeprefix("prob_") for k in rows[0] if k.startswith("prob_")]
    present = sorted(set(labels))
    recalls = recall_score(labels, preds, labels=present, average=None, zero_division=0)
    for k, recall in zip(present, recalls):
        assert record["metrics"][f"test/recall_{names[k]}"] == pytest.approx(recall, abs=1e-6), names[k]


@pytest.mark.slow
def test_lightning_test_and_predict_subcommands_write_into_a_new_sub_folder(vitatt_run, capsys):
    from dermfuse_models.runner.cli import main

    before = digests(vitatt_run)
    config, ckpt = vitatt_run / "config.yaml", metrics_of(vitatt_run)["best_checkpoint"]
    for sub in ("test", "predict"):
        folders = _existing(vitatt_run)
        main([sub, "--config", str(config), f"--ckpt_path={ckpt}", *QUIET])
        os.environ.pop("DERMFUSE_RUN_DIR", None)
        folder = new_folder(vitatt_run, folders)
        assert folder.name.endswith(f"-{sub}") and f"writing into {folder}" in capsys.readouterr().err
        assert digests(vitatt_run) == before, sub
        if sub == "test":
            assert (folder / "metrics.csv").is_file() and (folder / "test_confusion_matrix.json").is_file()
        else:
            rows = read_rows(folder / "predictions.csv")
            assert sorted(r["sample_id"] for r in rows) == sorted(split_ids(vitatt_run))
            assert all(abs(sum(float(v) for k, v in r.items() if k.startswith("prob_")) - 1) < 1e-5 for r in rows)
