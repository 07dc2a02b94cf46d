"""Sweep files: wandb format, the expected grid offline, and one local run whose override reaches the model."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from dermfuse_models.runner.sweep import (
    expand_command,
    format_value,
    grid_runs,
    load_sweep,
    main,
    print_seed_summary,
    profile_command,
    run_local,
    with_seed_axis,
)
from tests.experiments._support import EXPERIMENTS, PAPERS, QUIET, require_paper

NET = "model.init_args.net.init_args"
#: paper -> (number of runs, one override every grid must contain)
EXPECTED = {
    "vitatt": (12, {"data.meta_features": "top5", f"{NET}.fusion": "late", "data.meta_soft_one_hot": 0.01}),
    "dualnet": (6, {NET: {"use_segmentation": False}}),
    "eamnet": (11, {NET: {"use_mrcf": False, "use_cmam": False, "use_eab": False, "memory_size": 64}}),
    "msvit": (
        12,
        {
            "model.init_args.net": {"init_args": {"scales": [1], "attn_reg_weight": 0.0, "patch_size": 16}},
            "model.init_args.class_weights": "null",
        },
    ),
    "mammo_xattn": (
        20,
        {f"{NET}.fusion": "clinical", f"{NET}.modality_dropout": 0.0, "data.test_meta_missing_fraction": 0.5},
    ),
}


@pytest.mark.parametrize("paper", PAPERS)
def test_sweep_file_is_a_wandb_grid(paper):
    require_paper(paper)
    path = EXPERIMENTS / paper / "sweep.yaml"
    sweep = load_sweep(path)
    assert sweep["method"] == "grid" and isinstance(sweep["command"], list)
    assert sweep["command"][:2] == ["${env}", "${interpreter}"] and sweep["command"][-1] == "${args}"
    assert f"experiments/{paper}/config.yaml" in sweep["command"]
    runs = grid_runs(sweep)
    n_runs, must_have = EXPECTED[paper]
    assert len(runs) == n_runs
    assert must_have in runs or any(all(r.get(k) == v for k, v in must_have.items()) for r in runs)
    assert len({json.dumps(r, sort_keys=True) for r in runs}) == n_runs  # no duplicate runs


@pytest.mark.parametrize("paper", PAPERS)
def test_sweep_parameters_are_cli_keys(paper):
    """Every override (with the smoke profile, as run offline) parses in LightningCLI."""
    from dermfuse_models.runner.cli import parse_config

    require_paper(paper)
    path = EXPERIMENTS / paper / "sweep.yaml"
    sweep = load_sweep(path)
    base = profile_command(sweep, path, dataset=None)
    for overrides in grid_runs(sweep):
        command = expand_command(base, overrides, sweep.get("program"))
        args = command[command.index("fit") + 1 :]
        cfg = parse_config(["fit", *args])
        for key, value in overrides.items():
            node = cfg
            for part in key.split("."):
                node = node[part]
            if isinstance(value, dict):
                _assert_contains(node, value, key)
            else:
                expected = yaml.safe_load(format_value(value))
                assert (node.as_dict() if hasattr(node, "as_dict") else node) == expected, key


def _assert_contains(node, expected: dict, key: str) -> None:
    """Every (nested) item of a dict override is in the parsed config at ``key``."""
    for k, v in expected.items():
        if isinstance(v, dict):
            _assert_contains(node[k], v, f"{key}.{k}")
        else:
            got = node[k]
            assert (got.as_dict() if hasattr(got, "as_dict") else got) == v, (key, k)


def test_grid_product_and_constants():
    sweep = {
        "command": ["${args}"],
        "method": "grid",
        "parameters": {"a": {"values": [1, 2]}, "b": {"value": "x"}, "c": {"values": [True, False]}},
    }
    assert grid_runs(sweep) == [
        {"b": "x", "a": 1, "c": True},
        {"b": "x", "a": 1, "c": False},
        {"b": "x", "a": 2, "c": True},
        {"b": "x", "a": 2, "c": False},
    ]
    with pytest.raises(ValueError, match="wandb server"):
        grid_runs({**sweep, "method": "bayes"})


def test_bad_sweep_files_are_refused(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("command: python train.py\nparameters: {a: {values: [1]}}\n")
    with pytest.raises(ValueError, match="block list"):
        load_sweep(path)
    path.write_text("command: [python, '${args}']\nparameters: {a: {values: [null, 1]}}\n")
    with pytest.raises(ValueError, match='string \\"null\\"'):
        load_sweep(path)
    path.write_text("command: [python]\nparameters: {a: {values: [1]}}\n")
    with pytest.raises(ValueError, match="args"):
        load_sweep(path)


def test_command_gets_overlay_smoke_or_root():
    path = EXPERIMENTS / "vitatt" / "sweep.yaml"
    sweep = load_sweep(path)
    smoke = expand_command(
        profile_command(sweep, path, "isic2019", None, ["--trainer.max_epochs=1"]), {"data.meta_features": "top5"}
    )
    assert smoke[0] == sys.executable and "${env}" not in smoke
    configs = [smoke[i + 1] for i, c in enumerate(smoke) if c == "--config"]
    assert [c.rsplit("experiments/", 1)[1] for c in configs] == [
        "vitatt/config.yaml",
        "vitatt/data/isic2019.yaml",
        "vitatt/smoke.yaml",
    ]
    assert smoke[-2:] == ["--trainer.max_epochs=1", "--data.meta_features=top5"]
    real = expand_command(profile_command(sweep, path, None, "/data/PAD"), {"data.meta_features": "all"})
    assert "--data.root=/data/PAD" in real and not any("smoke" in c for c in real)
    with pytest.raises(FileNotFoundError, match="pad_ufes_20"):
        profile_command(sweep, path, "nope", None)


def test_dry_run_lists_without_running(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert main([str(EXPERIMENTS / "vitatt" / "sweep.yaml"), "--dry-run", "--max-runs", "2"]) == 0
    out = capsys.readouterr().out
    assert "[1/2]" in out and "[2/2]" in out and "[3/" not in out and "planned" in out
    assert "--data.meta_features=null" in out and "--data.meta_features=all" not in out  # grid order: file order
    assert "--data.meta_soft_one_hot=0.0" in out and "--data.meta_soft_one_hot=0.01" in out


@pytest.mark.slow
def test_one_local_sweep_run_reaches_the_model(runs_dir):
    """The first vitatt run (image only) trains locally and its resolved config has the override."""
    records = run_local(
        EXPERIMENTS / "vitatt" / "sweep.yaml",
        max_runs=1,
        sweep_dir=runs_dir / "sweep",
        extra_args=[
            *QUIET,
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=1",
            "--trainer.limit_test_batches=1",
        ],
    )
    assert len(records) == 1 and records[0]["returncode"] == 0
    run_dir = runs_dir / "sweep" / "00-meta_features=null_fusion=tokens_meta_soft_one_hot=0.0"
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["data"]["meta_features"] is None  # the override (config.yaml says all)
    assert resolved["model"]["init_args"]["net"]["init_args"]["backbone"] == "vit_tiny_patch16_224"  # smoke
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["meta_features"] == [] and metrics["synthetic"] is True and "test/bal_acc" in metrics["test"]
    overrides = {"data.meta_features": "null", f"{NET}.fusion": "tokens", "data.meta_soft_one_hot": 0.0}
    assert json.loads((run_dir / "sweep_run.json").read_text())["overrides"] == overrides


def test_seed_axis_runs_every_combination_once_per_seed(tmp_path, capsys, monkeypatch):
    sweep = load_sweep(EXPERIMENTS / "vitatt" / "sweep.yaml")
    seeded = with_seed_axis(sweep, [0, 1, 2])
    runs = grid_runs(seeded)
    assert len(runs) == 3 * len(grid_runs(sweep)) and "seed_everything" not in sweep["parameters"]
    assert [r["seed_everything"] for r in runs[:3]] == [0, 1, 2]  # seeds vary fastest
    assert {r["data.meta_features"] for r in runs[:3]} == {"null"}
    assert with_seed_axis(sweep, None) is sweep
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert main([str(EXPERIMENTS / "vitatt" / "sweep.yaml"), "--dry-run", "--seeds", "4", "5"]) == 0
    out = capsys.readouterr().out
    assert (
        f"[{2 * len(grid_runs(sweep))}/{2 * len(grid_runs(sweep))}]" in out
        and "--seed_everything=4" in out
        and "--seed_everything=5" in out
    )


def test_seed_summary_is_mean_and_sd_per_combination(capsys):
    records = [
        {"overrides": {"a": 1, "seed_everything": s}, "metrics": {"test/acc": v}} for s, v in [(0, 0.5), (1, 0.7)]
    ] + [{"overrides": {"a": 2, "seed_everything": 0}, "metrics": {"test/acc": 0.9}}]
    print_seed_summary(records)
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("a=1") and "0.6000 +- 0.1414" in line and " 2 " in line for line in lines)
    assert any(line.startswith("a=2") and "0.9000" in line and "+-" not in line for line in lines)
