"""Multi-device: a 2-process CPU DDP fit of vitatt's smoke config (subprocess with a timeout)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.experiments._support import REPO, child_env

SCRIPT = Path(__file__).with_name("ddp_fit_script.py")


@pytest.mark.slow
def test_two_process_ddp_fit(tmp_path, session_cache):
    out = tmp_path / "ranks"
    env = child_env(tmp_path / "runs", session_cache)
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=420
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("SYNTHETIC DATA: no root given") == 1  # rank 0 only (both ranks print to this stderr)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["run_dir"] == ranks[1]["run_dir"]  # one run folder for both ranks
    run_dir = Path(ranks[0]["run_dir"])
    assert (run_dir / "metrics.json").is_file() and (run_dir / "config.yaml").is_file()

    from dermfuse_data.datamodule import DermDataModule

    val_ids = set(DermDataModule("pad_ufes_20", image_size=64).split_table("val").column("sample_id").to_pylist())
    # every validation sample is seen exactly once (no DistributedSampler padding): shares differ by at most one
    seen = ranks[0]["val_ids"] + ranks[1]["val_ids"]
    assert sorted(seen) == sorted(val_ids)
    assert abs(len(ranks[0]["val_ids"]) - len(ranks[1]["val_ids"])) <= 1
    train = [set(r["train_ids"]) for r in ranks]
    assert len(train[0]) == len(train[1]) == 16 and not train[0] & train[1]  # 2 batches of 8 each, disjoint

    # both ranks' test predictions gathered into one file, each sample once, with the run's intervals
    test_ids = set(DermDataModule("pad_ufes_20", image_size=64).split_table("test").column("sample_id").to_pylist())
    with (run_dir / "test_predictions.csv").open() as handle:
        predicted = [row["sample_id"] for row in csv.DictReader(handle)]
    assert len(predicted) == len(set(predicted)) == min(16, len(test_ids)) and set(predicted) <= test_ids
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert "test/bal_acc" in summary["ci95"] and summary["ci_method"]["samples"] == len(predicted)

    # validation metrics are synchronised: identical on both ranks though each saw half the data
    metrics = [r["val_metrics"] for r in ranks]
    assert "val/bal_acc" in metrics[0] and "val/loss" in metrics[0]
    assert metrics[0].keys() == metrics[1].keys()
    for key in metrics[0]:
        assert metrics[0][key] == pytest.approx(metrics[1][key], abs=1e-6), key
