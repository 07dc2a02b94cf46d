"""Speed options end to end (device augmentation, channels-last, workers in a CPU smoke fit); SpeedOptions."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from dermfuse_models.runner.speed import SpeedOptions, to_channels_last
from tests.experiments._support import EXPERIMENTS, QUIET, metrics_of


class BatchRecorder(pl.Callback):
    """What the training step saw: dtype, layout and range of the image, mask values."""

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        image = batch["image"]
        self.seen.append(
            {
                "dtype": image.dtype,
                "channels_last": image.is_contiguous(memory_format=torch.channels_last),
                "mean": float(image.mean()),
                "mask_values": set(batch["mask"].unique().tolist()),
                "workers": trainer.train_dataloader.num_workers,
            }
        )


@pytest.mark.slow
def test_smoke_fit_with_device_augmentation_channels_last_and_two_workers(runs_dir, recwarn):
    """Device augmentation (image + mask) and 2 workers train; channels_last is declined on CPU, saying why."""
    from dermfuse_models.runner.cli import main

    recorder = BatchRecorder()
    folder = EXPERIMENTS / "eamnet"
    cli = main(
        [
            "fit",
            *("--config", str(folder / "config.yaml"), "--config", str(folder / "data" / "ph2.yaml")),
            *("--config", str(folder / "smoke.yaml")),
            "--data.augment_on=device",
            "--data.augment=standard",
            "--data.num_workers=2",
            "--speed.channels_last=true",
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=3",
            "--trainer.limit_val_batches=1",
            "--trainer.limit_test_batches=1",
            *QUIET,
        ],
        trainer_defaults={"callbacks": [recorder]},
    )
    assert len(recorder.seen) == 3
    for seen in recorder.seen:
        assert seen["dtype"] == torch.float32 and not seen["channels_last"] and seen["workers"] == 2
        assert -3 < seen["mean"] < 3 and seen["mask_values"] <= {0.0, 1.0}  # normalised on the device
    conv = next(m for m in cli.model.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert not conv.weight.is_contiguous(memory_format=torch.channels_last)  # CPU: NCHW kept (oneDNN bug)
    assert any("channels_last=true is not applied on CPU" in str(w.message) for w in recwarn)
    assert cli.datamodule.augment_on == "device"
    assert "test/dice" in metrics_of(Path(cli.trainer.default_root_dir))["test"]


def _on(device: str) -> SimpleNamespace:
    """Enough of a Trainer for SpeedOptions.setup: the strategy's root device."""
    return SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))


def test_speed_options_convert_the_net_on_accelerators_and_compile_it_in_place():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    module = pl.LightningModule()
    module.net = net
    keys = set(net.state_dict())
    speed = SpeedOptions(channels_last=True, compile=True)
    speed.setup(_on("cuda"), module, "fit")  # the layout conversion itself needs no GPU
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert net._compiled_call_impl is not None and set(net.state_dict()) == keys  # checkpoints unchanged
    batch = {"image": torch.randn(2, 3, 8, 8), "mask": torch.zeros(2, 1, 8, 8), "label": torch.zeros(2)}
    speed.on_train_batch_start(None, module, batch, 0)
    assert batch["image"].is_contiguous(memory_format=torch.channels_last) and batch["label"].dim() == 1
    assert batch["mask"].is_contiguous(memory_format=torch.channels_last)
    assert to_channels_last([1]) == [1]  # not a dict batch: left alone
    untouched = torch.nn.Conv2d(3, 4, 3)
    bare = pl.LightningModule()
    bare.net = untouched
    SpeedOptions().setup(_on("cuda"), bare, "fit")
    assert (
        not untouched.weight.is_contiguous(memory_format=torch.channels_last) and untouched._compiled_call_impl is None
    )
