"""ISIC 2019 training set (ISIC Challenge 2019, Task 1; Tschandl et al. 2018 (HAM10000), Codella
et al. 2017, Combalia et al. 2019 (BCN20000)).

25331 dermoscopic images, as the ISIC archive ships them::

    <root>/ISIC_2019_Training_GroundTruth.csv   image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK (one-hot 0.0/1.0)
    <root>/ISIC_2019_Training_Metadata.csv      image,age_approx,anatom_site_general,lesion_id,sex
    <root>/ISIC_2019_Training_Input/<image>.jpg

Ids are kept as written: 2074 end in ``_downsampled`` (the file is ``<id>.jpg``). Some copies of
the metadata name ``sex`` ``gender``; both are read into ``meta_sex``. Nested unzips
(``ISIC_2019_Training_Input/ISIC_2019_Training_Input/``) are accepted.

Nine classes in the ground truth's column order; ``UNK`` ("none of the others") is a class of the
challenge's test set and has no training image (count 0). ``group_id`` is ``lesion_id`` (HAM_...
and BCN_... ids; several images per lesion), or the image id itself where ``lesion_id`` is empty
(2084 images of the older ISIC archive). No official split (the test set's labels were never
published).

The 10015 images ``ISIC_0024306`` .. ``ISIC_0034320`` are exactly HAM10000 (same ids, same
lesion_ids): ``meta_in_ham10000`` is ``"true"`` for them (it is a provenance flag, not a clinical
feature), and ``read(root, exclude_ham10000=True)`` drops them, e.g. to test a model trained on
HAM10000 on the rest of ISIC 2019 without seeing a training image again.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import build_table, sample_row
from dermfuse_data.sources.base import DatasetSource, MetaFeature
from dermfuse_data.sources.publisher_files import (
    absent_images_error,
    bool_option,
    dataset_root,
    index_images,
    listed_ids,
    meta_cells,
    read_csv,
    reject_unknown_options,
    required_path,
    shown,
)

CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
CLASS_NAMES = {
    "MEL": "melanoma",
    "NV": "melanocytic nevus",
    "BCC": "basal cell carcinoma",
    "AK": "actinic keratosis",
    "BKL": "benign keratosis (solar lentigo / seborrheic keratosis / lichen planus-like keratosis)",
    "DF": "dermatofibroma",
    "VASC": "vascular lesion",
    "SCC": "squamous cell carcinoma",
    "UNK": "none of the others (challenge test set only; no training image)",
}
GROUND_TRUTH_FILE = "ISIC_2019_Training_GroundTruth.csv"
METADATA_FILE = "ISIC_2019_Training_Metadata.csv"
IMAGE_FOLDER = "ISIC_2019_Training_Input"
GROUND_TRUTH_COLUMNS = ("image",) + CLASSES
METADATA_COLUMNS = ("image", "age_approx", "anatom_site_general", "lesion_id", "sex")
#: other names of metadata columns in some copies
METADATA_ALIASES = {"sex": ("gender",)}
#: raw columns kept as ``meta_*``; ``in_ham10000`` is computed (``"true"``/``"false"``)
META_COLUMNS = ("age_approx", "anatom_site_general", "lesion_id", "sex", "in_ham10000")
#: image numbers of the HAM10000 subset (inclusive)
HAM10000_RANGE = (24306, 34320)
DOWNSAMPLED_SUFFIX = "_downsampled"
_ID_NUMBER = re.compile(r"^ISIC_(\d+)(?:_downsampled)?$")
DOWNLOAD_HINT = (
    "download ISIC_2019_Training_Input.zip, ISIC_2019_Training_GroundTruth.csv and "
    "ISIC_2019_Training_Metadata.csv from https://challenge.isic-archive.com/data/#2019, "
    "unzip the images next to the two CSV files and pass that folder"
)
OPTIONS = {
    "exclude_ham10000": "bool (default false; 'true'/'false' from the command line): drop the 10015 "
    "HAM10000 images (ISIC_0024306..ISIC_0034320, meta_in_ham10000=true), e.g. "
    "for cross-dataset evaluation of a model trained on HAM10000"
}

FEATURES = (
    MetaFeature("age_approx", "age_approx", "numeric"),
    MetaFeature("anatom_site_general", "anatom_site_general", "categorical"),
    MetaFeature("sex", "sex", "categorical"),
)


def in_ham10000(image_id: str) -> bool:
    """Whether ``image_id`` (with or without ``_downsampled``) is one of the HAM10000 images."""
    match = _ID_NUMBER.match(image_id)
    return bool(match) and HAM10000_RANGE[0] <= int(match.group(1)) <= HAM10000_RANGE[1]


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
def _label_of(path: Path, line: int, image: str, cells: list[str], col: dict[str, int]) -> int:
    """Class index of a one-hot ground-truth row; exactly one class must be 1."""
    marked = []
    for index, name in enumerate(CLASSES):
        text = cells[col[name]].strip()
        try:
            value = float(text)
        except ValueError:
            value = None
        if value not in (0.0, 1.0):
            raise DatasetError(
                f"column {name!r} of image {image} holds {text!r}, not 0.0 or 1.0",
                path=path,
                row=line,
                hint="the ground truth is one-hot: one 1.0 and eight 0.0 per row; "
                "fix the cell or restore the original file",
            )
        if value == 1.0:
            marked.append(index)
    if len(marked) != 1:
        what = "no class" if not marked else f"{len(marked)} classes {[CLASSES[i] for i in marked]}"
        raise DatasetError(
            f"image {image} is marked as {what}",
            path=path,
            row=line,
            hint=f"each row needs exactly one 1.0 among {list(CLASSES)}; fix the "
            "row or restore the original ground truth",
        )
    return marked[0]


def _ground_truth(path: Path) -> list[tuple[int, str, int]]:
    """``(line, image, label)`` of every ground-truth row, checking ids and the one-hot encoding."""
    table = read_csv(path, GROUND_TRUTH_COLUMNS, what="ISIC 2019 ground truth")
    return [
        (line, image, _label_of(path, line, image, cells, table.col))
        for line, image, cells in listed_ids(table, "image")
    ]


def _metadata(path: Path) -> tuple[dict[str, dict[str, str | None]], list[str]]:
    """Raw ``meta_*`` cells per image (empty -> None) and the extra column names."""
    table = read_csv(path, METADATA_COLUMNS, aliases=METADATA_ALIASES, what="ISIC 2019 metadata")
    extra = [c for c in table.header if c and c not in METADATA_COLUMNS]
    names = [c for c in METADATA_COLUMNS if c != "image"] + extra
    return {image: meta_cells(table, cells, names) for _, image, cells in listed_ids(table, "image")}, extra


def _unmatched_error(ids: list[str], listed_in: str, not_in: str, path: Path) -> DatasetError:
    return DatasetError(
        f"{len(ids)} image(s) listed in {listed_in} have no row in {not_in} ({shown(ids)})",
        path=path,
        hint=f"{GROUND_TRUTH_FILE} and {METADATA_FILE} must list the same images; "
        "restore both files from the same ISIC 2019 training release",
    )


def read(root: str | Path, **options) -> pa.Table:
    """Index the ISIC 2019 training set at ``root`` into the common sample table (no decoding).

    One row per ground-truth row, in file order: ``sample_id`` = ``image`` as written (with
    ``_downsampled``), ``label`` indexes :data:`CLASSES`, ``group_id`` = ``lesion_id`` or the image
    id where it is empty, ``official_split`` null, and ``age_approx``, ``anatom_site_general``,
    ``lesion_id``, ``sex`` (or ``gender``), any extra metadata columns and ``in_ham10000``
    (``"true"``/``"false"``) as ``meta_*`` strings, empty cells null.

    Option ``exclude_ham10000`` (bool or ``"true"``/``"false"``, default false): leave out the
    HAM10000 images (their files are then not required). Raises :class:`DatasetError` for a
    missing root / CSV / column / image folder, a wrong cell count, a ground-truth row that is not
    one-hot, an empty or duplicate id, ids in one CSV but not the other, a listed image that is not
    on disk, or an unknown option.
    """
    reject_unknown_options("isic2019", options, OPTIONS)
    exclude = bool_option("exclude_ham10000", options.get("exclude_ham10000", False))
    root = dataset_root(root, DOWNLOAD_HINT)
    truth_path = required_path(root, GROUND_TRUTH_FILE, DOWNLOAD_HINT)
    meta_path = required_path(root, METADATA_FILE, DOWNLOAD_HINT)
    truth = _ground_truth(truth_path)
    meta, extra = _metadata(meta_path)
    truth_ids = {image for _, image, _ in truth}
    lacking = [image for _, image, _ in truth if image not in meta]
    if lacking:
        raise _unmatched_error(lacking, GROUND_TRUTH_FILE, METADATA_FILE, meta_path)
    surplus = [image for image in meta if image not in truth_ids]
    if surplus:
        raise _unmatched_error(surplus, METADATA_FILE, GROUND_TRUTH_FILE, truth_path)
    folder = root / IMAGE_FOLDER
    if not folder.is_dir():
        raise DatasetError(f"no {IMAGE_FOLDER} folder", path=folder, hint=DOWNLOAD_HINT)
    images = index_images([folder], ".jpg")

    meta_names = [c for c in META_COLUMNS if c != "in_ham10000"] + extra + ["in_ham10000"]
    out, absent = [], []
    for _, image, label in truth:
        ham = in_ham10000(image)
        if exclude and ham:
            continue
        path = images.get(image + ".jpg")
        if path is None:
            absent.append(image)
            continue
        cells = meta[image]
        group = (cells["meta_lesion_id"] or "").strip() or image
        out.append(sample_row(image, path, label, CLASSES, group, meta={**cells, "meta_in_ham10000": str(ham).lower()}))
    if absent:
        raise absent_images_error(
            absent,
            len(out) + len(absent),
            GROUND_TRUTH_FILE,
            folder,
            hint=f"images must be {IMAGE_FOLDER}/<image>.jpg, named exactly as the image column "
            "(including any _downsampled suffix); unzip ISIC_2019_Training_Input.zip",
        )
    return build_table(out, meta_names)


SOURCE = DatasetSource(
    name="isic2019",
    title="ISIC 2019 training set (dermoscopy: HAM10000 + BCN20000 + ISIC archive)",
    classes=CLASSES,
    read=read,
    features=FEATURES,
    group="lesion",
    notes="No official split: use a grouped split by lesion_id (image id where it is empty). UNK "
    "has no training image. meta_in_ham10000 flags the 10015 HAM10000 images; "
    "exclude_ham10000=true drops them for cross-dataset evaluation.",
    options=OPTIONS,
    extra={
        "class_names": CLASS_NAMES,
        "ground_truth_columns": GROUND_TRUTH_COLUMNS,
        "metadata_columns": METADATA_COLUMNS,
        "ham10000_range": HAM10000_RANGE,
    },
)
