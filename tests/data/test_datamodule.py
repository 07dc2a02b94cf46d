"""DermDataModule: batches in the documented format, grouped split, train-only encoder, synthetic default."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dermfuse_data.datamodule import DermDataModule
from dermfuse_data.splits import crossing_groups


@pytest.fixture(scope="module")
def dm(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    module = DermDataModule("pad_ufes_20", image_size=32, batch_size=8, cache_dir=str(cache), augment="light")
    module.prepare_data()
    module.setup("fit")
    return module


def test_synthetic_default_banner_and_layout(dm, capsys):
    fresh = DermDataModule("pad_ufes_20", image_size=32, cache_dir=str(dm.cache_dir))
    _ = fresh.table
    assert "SYNTHETIC DATA" in capsys.readouterr().err
    assert fresh.is_synthetic and (fresh.root / "metadata.csv").is_file()


def test_batch_format(dm):
    batch = next(iter(dm.train_dataloader()))
    b = batch["image"].shape[0]
    assert batch["image"].shape == (b, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["label"].shape == (b,) and batch["label"].dtype == torch.int64
    assert batch["meta"].shape == (b, sum(dm.meta_groups)) and len(dm.meta_names) == len(dm.meta_groups)
    assert len(batch["sample_id"]) == b and "mask" not in batch
    assert -3 < batch["image"].mean() < 3  # normalised, not 0..255


def test_splits_disjoint_grouped_and_cover_everything(dm):
    t = dm.table
    assert crossing_groups(t) == {}
    ids = {s: set(dm.split_table(s).column("sample_id").to_pylist()) for s in ("train", "val", "test")}
    assert sum(map(len, ids.values())) == len(t) and all(ids.values())
    assert set(dm.dataset("val").sample_ids) == ids["val"]
    assert dm.split_file.exists()


def test_encoder_fitted_on_train_only(dm):
    age = dm.encoder.blocks[dm.meta_names.index("age")]
    train_ages = [float(a) for a in dm.split_table("train").column("meta_age").to_pylist() if a]
    assert age.mean == pytest.approx(np.mean(train_ages))
    all_ages = [float(a) for a in dm.table.column("meta_age").to_pylist() if a]
    assert age.mean != pytest.approx(np.mean(all_ages))


def test_balanced_sampler_equalises_classes(dm):
    dm.hparams.sampler = "balanced"
    try:
        seen = np.concatenate([b["label"].numpy() for _ in range(5) for b in dm.train_dataloader()])
    finally:
        dm.hparams.sampler = "random"
    counts = np.bincount(seen, minlength=dm.num_classes)
    raw = np.array(dm.class_counts)
    assert counts.max() / counts.min() < raw.max() / raw.min() / 2


def test_images_only_and_leaky_feature(dm):
    plain = DermDataModule("pad_ufes_20", image_size=32, meta_features=None, cache_dir=str(dm.cache_dir))
    assert plain.meta_groups == []
    assert "meta" not in plain.dataset("val")[0]
    from dermfuse_data.errors import DatasetError
    with pytest.raises(DatasetError, match="biopsed"):
        DermDataModule("pad_ufes_20", meta_features=["age", "biopsed"], cache_dir=str(dm.cache_dir))


def test_masks_requested_on_dataset_without_masks_is_clear(dm):
    from dermfuse_data.errors import DatasetError
    no_masks = DermDataModule("pad_ufes_20", image_size=32, use_masks=True, cache_dir=str(dm.cache_dir))
    with pytest.raises(DatasetError, match="use_masks=false"):
        no_masks.setup()
