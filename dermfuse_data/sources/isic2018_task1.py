"""ISIC 2018 challenge Task 1, lesion boundary segmentation (Codella et al., arXiv:1902.03368).

Dermoscopic JPEGs and binary lesion masks, as the challenge site ships them (one zip per folder)::

    <root>/ISIC2018_Task1-2_Training_Input/ISIC_0000000.jpg          2594 images
    <root>/ISIC2018_Task1_Training_GroundTruth/ISIC_0000000_segmentation.png   0/255, image size
    <root>/ISIC2018_Task1-2_Validation_Input/  ISIC2018_Task1_Validation_GroundTruth/   100
    <root>/ISIC2018_Task1-2_Test_Input/        ISIC2018_Task1_Test_GroundTruth/        1000

The folders also hold ``LICENSE.txt`` / ``ATTRIBUTION.txt`` (ignored, as is every file that is not
an image or mask). There is no CSV: the image folder is the list of samples. Segmentation only: one
class, ``lesion`` (label 0). The official split is kept; ``group_id`` is the image id. The
validation and test masks were published after the challenge, so ``splits=train`` reads a copy that
has only the training part.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa

from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import build_table, sample_row
from dermfuse_data.sources.base import DatasetSource
from dermfuse_data.sources.publisher_files import (
    SPLITS_OPTION_HELP,
    check_cross_split_duplicates,
    dataset_root,
    index_folder,
    parse_splits,
    required_path,
    shown,
)

CLASSES = ("lesion",)
SPLIT_TAGS = {"train": "Training", "val": "Validation", "test": "Test"}
#: official split sizes (challenge description; the test assert them on a stand-in tree)
REAL_SPLIT_SIZES = {"train": 2594, "val": 100, "test": 1000}
IMAGE_SUFFIX = ".jpg"
MASK_SUFFIX = "_segmentation.png"
DOWNLOAD_HINT = (
    "download ISIC 2018 Task 1 (challenge.isic-archive.com/data/#2018): the "
    "ISIC2018_Task1-2_<Split>_Input and ISIC2018_Task1_<Split>_GroundTruth zips of each "
    "split, unzipped side by side into one folder"
)


def input_dir(root: Path, split: str) -> Path:
    """``ISIC2018_Task1-2_<Split>_Input`` of ``split``."""
    return root / f"ISIC2018_Task1-2_{SPLIT_TAGS[split]}_Input"


def ground_truth_dir(root: Path, split: str) -> Path:
    """``ISIC2018_Task1_<Split>_GroundTruth`` of ``split``."""
    return root / f"ISIC2018_Task1_{SPLIT_TAGS[split]}_GroundTruth"


def _split_rows(root: Path, split: str) -> list[dict]:
    """Rows of one split (sorted by id), after checking that images and masks pair up."""
    images_dir, masks_dir = input_dir(root, split), ground_truth_dir(root, split)
    for folder, what in ((images_dir, "image folder"), (masks_dir, "mask folder")):
        required_path(
            root,
            folder.name,
            DOWNLOAD_HINT + f"; or read only the splits you have with splits=... (the {split} split is asked for)",
            folder=True,
            what=what,
        )
    images = index_folder(images_dir, IMAGE_SUFFIX)
    masks = index_folder(masks_dir, MASK_SUFFIX)
    if not images:
        raise DatasetError(
            f"no <image_id>{IMAGE_SUFFIX} images in the folder",
            path=images_dir,
            hint="unzip the image archive into this folder; " + DOWNLOAD_HINT,
        )
    no_mask = sorted(set(images) - set(masks))
    if no_mask:
        raise DatasetError(
            f"{len(no_mask)} of {len(images)} images have no mask <image_id>{MASK_SUFFIX} ({shown(no_mask)})",
            path=masks_dir,
            hint="unzip the whole ground-truth archive of this split (its masks pair one-to-one with the images)",
        )
    no_image = sorted(set(masks) - set(images))
    if no_image:
        raise DatasetError(
            f"{len(no_image)} of {len(masks)} masks have no image <image_id>{IMAGE_SUFFIX} ({shown(no_image)})",
            path=images_dir,
            hint="unzip the whole image archive of this split, or check that the ground-truth folder "
            "belongs to this split",
        )
    return [sample_row(i, images[i], 0, CLASSES, mask_path=masks[i], official_split=split) for i in sorted(images)]


def read(root: str | Path, splits: str | Iterable[str] | None = None) -> pa.Table:
    """Index ISIC 2018 Task 1 at ``root`` into the common sample table (images are not decoded).

    One row per image of each requested split (train/val/test order, ids sorted), with its mask,
    label 0 (``lesion``), ``group_id`` = image id and ``official_split``; no metadata columns.
    ``splits`` (``"train"``, ``"train,val"``) restricts reading to some splits. Raises
    :class:`DatasetError` for a missing root or folder, an empty image folder, images without masks,
    masks without images, and an id found twice (two files, or two splits).
    """
    root = dataset_root(root, DOWNLOAD_HINT)
    wanted = parse_splits(splits, root)
    rows, ids_by_split = [], {}
    for split in wanted:
        split_rows = _split_rows(root, split)
        ids_by_split[split] = [r["sample_id"] for r in split_rows]
        rows += split_rows
    check_cross_split_duplicates(ids_by_split, {s: input_dir(root, s) for s in wanted})
    return build_table(rows)


SOURCE = DatasetSource(
    name="isic2018_task1",
    title="ISIC 2018 Task 1 (lesion boundary segmentation)",
    classes=CLASSES,
    read=read,
    has_masks=True,
    tasks=("segmentation",),
    notes="Segmentation only (one class). Official split train 2594 / val 100 / test 1000; "
    "val/test masks came out after the challenge: use splits=train for a training-only copy.",
    options={"splits": SPLITS_OPTION_HELP},
    extra={"split_tags": SPLIT_TAGS, "real_split_sizes": REAL_SPLIT_SIZES},
)
