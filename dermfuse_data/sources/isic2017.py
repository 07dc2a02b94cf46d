"""ISIC 2017 challenge, Parts 1 and 3 (Codella et al., ISBI 2018, arXiv:1710.05006).

Dermoscopic JPEGs with lesion masks (Part 1, segmentation) and melanoma / seborrheic keratosis
labels (Part 3, classification), as the challenge site ships them (one zip per folder or file)::

    <root>/ISIC-2017_Training_Data/ISIC_0000000.jpg                  2000 images
    <root>/ISIC-2017_Training_Data/ISIC_0000000_superpixels.png      Part 2 superpixels (ignored)
    <root>/ISIC-2017_Training_Data/ISIC-2017_Training_Data_metadata.csv   image_id,age_approximate,sex
    <root>/ISIC-2017_Training_Part1_GroundTruth/ISIC_0000000_segmentation.png   masks, 0/255
    <root>/ISIC-2017_Training_Part3_GroundTruth.csv        image_id,melanoma,seborrheic_keratosis
    ... and the same for ``Validation`` (150 images) and ``Test_v2`` (600 images)

Three classes in the order of the Part 3 columns: ``melanoma``, ``seborrheic_keratosis`` and
``nevus`` (neither column set); ``labels=melanoma`` relabels to two, ``other`` and ``melanoma``
(Part 3's melanoma-vs-rest task, a protocol variant: :data:`LABELINGS`). The official split
(train/val/test) is kept; ``group_id`` is the image id (the challenge gives no lesion or patient
id). The metadata CSV may also sit in ``<root>``; a split without one gets null metadata, and
missing values are kept as written (``unknown``).
A split without its ``Part1_GroundTruth`` folder gets null masks (classification still works);
when the folder exists every image must have its mask.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa

from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import build_table, sample_row
from dermfuse_data.sources.base import DatasetSource, MetaFeature
from dermfuse_data.sources.publisher_files import (
    SPLITS_OPTION_HELP,
    absent_images_error,
    check_cross_split_duplicates,
    dataset_root,
    index_folder,
    listed_ids,
    parse_splits,
    read_csv,
    required_path,
    shown,
)

CLASSES = ("melanoma", "seborrheic_keratosis", "nevus")
#: ``labels`` option -> class names in label order (``diagnosis``: the three Part 3 classes)
LABELINGS = {"diagnosis": CLASSES, "melanoma": ("other", "melanoma")}
LABELS_OPTION_HELP = (
    "diagnosis (default: melanoma / seborrheic_keratosis / nevus) or melanoma (two classes, other / "
    "melanoma: Part 3's melanoma-vs-rest task)"
)
#: official split -> the name the challenge uses in its folder and file names
SPLIT_TAGS = {"train": "Training", "val": "Validation", "test": "Test_v2"}
LABEL_COLUMNS = ("image_id", "melanoma", "seborrheic_keratosis")
METADATA_COLUMNS = ("image_id", "age_approximate", "sex")
META_COLUMNS = METADATA_COLUMNS[1:]
#: published class counts per split (melanoma, seborrheic keratosis, nevus)
REAL_COUNTS = {"train": (374, 254, 1372), "val": (30, 42, 78), "test": (117, 90, 393)}
DOWNLOAD_HINT = (
    "download the ISIC 2017 challenge data (challenge.isic-archive.com/data/#2017): "
    "the ISIC-2017_<Split>_Data, _Part1_GroundTruth and _Part3_GroundTruth.csv files "
    "of each split, unzipped side by side into one folder"
)
FEATURES = (MetaFeature("age_approximate", "age_approximate", "numeric"), MetaFeature("sex", "sex", "categorical"))


def data_dir(root: Path, split: str) -> Path:
    """``ISIC-2017_<Split>_Data`` of ``split``."""
    return root / f"ISIC-2017_{SPLIT_TAGS[split]}_Data"


def labels_csv(root: Path, split: str) -> Path:
    """``ISIC-2017_<Split>_Part3_GroundTruth.csv`` of ``split``."""
    return root / f"ISIC-2017_{SPLIT_TAGS[split]}_Part3_GroundTruth.csv"


def mask_dir(root: Path, split: str) -> Path:
    """``ISIC-2017_<Split>_Part1_GroundTruth`` of ``split``."""
    return root / f"ISIC-2017_{SPLIT_TAGS[split]}_Part1_GroundTruth"


def metadata_name(split: str) -> str:
    """File name of the per-split metadata CSV."""
    return f"ISIC-2017_{SPLIT_TAGS[split]}_Data_metadata.csv"


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
def _flag(value: str) -> bool | None:
    """``0.0``/``1.0`` (or ``0``/``1``) -> bool; anything else -> None."""
    try:
        number = float(value)
    except ValueError:
        return None
    return bool(number) if number in (0.0, 1.0) else None


def _read_labels(path: Path) -> list[tuple[int, str, int]]:
    """``(line, image_id, label)`` rows of a Part 3 ground-truth CSV."""
    table = read_csv(path, LABEL_COLUMNS, what="Part 3 ground truth", download_hint=DOWNLOAD_HINT)
    out = []
    for line, image_id, cells in listed_ids(table, "image_id"):
        flags = {}
        for name in ("melanoma", "seborrheic_keratosis"):
            cell = cells[table.col[name]]
            flags[name] = _flag(cell.strip())
            if flags[name] is None:
                raise DatasetError(
                    f"unknown value {cell!r} in column {name!r} (image_id {image_id})",
                    path=path,
                    row=line,
                    hint="Part 3 labels are 0.0 or 1.0; fix the value",
                )
        if flags["melanoma"] and flags["seborrheic_keratosis"]:
            raise DatasetError(
                f"image_id {image_id} is marked both melanoma and seborrheic_keratosis",
                path=path,
                row=line,
                hint="each image has one diagnosis; set one of the two columns to 0.0",
            )
        out.append((line, image_id, 0 if flags["melanoma"] else 1 if flags["seborrheic_keratosis"] else 2))
    return out


def _find_metadata(root: Path, split: str) -> Path | None:
    """The split's metadata CSV in its data folder (as shipped) or in ``root``; None if absent."""
    for folder in (data_dir(root, split), data_dir(root, split) / data_dir(root, split).name, root):
        path = folder / metadata_name(split)
        if path.is_file():
            return path
    return None


