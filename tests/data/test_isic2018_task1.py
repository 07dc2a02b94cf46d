"""ISIC 2018 Task 1 source: the challenge layout, the real training listing, the miniature, errors."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import CORE_COLUMNS, validate_table
from dermfuse_data.sources.isic2018_task1 import REAL_SPLIT_SIZES, SOURCE, ground_truth_dir, input_dir
from dermfuse_data.splits import crossing_groups, make_splits
from tests.data._support import REAL_METADATA, assert_unreadable, check_json, real_path, tiny_image

DATASET = "isic2018_task1"
REAL = REAL_METADATA / "isic2018_task1"
IMAGE_LISTING = "ISIC2018_Task1-2_Training_Input.derived_listing.txt"
MASK_LISTING = "ISIC2018_Task1_Training_GroundTruth.derived_listing.txt"
SPLITS = ("train", "val", "test")


def _release_texts(folder: Path) -> None:
    """The licence / attribution files every release folder holds (must be ignored)."""
    (folder / "LICENSE.txt").write_text("CC-BY-NC\n")
    (folder / "ATTRIBUTION.txt").write_text("ISIC\n")


@pytest.fixture(scope="module")
def real_root(tmp_path_factory) -> Path:
    """Training folders in tmp built from the real listings: one tiny JPEG / PNG per listed name."""
    real_path("isic2018_task1")
    root = tmp_path_factory.mktemp("isic2018_real")
    for listing, folder, data in (
        (IMAGE_LISTING, input_dir(root, "train"), tiny_image("JPEG")),
        (MASK_LISTING, ground_truth_dir(root, "train"), tiny_image("PNG", "L")),
    ):
        folder.mkdir()
        _release_texts(folder)
        for name in (REAL / listing).read_text().split():
            (folder / name).write_bytes(data)
    return root


def _check(cli, root: Path, *extra: str) -> tuple[int, dict]:
    return check_json(cli, DATASET, root, *extra)


def test_source_is_segmentation_only():
    assert SOURCE.classes == ("lesion",) and SOURCE.tasks == ("segmentation",)
    assert SOURCE.has_masks and SOURCE.features == () and "splits" in SOURCE.options


# ------------------------------------------------------------------ real training listing
def test_real_listings_are_paired_names():
    real_path("isic2018_task1")
    images = (REAL / IMAGE_LISTING).read_text().split()
    masks = (REAL / MASK_LISTING).read_text().split()
    assert len(images) == len(masks) == 2594
    assert all(re.fullmatch(r"ISIC_\d{7}\.jpg", n) for n in images)
    assert [m.replace("_segmentation.png", ".jpg") for m in masks] == images


def test_real_training_part_check_json(real_root, cli):
    rc, report = _check(cli, real_root, "--option", "splits=train", "--no-verify-images")
    assert rc == 0, report["problems"]
    assert report["rows"] == 2594 and report["groups"] == 2594 and report["classes"] == {"lesion": 2594}
    assert report["split_kind"] == "official" and report["splits"] == {"train": 2594, "val": 0, "test": 0}
    assert report["problems"] == [] and report["missing"] == {}
    assert report["encoded_width"] == 0 and report["encoded_widths"] == {}  # no metadata shipped


def test_real_training_rows_each_with_its_mask(real_root):
    table = SOURCE.read(real_root, splits="train")
    validate_table(table)
    assert table.column_names == CORE_COLUMNS and table.num_rows == 2594
    for row in table.to_pylist()[::97]:
        assert Path(row["mask_path"]).name == f"{row['sample_id']}_segmentation.png"
        assert Path(row["image_path"]).name == f"{row['sample_id']}.jpg"
        assert row["group_id"] == row["sample_id"] and row["label"] == 0
    assert table.column("mask_path").null_count == 0


def test_real_no_group_crosses_splits(real_root):
    split = make_splits(SOURCE.read(real_root, splits="train"), seed=0)
    assert crossing_groups(split) == {}
    assert 300 < split.column("split").to_pylist().count("val") < 500  # val carved from train


def test_real_without_splits_option_names_the_missing_folder(real_root):
    with pytest.raises(DatasetError, match="ISIC2018_Task1-2_Validation_Input not found") as err:
        SOURCE.read(real_root)
    assert "splits=" in err.value.hint


def test_official_split_sizes_on_stand_in_tree(tmp_path, cli):
    """2594 / 100 / 1000 empty stand-in files (names only), counted without decoding."""
    number = 0
    for split in SPLITS:
        for folder in (input_dir(tmp_path, split), ground_truth_dir(tmp_path, split)):
            folder.mkdir()
            _release_texts(folder)
        for k in range(number, number + REAL_SPLIT_SIZES[split]):
            (input_dir(tmp_path, split) / f"ISIC_{k:07d}.jpg").touch()
            (ground_truth_dir(tmp_path, split) / f"ISIC_{k:07d}_segmentation.png").touch()
        number += REAL_SPLIT_SIZES[split]
    rc, report = _check(cli, tmp_path, "--no-verify-images")
    assert rc == 0 and report["rows"] == 3694
    assert report["splits"] == {"train": 2594, "val": 100, "test": 1000}
    rc, report = _check(cli, tmp_path)  # decoding finds empty files
    assert rc == 1 and "unreadable image" in report["problems"][0] and "empty file" in report["problems"][0]


# ------------------------------------------------------------------ synthetic miniature
def test_miniature_in_the_challenge_layout(synth_root):
    for split in SPLITS:
        assert (input_dir(synth_root, split) / "LICENSE.txt").is_file()
        assert (ground_truth_dir(synth_root, split) / "ATTRIBUTION.txt").is_file()
    table = SOURCE.read(synth_root)
    assert table.column("official_split").to_pylist() == ["train"] * 60 + ["val"] * 20 + ["test"] * 30
    for row in table.to_pylist()[::37]:
        with Image.open(row["mask_path"]) as m, Image.open(row["image_path"]) as im:
            assert m.format == "PNG" and im.format == "JPEG" and m.size == im.size
            assert set(m.getdata()) == {0, 255}


def test_nested_unzip_folder_is_entered(mini):
    folder = input_dir(mini, "val")
    nested = folder / folder.name
    nested.mkdir()
    for jpg in folder.glob("*.jpg"):
        jpg.rename(nested / jpg.name)
    assert SOURCE.read(mini, splits="val").num_rows == 20


# ------------------------------------------------------------------ clear errors
def _first(folder: Path, pattern: str) -> Path:
    return sorted(folder.glob(pattern))[0]


def _two_files(root: Path) -> None:
    jpg = _first(input_dir(root, "train"), "*.jpg")
    shutil.copy(jpg, jpg.with_suffix(".JPG"))


def _cross_split(root: Path) -> None:
    jpg = _first(input_dir(root, "train"), "*.jpg")
    shutil.copy(jpg, input_dir(root, "test"))
    mask = ground_truth_dir(root, "train") / f"{jpg.stem}_segmentation.png"
    shutil.copy(mask, ground_truth_dir(root, "test"))


def _empty_input(root: Path) -> None:
    for jpg in input_dir(root, "val").glob("*.jpg"):
        jpg.unlink()


BAD_INPUTS = {
    "missing image folder": (
        lambda r: shutil.rmtree(input_dir(r, "test")),
        ["image folder ISIC2018_Task1-2_Test_Input not found"],
    ),
    "missing mask folder": (
        lambda r: shutil.rmtree(ground_truth_dir(r, "val")),
        ["mask folder ISIC2018_Task1_Validation_GroundTruth not found"],
    ),
    "mask absent": (
        lambda r: _first(ground_truth_dir(r, "train"), "*.png").unlink(),
        ["ISIC2018_Task1_Training_GroundTruth", "1 of 60 images have no mask"],
    ),
    "image absent": (
        lambda r: [p.unlink() for p in sorted(input_dir(r, "val").glob("*.jpg"))[:6]],
        ["ISIC2018_Task1-2_Validation_Input", "6 of 20 masks have no image", ", ..."],
    ),
    "two files for one id": (_two_files, ["two files for id", ".JPG"]),
    "id in two splits": (_cross_split, ["duplicate id", "train split", "again in the test split"]),
    "empty image folder": (_empty_input, ["no <image_id>.jpg images in the folder"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_clear_error_and_check_exit_2(case, mini, cli):
    mutate, expected = BAD_INPUTS[case]
    mutate(mini)
    assert_unreadable(cli, DATASET, mini, expected)


def test_bad_splits_option_exits_2(mini, cli):
    rc, report = _check(cli, mini, "--option", "splits=training")
    assert rc == 2 and "unknown split(s) ['training']" in report["problems"][0]
    rc, report = _check(cli, mini, "--option", "split=train")
    assert rc == 2 and "unknown option(s) ['split']" in report["problems"][0]
