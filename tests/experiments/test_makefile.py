"""The Makefile wires DATASET overlays, RESUME, the DualNet stages, sweeps and the report."""

from __future__ import annotations

import re

import pytest

from tests.experiments._support import REPO, make


def test_help_lists_targets():
    out = make("help").stdout
    for target in (
        "setup",
        "test",
        "train-%",
        "train-dualnet",
        "train-dualnet-seg",
        "train-dualnet-cls",
        "sweep-%",
        "report",
        "explain-%",
        "DATASET=",
        "RESUME=1",
        "SEEDS=",
        "CKPT=",
    ):
        assert target in out


def test_train_uses_overlay_smoke_and_resume():
    out = make("-n", "train-vitatt", "DATASET=isic2019", "RESUME=1", "ARGS=--trainer.max_epochs=2").stdout
    line = next(x for x in out.splitlines() if "dermfuse_models.runner fit" in x)
    assert (
        line.index("experiments/vitatt/config.yaml")
        < line.index("experiments/vitatt/data/isic2019.yaml")
        < line.index("experiments/vitatt/smoke.yaml")
    )
    assert line.rstrip().endswith("--resume=true --trainer.max_epochs=2")
    real = make("-n", "train-vitatt", "DATA_ROOT=/data/PAD").stdout
    line = next(x for x in real.splitlines() if "dermfuse_models.runner fit" in x)
    assert "data/pad_ufes_20.yaml" in line and "--data.root=/data/PAD" in line and "smoke" not in line
    assert "--resume" not in line
    extend = make("-n", "train-vitatt", "RESUME=1", "EXTEND=1", "ARGS=--trainer.max_epochs=9").stdout
    line = next(x for x in extend.splitlines() if "dermfuse_models.runner fit" in x)
    assert line.rstrip().endswith("--resume=true --extend=true --trainer.max_epochs=9")


def test_help_groups_every_target():
    out = make("help").stdout
    groups = [line[:-1] for line in out.splitlines() if re.fullmatch(r"[a-z]+:", line)]
    assert groups == ["train", "evaluate", "data", "models", "develop", "setup"]  # no untagged "other"
    makefile = (REPO / "Makefile").read_text()
    targets = re.findall(r"^([a-zA-Z_%-]+):.*## ", makefile, flags=re.M)
    assert {"check", "synth", "profile", "lint", "format", "explain-%", "report"} <= set(targets)
    listed = re.findall(r"^  \x1b\[36m(\S+)", out, flags=re.M)
    assert sorted(listed) == sorted(targets)  # every target, once
    assert "wandb sync runs/<paper>/<run>/wandb/offline-run-*" in out and "Python API" in out


def test_mistyped_paper_names_the_closest():
    result = make("train-mamo_xattn")
    assert result.returncode == 2
    assert "unknown paper 'mamo_xattn'; did you mean 'mammo_xattn'?" in result.stderr
    assert make("check").returncode == 2 and "needs DATASET=<name> and DATA_ROOT=<folder>" in make("check").stderr
    out = make("-n", "check", "DATASET=ph2", "DATA_ROOT=/d").stdout
    line = next(x for x in out.splitlines() if "dermfuse_data check" in x)
    assert line.rstrip().endswith("-m dermfuse_data check --dataset ph2 --root /d")


def test_unknown_dataset_names_the_choices():
    result = make("train-vitatt", "DATASET=nope")
    assert result.returncode != 0 and "pad_ufes_20" in result.stderr and "isic2019" in result.stderr


@pytest.mark.parametrize("paper", ["dualnet"])
def test_dualnet_pipeline_targets(paper):
    out = make("-n", "train-dualnet").stdout
    assert "train-dualnet-seg" in out and "train-dualnet-cls" in out
    seg = make("-n", "train-dualnet-seg").stdout
    assert "segmenter.yaml" in seg and "segmenter_smoke.yaml" in seg
    cls = make("-n", "train-dualnet-cls", "SEG_CKPT=/x/last.ckpt", "DATASET=isic2019").stdout
    assert (
        "dermfuse_models.runner two-stage fit" in cls
        and "--seg_ckpt=/x/last.ckpt" in cls
        and "dualnet/data/isic2019.yaml" in cls
    )
    refused = make("train-dualnet", "DATA_ROOT=/data/HAM10000")
    assert refused.returncode != 0 and "SEG_DATA_ROOT" in refused.stderr


def test_sweep_and_report_targets():
    out = make("-n", "sweep-msvit", "SWEEP_ARGS=--dry-run", "ARGS=--trainer.max_epochs=1").stdout
    assert "dermfuse_models.runner sweep experiments/msvit/sweep.yaml --dataset isic2017" in out
    assert out.rstrip().endswith("--dry-run -- --trainer.max_epochs=1")
    assert "dermfuse_models.runner report" in make("-n", "report").stdout


def test_explain_target_defaults_to_the_latest_run():
    latest = make("-n", "explain-msvit").stdout
    assert "dermfuse_models.runner explain --experiment=msvit --n=16" in latest
    given = make("-n", "explain-vitatt", "CKPT=/r/best.ckpt", "N=4", "XAI_ARGS=--methods relevancy").stdout
    assert "dermfuse_models.runner explain --ckpt=/r/best.ckpt --n=4 --methods relevancy" in given


def test_seeds_run_one_fit_per_seed_before_the_overrides():
    out = make("-n", "train-vitatt", "SEEDS=0 1 2", "ARGS=--trainer.max_epochs=2").stdout
    line = next(x for x in out.splitlines() if "dermfuse_models.runner fit" in x)
    assert line.startswith("set -e; for seed in 0 1 2; do")
    assert "--config experiments/vitatt/smoke.yaml" in line
    assert "--seed_everything=$seed --trainer.max_epochs=2; done" in line
    single = make("-n", "train-vitatt").stdout
    assert "seed_everything" not in single and "for seed" not in single
    cls = make("-n", "train-dualnet-cls", "SEEDS=3 4").stdout
    assert "for seed in 3 4" in cls and "two-stage fit" in cls
    sweep = make("-n", "sweep-vitatt", "SEEDS=0 1", "SWEEP_ARGS=--dry-run").stdout
    assert "--seeds 0 1 --dry-run" in sweep


def test_seeds_with_resume_is_refused():
    result = make("train-vitatt", "SEEDS=0 1", "RESUME=1")
    assert result.returncode != 0 and "RESUME=1 continues one run" in result.stderr
