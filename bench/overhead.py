"""Framework overhead: one plain timm backbone stepped by the Lightning Trainer + ``ClassificationTask`` vs a
bare PyTorch loop, on the same batches, same device, same optimiser (median step after warm-up; the plain
loop runs before and after the Trainer and the two medians are averaged, against drifting machine load).

* ``trainer``: the same in-memory batches through ``pl.Trainer`` (CSV logger every 10 steps, as the
  configs) and dermfuse's task (loss, metrics logging): the framework's own cost.
* ``dermfuse``: the whole dermfuse path, the DataModule (a generated PAD-UFES-20-layout dataset, the cache,
  ``augment_on`` as ``auto`` picks on this device, ``num_workers: auto``) feeding the Trainer.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import timm
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from bench.common import BenchSize, Budget, bench_dataset, synchronize
from dermfuse_data.datamodule import DermDataModule
from dermfuse_models.protocol import ImageOnlyNet
from dermfuse_models.tasks.classification import ClassificationTask

BACKBONE = "resnet18"
NUM_CLASSES = 6


class StepTimer(pl.Callback):
    """Wall time between successive training-batch starts (synchronised): one optimiser step each."""

    def __init__(self, device: torch.device):
        self.device, self.stamps = device, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        synchronize(self.device)
        self.stamps.append(time.perf_counter())


def _batches(size: BenchSize, n: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    side, b = size.overhead_size, size.overhead_batch
    return [
        {
            "image": torch.randn(b, 3, side, side, generator=g),
            "label": torch.randint(0, NUM_CLASSES, (b,), generator=g),
            "sample_id": [f"s{i}" for i in range(b)],
        }
        for _ in range(n)
    ]


def _median_after(stamps: list[float], warmup: int) -> float:
    steps = [b - a for a, b in zip(stamps, stamps[1:])]
    return statistics.median(steps[warmup:])


def plain_loop(net: torch.nn.Module, batches: list[dict], device: torch.device, precision: str, warmup: int) -> float:
    """Median step (s) of forward, cross-entropy, backward, Adam step on ``batches``."""
    net = net.to(device).train()
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-4)
    stamps = []
    for batch in batches:
        synchronize(device)
        stamps.append(time.perf_counter())
        image, label = batch["image"].to(device, non_blocking=True), batch["label"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            loss = F.cross_entropy(net(image).float(), label)
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
    synchronize(device)
    stamps.append(time.perf_counter())
    return _median_after(stamps, warmup)


def _task(net: torch.nn.Module) -> ClassificationTask:
    return ClassificationTask(
        ImageOnlyNet(net),
        num_classes=NUM_CLASSES,
        class_weights=None,
        optimizer=lambda params: torch.optim.Adam(params, lr=1e-4),
        class_names=[f"c{i}" for i in range(NUM_CLASSES)],
    )


def trainer_loop(net: torch.nn.Module, loader, device: torch.device, precision: str, steps: int, warmup: int) -> float:
    """Median step (s) of ``ClassificationTask(net)`` fitted by a Trainer for ``steps`` steps on ``loader``."""
    timer = StepTimer(device)
    with tempfile.TemporaryDirectory(prefix="dermfuse-bench-") as tmp:
        trainer = pl.Trainer(
            accelerator=device.type,
            devices=1,
            precision=precision,
            max_steps=steps,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            logger=pl.loggers.CSVLogger(tmp, name="", version=""),
            log_every_n_steps=10,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[timer],
            default_root_dir=tmp,
        )
        data = {"datamodule": loader} if isinstance(loader, DermDataModule) else {"train_dataloaders": loader}
        trainer.fit(_task(net), **data)
        synchronize(device)
    return _median_after(timer.stamps, warmup)


def run(size: BenchSize, device: torch.device, budget: Budget) -> dict:
    """Plain loop vs Trainer on the same batches, and the whole dermfuse path (module doc)."""
    precision = "bf16-mixed" if device.type == "cuda" else "32-true"
    warmup, steps = max(2, size.overhead_steps // 5), size.overhead_steps
    torch.manual_seed(0)
    net = timm.create_model(BACKBONE, pretrained=False, num_classes=NUM_CLASSES)
    batches = _batches(size, warmup + steps)
    before = plain_loop(copy.deepcopy(net), batches, device, precision, warmup)
    framework = trainer_loop(
        copy.deepcopy(net), DataLoader(batches, batch_size=None), device, precision, warmup + steps, warmup
    )
    plain = (before + plain_loop(copy.deepcopy(net), batches, device, precision, warmup)) / 2  # either side of it
    result = {
        "net": f"timm {BACKBONE}",
        "image_size": size.overhead_size,
        "batch": size.overhead_batch,
        "precision": precision,
        "plain_step_ms": plain * 1e3,
        "trainer_step_ms": framework * 1e3,
        "trainer_overhead_pct": (framework / plain - 1) * 100,
    }
    if budget.allows(60):
        with tempfile.TemporaryDirectory(prefix="dermfuse-bench-dm-") as tmp:
            dm = DermDataModule(
                "pad_ufes_20",
                root=str(bench_dataset(Path(tmp), size)),
                image_size=size.overhead_size,
                batch_size=size.overhead_batch,
                meta_features=None,
                num_workers="auto",
                cache_dir=tmp,
            )
            whole = trainer_loop(copy.deepcopy(net), dm, device, precision, warmup + steps, warmup)
        result.update(
            dermfuse_step_ms=whole * 1e3,
            dermfuse_images_per_s=size.overhead_batch / whole,
            plain_images_per_s=size.overhead_batch / plain,
            dermfuse_vs_plain_throughput=plain / whole,
        )
    else:
        result["dermfuse_skipped"] = "time budget"
    return result
