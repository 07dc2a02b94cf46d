"""Every paper's smoke profile completes a ``fast_dev_run`` fit + test on CPU on its synthetic miniature.

(DualNet's two stages run in test_two_stage.py.) Each fit takes 20-60 s on 2 shared cores: ``slow``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.experiments._support import EXPERIMENTS, QUIET, metrics_of, overlays, require_paper


@pytest.mark.slow
@pytest.mark.parametrize("paper", ["vitatt", "msvit", "mammo_xattn", "eamnet"])
def test_smoke_fast_dev_run(paper, runs_dir):
    from dermfuse_models.runner.cli import main

    folder = require_paper(paper)
    first = overlays(paper)[0]
    cli = main(
        [
            "fit",
            "--config",
            str(folder / "config.yaml"),
            "--config",
            str(folder / "data" / f"{first}.yaml"),
            "--config",
            str(folder / "smoke.yaml"),
            "--trainer.fast_dev_run=true",
            *QUIET,
        ]
    )
    run_dir = Path(cli.trainer.default_root_dir)
    assert run_dir.parent == runs_dir / paper and run_dir.name.split("-", 2)[2].startswith(
        cli.datamodule.hparams.dataset
    )
    metrics = metrics_of(run_dir)
    assert metrics["synthetic"] is True and metrics["test"], metrics
    assert cli.trainer.precision == "32-true"
    if cli.datamodule.hparams.task == "segmentation":
        assert "test/dice" in metrics["test"]
        assert (run_dir / "figures" / "segmentation_samples.png").stat().st_size > 5000
    else:
        assert "test/bal_acc" in metrics["test"]


def test_smoke_configs_exist_for_every_config():
    for config in EXPERIMENTS.glob("*/config.yaml"):
        assert (config.parent / "smoke.yaml").is_file(), f"{config.parent.name} has no smoke.yaml"
