"""DDP evaluation counts every sample exactly once: 2 CPU ranks (gloo, a subprocess) give what 1 rank gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.experiments._eval_support import read_rows, split_ids
from tests.experiments._support import REPO, metrics_of


@pytest.mark.slow
def test_two_rank_eval_equals_one_rank(vitatt_run, tmp_path, session_cache):
    from dermfuse_models.runner.evaluate import evaluate_checkpoint

    ckpt = metrics_of(vitatt_run)["best_checkpoint"]
    one = evaluate_checkpoint(ckpt, accelerator="cpu", out=tmp_path / "one", progress=False)
    env = {**os.environ, "DERMFUSE_CACHE": str(session_cache), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    for key in ("LOCAL_RANK", "DERMFUSE_RUN_DIR", "DERMFUSE_EVAL_DIR"):
        env.pop(key, None)
    command = [sys.executable, "-m", "dermfuse_models.runner", "eval", "--ckpt", ckpt, "--accelerator", "cpu"]
    result = subprocess.run(
        [*command, "--devices", "2", "--out", str(tmp_path / "two"), "--quiet"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    two = tmp_path / "two"
    records = [json.loads((folder / "metrics.json").read_text()) for folder in (one, two)]
    assert [r["devices"] for r in records] == [1, 2]
    rows = [read_rows(folder / "predictions.csv") for folder in (one, two)]
    ids = [r["sample_id"] for r in rows[1]]
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(split_ids(vitatt_run))  # each test sample once
    assert [r["sample_id"] for r in rows[0]] == ids  # the dataset's order, whatever rank scored a sample
    for a, b in zip(*rows):
        for key in a:
            if key.startswith("prob_"):
                assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-5), (a["sample_id"], key)
    assert records[0]["metrics"].keys() == records[1]["metrics"].keys()
    for key, value in records[0]["metrics"].items():
        assert records[1]["metrics"][key] == pytest.approx(value, abs=1e-5), key
