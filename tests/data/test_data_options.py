"""DermDataModule options of the data-robustness work: checked early, split kept across copies, resplit, cache key."""

from __future__ import annotations

import shutil
import warnings

import pytest

from dermfuse_data.datamodule import DermDataModule, check_batch_size
from dermfuse_data.errors import DataConfigError
from dermfuse_data.split_file import read_split_file


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"image_size": 0}, r"^data\.image_size: must be a positive number of pixels, got 0$"),
        ({"image_size": -5}, r"^data\.image_size: must be a positive number of pixels, got -5$"),
        ({"batch_size": 0}, r"^data\.batch_size: must be a whole number >= 1, got 0$"),
        ({"num_workers": -1}, r"^data\.num_workers: must be a whole number >= 0 or auto, got -1$"),
        ({"dataset": "ham1000"}, r"^data\.dataset: unknown dataset 'ham1000'\n  -> choose one of \[.*'ham10000'"),
        ({"source_options": {"abnormality": "mass"}}, r"^data\.source_options: pad_ufes_20 has no option abnormality"),
        (
            {"dataset": "isic2018_task1", "meta_features": ["age"]},
            r"^data\.meta_features: isic2018_task1 has no metadata features, \['age'\] asked\n"
            r"  -> set data\.meta_features=null",
        ),
        ({"dataset": "isic2018_task1", "meta_features": "top3"}, r"^data\.meta_features: isic2018_task1 has no"),
        ({"test_fraction": 1.5}, r"^data\.test_fraction: must be in \[0, 1\], got 1\.5$"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, r"^data\.val_fraction: .* = 1 leaves no training data$"),
        ({"cache_key": "md5"}, r"^data\.cache_key: unknown cache key 'md5'\n  -> choose one of \['stat', 'content'\]"),
    ],
)
def test_data_options_that_cannot_work_fail_at_once_naming_the_key(tmp_path, options, message):
    with pytest.raises(DataConfigError, match=message):
        DermDataModule(**{"dataset": "pad_ufes_20", "cache_dir": str(tmp_path), **options})
    assert list(tmp_path.iterdir()) == []  # refused before anything was read or generated


def test_batch_size_is_checked_against_the_training_split():
    with pytest.raises(DataConfigError, match=r"^data\.batch_size: the training split holds 1 sample\(s\)"):
        check_batch_size(8, 1)
    with pytest.warns(UserWarning, match=r"data\.batch_size=32 is larger than the training split \(14 samples\)"):
        check_batch_size(32, 14)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_batch_size(14, 14)


def test_dataset_without_features_accepts_the_default_all(tmp_path):
    assert DermDataModule("isic2018_task1", cache_dir=str(tmp_path)).features == []


def test_real_dataset_copied_elsewhere_keeps_its_split_and_resplit_regenerates(miniature, tmp_path, capsys):
    """The split file is named by the dataset and its options, not by the folder: a copy on scratch space
    (with one image fewer) reads the same file; ``resplit=True`` writes it anew."""
    root = miniature("ham10000")
    cache = str(tmp_path / "cache")
    first = DermDataModule("ham10000", root=str(root), cache_dir=cache, image_size=16)
    split = dict(zip(first.table.column("sample_id").to_pylist(), first.table.column("split").to_pylist()))
    copy = shutil.copytree(root, tmp_path / "scratch" / root.name)
    dropped = next((copy / "HAM10000_images_part_1").glob("*.jpg"))
    lines = (copy / "HAM10000_metadata.csv").read_text().splitlines(keepends=True)
    (copy / "HAM10000_metadata.csv").write_text("".join(line for line in lines if dropped.stem not in line))
    dropped.unlink()
    moved = DermDataModule("ham10000", root=str(copy), cache_dir=cache, image_size=16)
    again = dict(zip(moved.table.column("sample_id").to_pylist(), moved.table.column("split").to_pylist()))
    assert moved.split_file == first.split_file
    assert again == {k: v for k, v in split.items() if k != dropped.stem} and dropped.stem in split
    assert len(read_split_file(first.split_file)) == len(split)  # the file still knows the dropped image
    other_seed = DermDataModule("ham10000", root=str(copy), cache_dir=cache, image_size=16, seed=1)
    assert other_seed.table is not None and other_seed.split_file != first.split_file
    resplit = DermDataModule("ham10000", root=str(copy), cache_dir=cache, image_size=16, resplit=True)
    _ = resplit.table
    assert resplit.split_file == first.split_file and len(read_split_file(first.split_file)) == len(split) - 1
    assert "regenerated (resplit)" in capsys.readouterr().err


def test_synthetic_and_real_data_of_one_dataset_have_separate_split_files(miniature, tmp_path):
    cache = str(tmp_path / "cache")
    real = DermDataModule("ph2", root=str(miniature("ph2")), cache_dir=cache, task="segmentation", image_size=16)
    synthetic = DermDataModule("ph2", cache_dir=cache, task="segmentation", image_size=16)
    assert real.table is not None and synthetic.table is not None
    assert real.split_file != synthetic.split_file


def test_content_cache_key_through_the_datamodule(miniature, tmp_path):
    cache = str(tmp_path / "cache")
    stat_dm = DermDataModule("ph2", root=str(miniature("ph2")), cache_dir=cache, task="segmentation", image_size=16)
    stat_dm.setup()
    content_dm = DermDataModule(
        "ph2", root=str(miniature("ph2")), cache_dir=cache, task="segmentation", image_size=16, cache_key="content"
    )
    content_dm.setup()
    assert content_dm._cache.path != stat_dm._cache.path and content_dm._cache.path.exists()
    assert (content_dm._cache.image(3) == stat_dm._cache.image(3)).all()
