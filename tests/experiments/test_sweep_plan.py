"""Sweeps without waste: equivalent combinations run once, test-time parameters are scored on the trained checkpoint."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import yaml

from dermfuse_models.runner.sweep import grid_runs, load_sweep, main, run_local
from dermfuse_models.runner.sweep_plan import for_wandb, plan_runs
from tests.experiments._support import EXPERIMENTS, QUIET

NET = "model.init_args.net.init_args"
MISSING = "data.test_meta_missing_fraction"


def test_mammography_grid_trains_each_model_once():
    sweep = load_sweep(EXPERIMENTS / "mammo_xattn" / "sweep.yaml")
    plan = plan_runs(sweep, grid_runs(sweep))
    # 3 fusions x 2 dropouts + image-only once + clinical-only once (modality dropout is a no-op for both)
    assert len(plan) == 20 and sum(p.train for p in plan) == 8
    assert sum(p.evaluate for p in plan) == 15 and sum(p.same_as is not None for p in plan) == 5
    for p in plan:
        assert MISSING not in p.train_overrides  # never a training parameter
        if p.overrides[f"{NET}.fusion"] == "image":
            assert p.trained_by == plan[0].trained_by + 12 and (p.same_as is None) == (p.index == 12)
        elif p.overrides[f"{NET}.fusion"] == "clinical":
            assert p.trained_by == 16 and (p.same_as is None) == (p.index in (16, 17))
        elif p.evaluate and not p.train:
            trained = plan[p.trained_by]
            assert trained.train and trained.train_overrides == p.train_overrides
    wandb, notes = for_wandb(sweep)
    assert "dermfuse" not in wandb and MISSING not in wandb["parameters"] and len(wandb["parameters"]) == 2
    assert any("eval" in n for n in notes) and any("--local" in n for n in notes)


def test_dry_run_shows_trainings_evaluations_and_equivalents(capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert main([str(EXPERIMENTS / "mammo_xattn" / "sweep.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "20 combinations, 8 trainings, 7 scored on a trained checkpoint" in out
    assert out.count("planned: trained + eval") == 8 and out.count("(equivalent)") == 5
    assert "planned: ckpt of #0 + eval" in out


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"test_time": ["data.seed"]}, "names 'data.seed', which is not one of the parameters"),
        ({"equivalent": [{"when": {"data.meta_features": "none"}, "ignore": []}]}, "none of the parameter's values"),
        ({"equivalent": [{"when": {}}]}, "needs 'when"),
        ({"skip": []}, "may hold 'equivalent' and 'test_time' only"),
    ],
)
def test_a_wrong_dermfuse_block_names_the_file(tmp_path, block, message):
    sweep = yaml.safe_load((EXPERIMENTS / "vitatt" / "sweep.yaml").read_text())
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({**sweep, "dermfuse": block}))
    with pytest.raises(ValueError, match=message) as err:
        load_sweep(path)
    assert str(path) in str(err.value)


@pytest.mark.slow
def test_local_sweep_runs_an_equivalent_combination_once_and_trains_no_test_time_value(runs_dir, tmp_path):
    sweep = yaml.safe_load((EXPERIMENTS / "vitatt" / "sweep.yaml").read_text())
    sweep["parameters"] = {"data.meta_features": {"values": ["null", "all"]}, MISSING: {"values": [0.0, 1.0]}}
    sweep["dermfuse"] = {
        "equivalent": [{"when": {"data.meta_features": "null"}, "ignore": [MISSING]}],  # image only: no metadata
        "test_time": [MISSING],
    }
    paper = tmp_path / "vitatt"  # the sweep's folder holds the smoke profile it runs
    paper.mkdir()
    shutil.copy(EXPERIMENTS / "vitatt" / "smoke.yaml", paper)
    path = paper / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    extra = [*QUIET, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]
    records = run_local(path, sweep_dir=runs_dir / "sweep", extra_args=extra)
    assert [r["returncode"] for r in records] == [0, 0, 0, 0]
    trained = sorted(p.parent.parent.name for p in (runs_dir / "sweep").glob("*/checkpoints/last.ckpt"))
    assert trained == ["00-meta_features=null", "02-meta_features=all"]  # 4 combinations, 2 trainings
    for run in trained:
        overrides = json.loads((runs_dir / "sweep" / run / "sweep_run.json").read_text())["overrides"]
        assert MISSING not in overrides
    evals = sorted(p.parent.name for p in (runs_dir / "sweep").glob("*/eval/*/metrics.json"))
    assert evals == ["00-test_meta_missing_fraction=0.0", "02-test_meta_missing_fraction=0.0"] + [
        "03-test_meta_missing_fraction=1.0"
    ]
    assert records[1]["plan"].same_as == 0 and "command" not in records[1] and "eval_dir" not in records[1]
    assert records[1]["metrics"] == records[0]["metrics"] and "test/bal_acc" in records[0]["metrics"]
    blanked = json.loads(next((runs_dir / "sweep").glob("02-*/eval/03-*/metrics.json")).read_text())
    assert blanked["overrides"] == [f"{MISSING}=1.0"] and blanked["checkpoint"].startswith(str(runs_dir / "sweep"))


def test_a_failed_evaluation_is_recorded_and_its_folder_not_passed_on(monkeypatch, tmp_path, capsys):
    import dermfuse_models.runner.evaluate as evaluate
    import dermfuse_models.runner.sweep as sweep

    def out_of_memory(ckpt, out, overrides, progress):
        monkeypatch.setenv(evaluate.EVAL_DIR_ENV, str(out))  # as eval_folder does before scoring
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(sweep, "best_checkpoint", lambda run_dir: run_dir / "checkpoints" / "best.ckpt")
    monkeypatch.setattr(evaluate, "evaluate_checkpoint", out_of_memory)
    rc, _ = sweep.evaluate_run(tmp_path / "run", {MISSING: 0.5}, tmp_path / "run" / "eval" / "01")
    assert rc == 2 and evaluate.EVAL_DIR_ENV not in os.environ
    err = capsys.readouterr().err
    assert "RuntimeError: CUDA out of memory" in err and f"{MISSING}=0.5" in err
