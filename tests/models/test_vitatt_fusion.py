"""ViTAtt's single-stage fusion learns what only the metadata can tell (paper Sec. 3).

The synthetic PAD-UFES-20 miniature draws ACK/SCC and NEV/SEK with identical image distributions
(they differ only in ``bleed`` and ``age``), so an image-only ViT is capped at 4 of 6 classes while
the fused model can separate all six.
"""
from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from dermfuse_data.datamodule import DermDataModule
from dermfuse_models.nets.vitatt import ViTAtt
from dermfuse_models.tasks.classification import ClassificationTask


def _held_out_bal_acc(use_metadata: bool, cache_dir) -> float:
    pl.seed_everything(0, workers=True)
    dm = DermDataModule("pad_ufes_20", image_size=32, batch_size=16, augment="light",
                        meta_features="all" if use_metadata else None, cache_dir=str(cache_dir))
    net = ViTAtt(dm.num_classes, dm.meta_groups, dm.meta_names, backbone="test_vit",
                 img_size=32, use_metadata=use_metadata)
    task = ClassificationTask(net, num_classes=dm.num_classes, lr=1e-3, class_names=dm.class_names)
    trainer = pl.Trainer(max_epochs=10, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, deterministic=True)
    trainer.fit(task, datamodule=dm)
    val = trainer.validate(task, datamodule=dm, verbose=False)[0]["val/bal_acc"]
    test = trainer.test(task, datamodule=dm, verbose=False)[0]["test/bal_acc"]
    return (val + test) / 2


@pytest.mark.slow
def test_metadata_tokens_beat_image_only(tmp_path):
    torch.set_num_threads(2)
    fused = _held_out_bal_acc(True, tmp_path)
    image_only = _held_out_bal_acc(False, tmp_path)
    print(f"held-out balanced accuracy: fused {fused:.3f}, image only {image_only:.3f}")
    assert fused > image_only + 0.1, (fused, image_only)
    assert fused > 0.5  # chance is 1/6