def _read_metadata(path: Path, ids: list[str]) -> tuple[list[str], dict[str, dict[str, str | None]]]:
    """Column names and ``image_id -> {"meta_<column>": value}`` (stripped; empty -> None) of a
    metadata CSV that must cover ``ids``."""
    table = read_csv(path, METADATA_COLUMNS, what="metadata CSV", download_hint=DOWNLOAD_HINT)
    names = [c for c in table.header if c and c != "image_id"]
    values = {
        image_id: {"meta_" + n: (cells[table.col[n]].strip() or None) for n in names}
        for _, image_id, cells in listed_ids(table, "image_id")
    }
    absent = [i for i in ids if i not in values]
    if absent:
        raise DatasetError(
            f"{len(absent)} of {len(ids)} images of the ground truth have no metadata row ({shown(absent)})",
            path=path,
            hint="this is probably another split's metadata file: restore the right one, or delete "
            "it to read this split without metadata",
        )
    return names, values


def classes_for(labels: str = "diagnosis", **_other_options) -> tuple[str, ...]:
    """Class names in label order under the ``labels`` option (:data:`LABELINGS`); a clear error for others."""
    if labels not in LABELINGS:
        raise DatasetError(
            f"option labels={labels!r} is not one of {sorted(LABELINGS)}",
            path="isic2017 read()",
            hint="labels=diagnosis (3 classes) or labels=melanoma (melanoma vs rest)",
        )
    return LABELINGS[labels]


def _relabel(label: int, classes: tuple[str, ...]) -> int:
    """A Part 3 class index (:data:`CLASSES`) as an index into ``classes`` (melanoma vs rest: 1 or 0)."""
    return label if classes == CLASSES else int(CLASSES[label] == "melanoma")


