"""What counts as a run: the ``metrics.json`` of an evaluation inside a run folder never does."""

from __future__ import annotations

import json
import os

from dermfuse_models.runner.report_runs import collect_runs
from dermfuse_models.runner.runs import latest_finished_run, run_metric_files


def _metrics(folder, mtime: int, **summary) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metrics.json"
    path.write_text(json.dumps({"experiment": "vitatt", "dataset": "pad_ufes_20", **summary}))
    os.utime(path, (mtime, mtime))


def test_evaluations_and_predictions_inside_a_run_are_not_runs(tmp_path):
    """``make eval-`` / ``predict-`` write a newer ``metrics.json`` under ``<run>/eval/`` or ``<run>/predictions/``;
    the latest finished run (what ``explain``/``eval``/``predict`` use without CKPT) and the report stay on the run."""
    run = tmp_path / "vitatt" / "20261201-120000-pad_ufes_20"
    _metrics(run, 1_000, status="finished", test={"test/acc": 0.5})
    _metrics(run / "eval" / "20261201-130000-pad_ufes_20-test", 2_000, metrics={"test/acc": 0.5})
    _metrics(run / "predictions" / "20261201-140000-images", 3_000, images=3)
    sweep_run = tmp_path / "vitatt" / "sweep-1" / "00-meta_features=null"
    _metrics(sweep_run, 500, status="finished", test={"test/acc": 0.4})
    _metrics(sweep_run / "eval" / "01-test_meta_missing_fraction=0.5", 4_000, metrics={"test/acc": 0.3})

    assert sorted(p.parent for p in run_metric_files(tmp_path)) == sorted([run, sweep_run])
    assert latest_finished_run("vitatt", runs=tmp_path) == run
    assert [r.folder for r in collect_runs(tmp_path, ["vitatt"])] == [sweep_run, run]
