"""What a command prints: a smoke fit without third-party noise (banner once, no FLOPs column, aligned metrics,
where the outputs are), and user errors as one line naming the closest valid name."""

from __future__ import annotations

import re

import pytest

from tests.experiments._support import EXPERIMENTS

MAMMO = ["--config", str(EXPERIMENTS / "mammo_xattn" / "config.yaml"), "--config"]
MAMMO += [str(EXPERIMENTS / "mammo_xattn" / "smoke.yaml")]
NOISE = {
    "litlogger tip": "litlogger",
    "wandb anonymous setting": "anonymous setting",
    "pytree deprecation": "LeafSpec",
    "FLOPs column of zeros": "FLOPs",
    "LightningCLI args warning": "args parameter is intended",
    "model summary notice": "Skipping setting a default",
    "jsonargparse dump": "Given value",
}


@pytest.mark.slow
def test_smoke_fit_prints_the_banner_once_and_none_of_the_noise(mammo_smoke_run):
    runs, done = mammo_smoke_run
    output = done.stdout + done.stderr
    assert output.count("SYNTHETIC DATA: no root given") == 1 and output.count("say nothing about the paper") == 1
    assert {what: text for what, text in NOISE.items() if text in output} == {}
    assert "Total params" in output and "MammoXAttn" in output  # the model summary itself stays
    run_dir = next((runs / "mammo_xattn").iterdir())
    assert f"run folder: {run_dir} (SYNTHETIC DATA" in output
    assert f"wandb sync {run_dir / 'wandb'}/offline-run-*" in output and any((run_dir / "wandb").glob("offline-run-*"))
    assert "figures/: confusion_matrix.png, roc_curves.png" in output
    value = r"  test/\S+ +(\d\.\d{4})(  95% CI \[\d\.\d{4}, \d\.\d{4}\])?$"
    metric_lines = [m for line in done.stdout.splitlines() if (m := re.match(value, line))]
    assert len(metric_lines) >= 6 and len({m.start(1) for m in metric_lines}) == 1  # values in one column


def _main_stderr(argv: list[str], capsys) -> tuple[int, str]:
    from dermfuse_models.runner.__main__ import main

    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


def test_unknown_backbone_is_one_line_naming_close_matches(runs_dir, capsys):
    argv = ["fit", *MAMMO, "--model.init_args.net.init_args.backbone=resnet_typo", "--trainer.max_epochs=1"]
    code, err = _main_stderr(argv, capsys)
    assert code == 2
    errors = [line for line in err.splitlines() if "resnet_typo" in line]
    assert len(errors) == 1, err
    assert errors[0].startswith("error: unknown timm model 'resnet_typo'; did you mean ")
    assert "resnet50t" in errors[0] and "timm.list_models('resnet*')" in errors[0]
    assert "Traceback" not in err and "Subtypes" not in err and "Given value" not in err
    assert not (runs_dir / "mammo_xattn").exists() or not any((runs_dir / "mammo_xattn").rglob("*.ckpt"))


def test_unknown_dataset_is_one_line_naming_the_closest(runs_dir, capsys):
    code, err = _main_stderr(["fit", *MAMMO, "--data.dataset=cbis_dsm", "--trainer.max_epochs=1"], capsys)
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("error: unknown dataset 'cbis_dsm'; did you mean 'cbis_ddsm'?")
    assert "Traceback" not in err and "Given value" not in err


def test_a_bug_while_building_keeps_its_traceback(monkeypatch):
    """Only user-fixable root causes become one line: an AttributeError inside a constructor is a bug."""
    from dermfuse_models.nets import mammo_xattn
    from dermfuse_models.runner.cli import run_from_command_line

    def broken(*args, **kwargs):
        raise AttributeError("a bug")

    monkeypatch.setattr(mammo_xattn, "create_encoder", broken)
    with pytest.raises(Exception) as info:
        run_from_command_line(["fit", *MAMMO, "--trainer.max_epochs=1", "--run_dir=/tmp/never-used"])
    assert not isinstance(info.value, SystemExit)


def test_unknown_command_names_the_closest(capsys):
    code, err = _main_stderr(["fitt"], capsys)
    assert code == 2 and err.splitlines()[-1] == "error: unknown command 'fitt'; did you mean 'fit'?"


def test_unknown_names_name_close_matches():
    from dermfuse_data.sources import get_source
    from dermfuse_models.encoders import create_encoder
    from dermfuse_models.runner.explain import latest_checkpoint
    from dermfuse_xai.methods import method_named

    with pytest.raises(ValueError, match=r"unknown timm model 'densenet210'; did you mean densenet201, "):
        create_encoder("densenet210")
    with pytest.raises(ValueError, match=r"unknown dataset 'isic2018'; did you mean 'isic2018_task1'\? \(known: "):
        get_source("isic2018")
    with pytest.raises(ValueError, match=r"'lime2' is unknown; did you mean 'lime'\? \(choose from gradcam, "):
        method_named("lime2")
    with pytest.raises(ValueError, match=r"unknown experiment 'mamo_xattn'; did you mean 'mammo_xattn'\?"):
        latest_checkpoint("mamo_xattn")
    assert create_encoder("test_resnet", num_classes=0) is not None  # a known name builds as before


def test_metric_names_of_any_length_stay_aligned():
    from dermfuse_models.runner.terminal import metrics_table

    table = metrics_table({"test/acc": 0.5, "test/recall_a_very_long_class_name_over_28_chars": 0.25}).splitlines()
    assert [line.index("0.") for line in table] == [len("  test/recall_a_very_long_class_name_over_28_chars  ")] * 2
