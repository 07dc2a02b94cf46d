"""DermDataModule: batches in the documented format, grouped split, train-only encoder, synthetic default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

import dermfuse_data.datamodule as datamodule_module
from dermfuse_data.datamodule import DermDataModule, synthetic_root
from dermfuse_data.splits import crossing_groups
from tests.data._support import append_comment


@pytest.fixture(scope="module")
def dm(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    module = DermDataModule("pad_ufes_20", image_size=32, batch_size=8, cache_dir=str(cache), augment="light")
    module.prepare_data()
    module.setup("fit")
    return module


def test_synthetic_default_banner_and_layout(dm, capsys, monkeypatch):
    from pytorch_lightning.utilities import rank_zero_only

    from dermfuse_data import datamodule

    monkeypatch.setattr(datamodule, "_ANNOUNCED", {})  # a fresh process
    fresh = DermDataModule("pad_ufes_20", image_size=32, cache_dir=str(dm.cache_dir))
    _ = fresh.table
    assert capsys.readouterr().err.count("SYNTHETIC DATA") == 1
    assert fresh.is_synthetic and (fresh.root / "metadata.csv").is_file()
    _ = DermDataModule("pad_ufes_20", image_size=32, cache_dir=str(dm.cache_dir)).table
    assert "SYNTHETIC" not in capsys.readouterr().err  # once per process, however often the data is built
    datamodule.synthetic_banner("ham10000", dm.cache_dir / "ham")
    assert (
        capsys.readouterr().err.strip()
        == f"also synthetic: 'ham10000', the generated miniature at {dm.cache_dir / 'ham'}"
    )
    monkeypatch.setattr(datamodule, "_ANNOUNCED", {})
    monkeypatch.setattr(rank_zero_only, "rank", 1)  # a DDP rank other than 0 stays silent
    datamodule.synthetic_banner("pad_ufes_20", fresh.root)
    assert capsys.readouterr().err == ""


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


# ------------------------------------------------------------------ segmentation: joint augmentation
def _l_shaped_lesions(root: Path) -> Path:
    """ISIC 2018 Task 1 layout of 64x64 JPEGs: a bright L-shaped lesion off-centre, its 0/255 mask.

    No flip or quarter turn maps an L onto itself, so an image and mask moved differently disagree.
    """
    from dermfuse_data.sources.isic2018_task1 import ground_truth_dir, input_dir

    k = 0
    for split, n in (("train", 6), ("val", 2), ("test", 2)):
        input_dir(root, split).mkdir(parents=True)
        ground_truth_dir(root, split).mkdir(parents=True)
        for j in range(n):
            lesion = np.zeros((64, 64), bool)
            r, c = 6 + 3 * j, 8 + 2 * j
            lesion[r : r + 20, c : c + 8] = lesion[r + 14 : r + 20, c : c + 26] = True
            image = np.full((64, 64, 3), 60, np.uint8)
            image[lesion] = 230
            Image.fromarray(image).save(input_dir(root, split) / f"ISIC_{k:07d}.jpg", quality=95)
            Image.fromarray(lesion.astype(np.uint8) * 255).save(
                ground_truth_dir(root, split) / f"ISIC_{k:07d}_segmentation.png"
            )
            k += 1
    return root


def _overlap(image: torch.Tensor, mask: torch.Tensor) -> float:
    """IoU of the image's bright (lesion) pixels and the mask (normalised image: lesion > 0)."""
    bright, inside = image.mean(0) > 0, mask[0] > 0.5
    return float((bright & inside).sum() / (bright | inside).sum().clamp(min=1))


def test_segmentation_augmentation_moves_image_and_mask_together(tmp_path):
    root = _l_shaped_lesions(tmp_path / "ISIC2018")
    dm = DermDataModule(
        "isic2018_task1",
        root=str(root),
        task="segmentation",
        image_size=32,
        augment="standard",
        cache_dir=str(tmp_path / "cache"),
    )
    train = dm.dataset("train")
    assert len(train) == 6
    joint, apart, places = [], [], set()
    for seed in range(48):
        torch.manual_seed(seed)
        item = train[seed % len(train)]
        assert item["image"].shape == (3, 32, 32) and item["mask"].shape == (1, 32, 32)
        joint.append(_overlap(item["image"], item["mask"]))
        ys, xs = np.nonzero(item["mask"][0].numpy())
        places.add((round(ys.mean()), round(xs.mean())))
        # control: the same transform drawn separately for image and mask
        row = int(train.rows[seed % len(train)])
        image = tv_tensors.Image(torch.from_numpy(np.array(train.cache.image(row))).permute(2, 0, 1))
        mask = tv_tensors.Mask(torch.from_numpy(np.array(train.cache.mask(row)))[None])
        apart.append(_overlap(train.transform(image), train.transform(mask).float()))
    assert len(places) > 10  # the lesion really moves
    assert min(joint) > 0.6, sorted(joint)[:5]  # ~0.8-1.0: edges blur in rotation
    assert np.mean(apart) < 0.4 and sum(a < 0.6 for a in apart) > 24  # what a non-joint transform gives
    val = dm.dataset("val")[0]
    assert _overlap(val["image"], val["mask"]) > 0.9  # evaluation: no augmentation


# ------------------------------------------------------------------ the cached synthetic miniature
def test_cached_miniature_is_rewritten_only_when_its_own_code_changes(synthetic_code_copy, tmp_path, monkeypatch):
    """Editing the PH2 reader or writer keeps the PAD-UFES-20 miniature; editing the PAD-UFES-20 reader
    writes a new one."""
    written = []
    write = datamodule_module.write_synthetic
    monkeypatch.setattr(
        datamodule_module, "write_synthetic", lambda name, out, seed: written.append(name) or write(name, out, seed)
    )
    first = synthetic_root("pad_ufes_20", tmp_path / "cache")
    assert (first / "metadata.csv").is_file() and written == ["pad_ufes_20"]
    append_comment(synthetic_code_copy / "sources" / "ph2.py")
    append_comment(synthetic_code_copy / "synthetic" / "ph2.py")
    assert synthetic_root("pad_ufes_20", tmp_path / "cache") == first and written == ["pad_ufes_20"]
    append_comment(synthetic_code_copy / "sources" / "pad_ufes_20.py")
    rewritten = synthetic_root("pad_ufes_20", tmp_path / "cache")
    assert rewritten != first and written == ["pad_ufes_20"] * 2
    assert (rewritten / "metadata.csv").read_bytes() == (first / "metadata.csv").read_bytes()
