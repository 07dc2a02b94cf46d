"""DermTask, the tasks' shared base: injected optimiser and scheduler (both tasks), trainable parameters only,
plateau monitor, per-epoch schedules, a cosine schedule over a 3-epoch fit, clear errors on bad optimisation."""

import math
from functools import partial

import pytest
import pytorch_lightning as pl
import torch
import torch.nn as nn
from torch.optim import lr_scheduler as schedules
from torch.utils.data import DataLoader, Dataset

from dermfuse_models.tasks.base import PLATEAU_MONITOR, DermTask
from dermfuse_models.tasks.classification import ClassificationTask
from dermfuse_models.tasks.segmentation import SegmentationTask
from tests.models._support import quiet_trainer


class ClassNet(nn.Module):
    """Image -> 2 class logits (protocol net)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, image, meta=None, mask=None):
        return {"logits": self.head(self.stem(image).mean(dim=(2, 3)))}


class MaskNet(nn.Module):
    """Image -> lesion logits (protocol segmentation net)."""

    output_kind = "mask_logits"

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 1, 1)

    def forward(self, image, meta=None, mask=None):
        return {"logits": self.head(self.stem(image))}


def _task(kind: str, **kwargs) -> DermTask:
    if kind == "classification":
        return ClassificationTask(ClassNet(), class_weights=None, **kwargs)
    return SegmentationTask(MaskNet(), **kwargs)


TASKS = ("classification", "segmentation")


class Samples(Dataset):
    """8 random images with labels and masks (both tasks train on it)."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.randn(8, 3, 8, 8, generator=g)
        self.masks = (self.images[:, :1] > 0).float()

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": torch.tensor(i % 2), "mask": self.masks[i]}


# ----------------------------------------------------------------------------- optimiser / scheduler
@pytest.mark.parametrize("kind", TASKS)
def test_default_is_adam_without_a_schedule(kind):
    """``ClassificationTask(net)`` / ``SegmentationTask(net)`` train with Adam (torch's lr 1e-3), constant lr."""
    opt = _task(kind).configure_optimizers()
    assert type(opt) is torch.optim.Adam and opt.param_groups[0]["lr"] == 1e-3


@pytest.mark.parametrize("kind", TASKS)
@pytest.mark.parametrize(
    ("optimizer", "scheduler", "opt_type", "sched_type"),
    [
        (partial(torch.optim.Adam, lr=0.01), None, torch.optim.Adam, None),
        (
            partial(torch.optim.AdamW, lr=0.01, weight_decay=0.05),
            partial(schedules.CosineAnnealingLR, T_max=9),
            torch.optim.AdamW,
            schedules.CosineAnnealingLR,
        ),
        (
            partial(torch.optim.SGD, lr=0.01, momentum=0.9),
            partial(schedules.ReduceLROnPlateau, mode="min", factor=0.1, patience=5),
            torch.optim.SGD,
            schedules.ReduceLROnPlateau,
        ),
        (
            partial(torch.optim.Adam, lr=0.01),
            partial(schedules.StepLR, step_size=3, gamma=0.1),
            torch.optim.Adam,
            schedules.StepLR,
        ),
        (
            partial(torch.optim.Adam, lr=0.01),
            partial(schedules.CosineAnnealingWarmRestarts, T_0=3, T_mult=2),
            torch.optim.Adam,
            schedules.CosineAnnealingWarmRestarts,
        ),
    ],
    ids=["adam", "adamw-cosine", "sgd-plateau", "adam-step", "adam-warm-restarts"],
)
def test_configure_optimizers(kind, optimizer, scheduler, opt_type, sched_type):
    cfg = _task(kind, optimizer=optimizer, lr_scheduler=scheduler).configure_optimizers()
    opt = cfg if sched_type is None else cfg["optimizer"]
    assert type(opt) is opt_type and opt.param_groups[0]["lr"] == 0.01
    if opt_type is torch.optim.SGD:
        assert opt.param_groups[0]["momentum"] == 0.9
    if opt_type is torch.optim.AdamW:
        assert opt.param_groups[0]["weight_decay"] == 0.05
    if sched_type is None:
        return
    sched = cfg["lr_scheduler"]["scheduler"]
    assert type(sched) is sched_type and cfg["lr_scheduler"]["interval"] == "epoch"
    is_plateau = sched_type is schedules.ReduceLROnPlateau
    assert (cfg["lr_scheduler"].get("monitor") == PLATEAU_MONITOR == "val/loss") == is_plateau
    if sched_type is schedules.CosineAnnealingLR:
        assert sched.T_max == 9
    if sched_type is schedules.CosineAnnealingWarmRestarts:
        assert (sched.T_0, sched.T_mult) == (3, 2)
    if sched_type is schedules.ReduceLROnPlateau:
        assert (sched.mode, sched.factor, sched.patience) == ("min", 0.1, 5)


@pytest.mark.parametrize("kind", TASKS)
def test_frozen_parameters_are_not_optimised(kind):
    """Only trainable parameters reach the optimiser (FreezeBackbone freezes before configure_optimizers)."""
    task = _task(kind)
    task.net.stem.requires_grad_(False)
    (group,) = task.configure_optimizers().param_groups
    assert {id(p) for p in group["params"]} == {id(p) for p in task.net.head.parameters()}


@pytest.mark.parametrize("kind", TASKS)
def test_cosine_follows_the_run_over_a_three_epoch_fit(kind):
    """lr at the start of epoch e is ``lr0 (1 + cos(pi e / 3)) / 2``: stepped once per epoch, down to 0 at the end."""
    lrs: list[float] = []

    class RecordLR(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    torch.manual_seed(0)
    task = _task(
        kind, optimizer=partial(torch.optim.SGD, lr=0.1), lr_scheduler=partial(schedules.CosineAnnealingLR, T_max=3)
    )
    trainer = quiet_trainer(max_epochs=3, callbacks=[RecordLR()])
    loader = DataLoader(Samples(), batch_size=4)
    trainer.fit(task, loader, loader)
    assert lrs == pytest.approx([0.1 * (1 + math.cos(math.pi * e / 3)) / 2 for e in range(3)])
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kind", TASKS)
def test_old_string_switches_and_non_callables_are_clear_errors(kind):
    with pytest.raises(TypeError, match="class_path: torch.optim.Adam") as info:
        _task(kind, optimizer="adamw")
    assert "optimizer must be a callable" in str(info.value)
    with pytest.raises(TypeError, match="lr_scheduler must be a callable"):
        _task(kind, lr_scheduler="cosine")
    with pytest.raises(TypeError, match="optimizer must be a callable"):
        _task(kind, optimizer=0.001)


@pytest.mark.parametrize("kind", TASKS)
def test_callables_that_build_the_wrong_thing_are_clear_errors(kind):
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        _task(kind, optimizer=lambda params: list(params)).configure_optimizers()
    with pytest.raises(TypeError, match="learning-rate scheduler"):
        _task(kind, lr_scheduler=lambda optimizer: optimizer).configure_optimizers()
    with pytest.raises(ValueError, match="trainer.max_epochs"):  # a CLI run without max_epochs links T_max=None
        _task(kind, lr_scheduler=partial(schedules.CosineAnnealingLR, T_max=None)).configure_optimizers()


def test_base_step_needs_the_task_loss():
    task = DermTask(ClassNet())
    with pytest.raises(NotImplementedError):
        task.training_step({"image": torch.randn(2, 3, 8, 8)}, 0)