def _split_rows(
    root: Path, split: str, classes: tuple[str, ...] = CLASSES
) -> tuple[list[dict], list[str], list[str], list[str]]:
    """Rows of one split (labelled into ``classes``), its metadata columns, and the ids whose image / mask is absent."""
    gt, images_dir, masks_dir = labels_csv(root, split), data_dir(root, split), mask_dir(root, split)
    required_path(
        root, gt.name, DOWNLOAD_HINT + f"; or read only some splits with splits=... (now {split} is asked for)"
    )
    required_path(root, images_dir.name, DOWNLOAD_HINT, folder=True, what="image folder")
    labels = _read_labels(gt)
    ids = [image_id for _, image_id, _ in labels]
    meta_path = _find_metadata(root, split)
    names, meta = _read_metadata(meta_path, ids) if meta_path else ([], {})
    images = index_folder(images_dir, ".jpg")
    masks = index_folder(masks_dir, "_segmentation.png") if masks_dir.is_dir() else None
    rows, no_image, no_mask = [], [], []
    for _, image_id, label in labels:
        image = images.get(image_id)
        mask = None if masks is None else masks.get(image_id)
        if image is None:
            no_image.append(image_id)
        if masks is not None and mask is None:
            no_mask.append(image_id)
        row = sample_row(image_id, image, _relabel(label, classes), classes, None, mask, split, meta.get(image_id, {}))
        rows.append(row)
    return rows, names, no_image, no_mask


def read(root: str | Path, splits: str | Iterable[str] | None = None, labels: str = "diagnosis") -> pa.Table:
    """Index ISIC 2017 at ``root`` into the common sample table (images are not decoded).

    One row per Part 3 ground-truth row, splits in train/val/test order and file order within:
    ``sample_id`` = ``group_id`` = ``image_id``, ``official_split`` from the file name, ``mask_path``
    the Part 1 mask (null where the split's mask folder is absent), ``meta_age_approximate`` and
    ``meta_sex`` raw (null where the split has no metadata CSV). ``splits`` (``"train,val"``)
    restricts reading to some splits; ``labels="melanoma"`` labels melanoma 1 and the rest 0
    (:data:`LABELINGS`). Raises :class:`DatasetError` (file, row, what to do) for a
    missing root / ground-truth CSV / image folder / column, a value other than 0.0/1.0, both
    diagnoses on one row, a duplicate id (within or across splits), a metadata file missing rows,
    and listed images or masks that are not on disk.
    """
    classes = classes_for(labels)
    root = dataset_root(root, DOWNLOAD_HINT)
    wanted = parse_splits(splits, root)
    rows, meta_names, ids_by_split = [], list(META_COLUMNS), {}
    for split in wanted:
        split_rows, names, no_image, no_mask = _split_rows(root, split, classes)
        if no_image:
            raise absent_images_error(
                no_image,
                len(split_rows),
                labels_csv(root, split).name,
                data_dir(root, split),
                hint=f"put every image as {data_dir(root, split).name}/<image_id>.jpg; unzip the whole image archive",
            )
        if no_mask:
            raise DatasetError(
                f"{len(no_mask)} of {len(split_rows)} images have no mask "
                f"<image_id>_segmentation.png ({shown(no_mask)})",
                path=mask_dir(root, split),
                hint="unzip the whole Part 1 ground-truth archive, or remove the folder to read "
                "this split without masks",
            )
        meta_names += [n for n in names if n not in meta_names]
        ids_by_split[split] = [r["sample_id"] for r in split_rows]
        rows += split_rows
    check_cross_split_duplicates(ids_by_split, {s: labels_csv(root, s) for s in wanted})
    return build_table(rows, meta_names)


SOURCE = DatasetSource(
    name="isic2017",
    title="ISIC 2017 challenge (Part 1 lesion masks + Part 3 melanoma / seborrheic keratosis)",
    classes=CLASSES,
    read=read,
    features=FEATURES,
    has_masks=True,
    tasks=("classification", "segmentation"),
    notes="Official split train 2000 / val 150 / test 600 is kept. Classes are the Part 3 columns; "
    "nevus = neither. Metadata (age_approximate, sex; 'unknown' = missing) only where the "
    "split's metadata CSV is present.",
    options={"splits": SPLITS_OPTION_HELP, "labels": LABELS_OPTION_HELP},
    extra={"split_tags": SPLIT_TAGS, "real_counts": REAL_COUNTS},
    classes_for=classes_for,
)
