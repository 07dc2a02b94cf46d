"""``python -m dermfuse_models.runner explain``: end to end on tiny vitatt / eamnet fits, and its clear errors."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dermfuse_models.runner.explain import main
from dermfuse_models.runner.rebuild import find_run_config

REPO = Path(__file__).resolve().parents[2]


def _env(cache: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DERMFUSE_CACHE": str(cache),
        "WANDB_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "WANDB_SILENT": "true",
        "OMP_NUM_THREADS": "1",
    }


def _fit_tiny(experiment: str, run: Path, env: dict[str, str]) -> Path:
    """One epoch of two batches of ``experiments/<experiment>`` (config + smoke) into ``run``; its ``last.ckpt``."""
    fit = [
        sys.executable,
        "-m",
        "dermfuse_models.runner.cli",
        "fit",
        "--config",
        f"experiments/{experiment}/config.yaml",
        "--config",
        f"experiments/{experiment}/smoke.yaml",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1",
        "--trainer.limit_test_batches=1",
        "--trainer.enable_progress_bar=false",
        f"--run_dir={run}",
    ]
    done = subprocess.run(fit, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = run / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    return ckpt


def _explain(ckpt: Path, env: dict[str, str], *options: str) -> subprocess.CompletedProcess:
    """``python -m dermfuse_models.runner explain --ckpt CKPT --quiet OPTIONS`` in a subprocess."""
    explain = [sys.executable, "-m", "dermfuse_models.runner", "explain", "--ckpt", str(ckpt), *options, "--quiet"]
    return subprocess.run(explain, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_missing_checkpoint_or_run_config_is_one_clear_message(tmp_path, capsys):
    assert main(["explain", "--ckpt", str(tmp_path / "nope.ckpt")]) == 2
    err = capsys.readouterr().err
    assert "nope.ckpt does not exist" in err and "Traceback" not in err
    lonely = tmp_path / "a" / "b" / "last.ckpt"
    lonely.parent.mkdir(parents=True)
    lonely.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no config.yaml"):
        find_run_config(lonely)
    (tmp_path / "a" / "config.yaml").write_text("model: {}\n")
    assert find_run_config(lonely) == tmp_path / "a" / "config.yaml"
    assert main(["explain", "--ckpt", str(lonely), "--n", "0"]) == 2
    assert "--n must be at least 1" in capsys.readouterr().err


def test_experiment_without_a_finished_run_says_what_to_train(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DERMFUSE_RUNS", str(tmp_path / "runs"))
    assert main(["explain", "--experiment", "msvit"]) == 2
    err = capsys.readouterr().err
    assert "no finished run of 'msvit'" in err and "make train-msvit" in err and "Traceback" not in err
    with pytest.raises(SystemExit):  # exactly one of --ckpt / --experiment
        main(["explain", "--ckpt", "a.ckpt", "--experiment", "msvit"])


def test_experiment_picks_the_best_checkpoint_of_the_latest_finished_run(tmp_path, monkeypatch):
    from dermfuse_models.runner.explain import latest_checkpoint

    monkeypatch.setenv("DERMFUSE_RUNS", str(tmp_path / "runs"))
    for name, age in (("old", 1000), ("new", 2000), ("unfinished", 3000)):
        run = tmp_path / "runs" / "vitatt" / name
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "best.ckpt").write_bytes(b"x")
        (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
        if name != "unfinished":
            (run / "metrics.json").write_text(json.dumps({"best_checkpoint": str(run / "checkpoints" / "best.ckpt")}))
            os.utime(run / "metrics.json", (age, age))
    assert latest_checkpoint("vitatt") == tmp_path / "runs" / "vitatt" / "new" / "checkpoints" / "best.ckpt"


def test_run_config_is_rebuilt_without_fit_only_keys_loggers_or_accelerator(tmp_path):
    from dermfuse_models.runner.rebuild import rebuildable_config

    config = tmp_path / "config.yaml"
    config.write_text(
        "seed_everything: 0\nckpt_path: null\nresume: false\nrun_dir: /x\n"
        "trainer: {accelerator: gpu, devices: 8, logger: [{class_path: a.B}]}\n"
        "model: {class_path: m.M}\ndata: {dataset: isic2017, use_masks: false}\n"
    )
    cfg = rebuildable_config(config, use_masks=True)
    assert set(cfg) == {"seed_everything", "model", "data", "trainer"}
    assert cfg["trainer"]["accelerator"] == "cpu" and cfg["trainer"]["logger"] is False
    assert cfg["data"] == {"dataset": "isic2017", "use_masks": True}
    assert rebuildable_config(config, use_masks=None)["data"]["use_masks"] is False
    config.write_text("trainer: {}\n")
    with pytest.raises(ValueError, match="no model/data sections"):
        rebuildable_config(config)


def test_a_cuda_device_that_is_not_there_is_a_clear_error(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["explain", "--ckpt", str(tmp_path / "x.ckpt"), "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.slow
def test_explain_cli_end_to_end_on_a_tiny_vitatt_fit(tmp_path):
    env = _env(tmp_path / "cache")
    run = tmp_path / "run"
    ckpt = _fit_tiny("vitatt", run, env)
    done = _explain(ckpt, env, "--n", "3", "--n-samples", "16", "--deletion-steps", "5")
    assert done.returncode == 0, done.stderr[-3000:]
    out = run / "explain"
    assert "explanations written to" in done.stdout
    for name in (
        "explanations.png",
        "clinical_features.png",
        "scores.json",
        "scores.csv",
        "scores_mean.csv",
        "feature_attributions.csv",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name

    payload = json.loads((out / "scores.json").read_text())
    assert payload["checkpoint"] == str(ckpt) and payload["dataset"] == "pad_ufes_20"
    assert payload["synthetic"] is True and payload["split"] == "test" and payload["n_images"] == 3
    # ViT Grad-CAM (the paper's method for MSViT, on the patch tokens) first, then TMME relevancy and rollout
    assert payload["methods"] == ["vit_gradcam", "relevancy", "rollout", "kernel_shap", "lime"]
    assert set(payload["mean"]) == {"vit_gradcam/last_block", "relevancy", "rollout"}
    assert {"deletion_auc", "deletion_auc_random", "deletion_auc_gain", "randomization_spearman"} <= set(
        payload["mean"]["relevancy"]
    )
    assert len(payload["per_image"]) == 3 * 3
    shap = payload["feature_attributions"]["kernel_shap"]
    # PAD-UFES-20's clinical features by name, e.g. smoke / age / region, never one-hot column indices
    assert {"smoke", "age", "region"} <= set(shap["names"]) and len(shap["per_image"]) == 3
    assert shap["attribution_sum"] == pytest.approx(shap["output_delta"], abs=2e-3)

    with (out / "scores.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 9 and {"sample_id", "map", "pred_name", "label_name", "deletion_auc_gain"} <= set(rows[0])
    with (out / "feature_attributions.csv").open() as fh:
        features = {r["feature"] for r in csv.DictReader(fh)}
    assert features == set(shap["names"])


@pytest.mark.slow
def test_explain_cli_end_to_end_on_a_tiny_eamnet_segmentation_fit(tmp_path):
    """A segmentation checkpoint (EAM-Net on the synthetic PH2 miniature) is explained with Seg-Grad-CAM,
    scored against the lesion masks, and reported with Dice instead of classes; no crash, no traceback."""
    env = _env(tmp_path / "cache")
    run = tmp_path / "run"
    done = _explain(_fit_tiny("eamnet", run, env), env, "--n", "3", "--deletion-steps", "4")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    out = run / "explain"
    for name in ("explanations.png", "scores.json", "scores.csv"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert not list(out.glob("cross_attention*"))  # CMAM channel attention is not drawn as a heatmap
    payload = json.loads((out / "scores.json").read_text())
    assert payload["task"] == "segmentation" and payload["methods"] == ["seg_gradcam"]
    assert payload["dataset"] == "ph2" and payload["n_images"] == 3
    rows = payload["per_image"]
    assert len(rows) == 3 * 2 and all(0.0 <= r["dice"] <= 1.0 for r in rows)
    decoder = [r for r in rows if r["map"] == "seg_gradcam/decoder"]
    assert all(r["mask_fraction"] is not None and r["energy_in_mask"] is not None for r in decoder)
