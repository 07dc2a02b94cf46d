"""EAM-Net learns real lesions: the 20 real PH2 images (``../shared/real_images/ph2``, full-size BMPs with
1-bit and 24-bit masks), 128 px, CPU. Skipped where the folder is absent."""

from __future__ import annotations

import pytest
import torch

from tests.data.test_real_images import REAL_IMAGES
from tests.experiments._support import EXPERIMENTS, QUIET, metrics_of

EPOCHS = 25


@pytest.fixture
def one_thread():
    """A tiny net on a shared 2-core machine: one thread is several times faster than two fighting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow  # ~2.5 min on the shared 2-core machine
def test_eamnet_on_the_real_ph2_images_reaches_test_dice_above_0_8(runs_dir, tmp_path, one_thread):
    if not (REAL_IMAGES / "ph2" / "PH2Dataset").is_dir():
        pytest.skip("../shared/real_images is absent (only the developers' checkout has it)")
    from dermfuse_models.runner.cli import main

    cli = main(
        [
            "fit",
            "--config",
            str(EXPERIMENTS / "eamnet" / "config.yaml"),
            "--config",
            str(EXPERIMENTS / "eamnet" / "data" / "ph2.yaml"),
            "--config",
            str(EXPERIMENTS / "eamnet" / "smoke.yaml"),  # the narrow CPU net (every module on)
            *QUIET,
            f"--data.root={REAL_IMAGES / 'ph2'}",
            f"--data.cache_dir={tmp_path / 'cache'}",
            "--data.image_size=128",
            "--data.batch_size=4",  # 14 training images: 3 steps per epoch
            f"--trainer.max_epochs={EPOCHS}",
            f"--model.init_args.lr_scheduler.init_args.T_0={EPOCHS}",  # one cosine cycle over the run
        ]
    )
    metrics = metrics_of(cli.trainer.default_root_dir)
    assert not metrics["synthetic"] and metrics["epochs"] == EPOCHS
    assert [cli.datamodule.split_table(s).num_rows for s in ("train", "val", "test")] == [14, 3, 3]
    assert metrics["test"]["test/dice"] > 0.8, metrics["test"]
