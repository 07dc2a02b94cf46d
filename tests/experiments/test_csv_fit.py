"""A user's own data through the csv source: a smoke run trains on its miniature and is evaluated like any run."""

from __future__ import annotations

import json

import pytest

from tests.experiments._eval_support import train_tiny
from tests.experiments._support import metrics_of


@pytest.mark.slow
def test_a_smoke_run_trains_on_the_csv_source_and_evaluates(tmp_path, session_cache):
    from dermfuse_models.runner.evaluate import evaluate_checkpoint

    run = train_tiny(tmp_path / "run", "vitatt", "pad_ufes_20", "--data.dataset=csv")
    metrics = metrics_of(run)
    assert metrics["dataset"] == "csv" and metrics["synthetic"] is True
    assert metrics["meta_features"] == ["sex", "site", "age"]  # as the spec declares them; biopsy leaks the label
    assert {"test/recall_nevus", "test/recall_melanoma", "test/recall_keratosis"} <= set(metrics["test"])
    folder = evaluate_checkpoint(metrics["best_checkpoint"], split="val", out=tmp_path / "eval", progress=False)
    record = json.loads((folder / "metrics.json").read_text())
    assert record["dataset"] == "csv" and record["split"] == "val" and "val/bal_acc" in record["metrics"]
