"""HAM10000 (Tschandl, Rosendahl & Kittler, Sci. Data 5:180161, 2018; Harvard Dataverse
doi:10.7910/DVN/DBW86T; also ISIC 2018 Task 3 training set).

10015 dermoscopic images of 7470 lesions, as the publisher ships them::

    <root>/HAM10000_metadata.csv                 lesion_id,image_id,dx,dx_type,age,sex,localization[,dataset]
    <root>/HAM10000_images_part_1/<image_id>.jpg   ISIC_0024306 .. ISIC_0029305
    <root>/HAM10000_images_part_2/<image_id>.jpg   ISIC_0029306 .. ISIC_0034320

Also accepted: all JPEGs in one ``<root>/HAM10000_images/`` folder, folder names in any case
(Kaggle's copy ships ``ham10000_images_part_1/`` next to ``HAM10000_images_part_1/``) and nested
unzips (``HAM10000_images_part_1/HAM10000_images_part_1/``). The metadata file exists in two
releases: 8 columns with ``dataset`` (acquisition cohort), CRLF, ages as ``80``; and 7 columns,
LF, ages as ``80.0``. Both are read; cells are kept as written (``meta_dataset`` is null in the
7-column release). Missing age is empty, missing sex / localization is ``unknown``.

Seven classes in alphabetical order of the ``dx`` codes (the order of ``LabelEncoder`` /
``ImageFolder`` that most HAM10000 code uses; ISIC 2018 Task 3's CSV order is
:data:`ISIC2018_TASK3_ORDER`). ``group_id`` is ``lesion_id`` (up to 6 images per lesion); there
is no official split. ``group_by=image`` makes every image its own group (an image-level split, the
protocol of a paper that does not say it grouped by lesion): images of one lesion then land in train
and test alike, so it exists to *measure* that leak (a warning says so), never to report a result.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pyarrow as pa

from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import build_table, sample_row
from dermfuse_data.sources.base import DatasetSource, MetaFeature
from dermfuse_data.sources.publisher_files import (
    absent_images_error,
    class_cell,
    dataset_root,
    index_images,
    listed_ids,
    meta_cells,
    read_csv,
    reject_unknown_options,
    required_cell,
    required_path,
)

CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
CLASS_NAMES = {
    "akiec": "actinic keratosis / intraepithelial carcinoma (Bowen's disease)",
    "bcc": "basal cell carcinoma",
    "bkl": "benign keratosis-like lesion (solar lentigo, seborrheic keratosis, lichen planus-like keratosis)",
    "df": "dermatofibroma",
    "mel": "melanoma",
    "nv": "melanocytic nevus",
    "vasc": "vascular lesion",
}
#: class order of the ISIC 2018 Task 3 ground-truth CSV (for mapping to that format)
ISIC2018_TASK3_ORDER = ("mel", "nv", "bcc", "akiec", "bkl", "df", "vasc")
METADATA_FILE = "HAM10000_metadata.csv"
#: columns of the 7-column release; the 8-column release adds ``dataset``
REQUIRED_COLUMNS = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization")
COLUMNS = REQUIRED_COLUMNS + ("dataset",)
#: raw columns kept as ``meta_*`` (``dataset`` always present, null in the 7-column release)
META_COLUMNS = ("dx_type", "age", "sex", "localization", "dataset")
IMAGE_FOLDERS = ("HAM10000_images_part_1", "HAM10000_images_part_2")
SINGLE_IMAGE_FOLDER = "HAM10000_images"
#: last image of part 1 (the publisher's split of the images over the two zip files)
PART_1_LAST = 29305
DOWNLOAD_HINT = (
    "download HAM10000 from Harvard Dataverse (doi:10.7910/DVN/DBW86T), unzip "
    "HAM10000_images_part_1.zip and HAM10000_images_part_2.zip next to "
    "HAM10000_metadata.csv and pass that folder"
)

WHY_DX_TYPE_LEAKS = (
    "dx_type says how the diagnosis was confirmed, and that depends on the diagnosis: in the "
    "published HAM10000_metadata.csv all 3704 follow_up images are nv and all 69 confocal images "
    "are bkl, while every mel (1113), bcc (514) and akiec (327) image is histo; follow_up alone "
    "identifies 55% of the nv images with no error"
)
WHY_DATASET_LEAKS = (
    "dataset is the acquisition cohort, a shortcut to the label: 3720 of the 3954 vidir_molemax "
    "images (94%) are nv and that cohort holds all 3704 follow_up images, while rosendahl holds "
    "295 of the 327 akiec; only the 8-column release has it"
)
GROUP_BY_OPTION_HELP = (
    "lesion (default: lesion_id, images of one lesion never cross splits) or image (each image its "
    "own group: the leaky image-level split, for studying the leak only)"
)
IMAGE_LEVEL_WARNING = (
    "HAM10000 read with group_by=image: images of the same lesion (up to 6) can fall in train and test, "
    "so test numbers are optimistic; use this only to measure that leak (group_by=lesion is the default)"
)
FEATURES = (
    MetaFeature("age", "age", "numeric"),
    MetaFeature("sex", "sex", "categorical"),
    MetaFeature("localization", "localization", "categorical"),
    MetaFeature("dx_type", "dx_type", "categorical", leaks_label=True, why_leaks=WHY_DX_TYPE_LEAKS),
    MetaFeature("dataset", "dataset", "categorical", leaks_label=True, why_leaks=WHY_DATASET_LEAKS),
)


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
def _image_folders(root: Path) -> list[Path]:
    """The image folders at ``root``: the two parts and/or ``HAM10000_images``, any letter case."""
    publisher = IMAGE_FOLDERS + (SINGLE_IMAGE_FOLDER,)
    wanted = {name.lower() for name in publisher}
    # the publisher's spelling before other casings of the same folder (deterministic order)
    folders = sorted(
        (p for p in root.iterdir() if p.is_dir() and p.name.lower() in wanted),
        key=lambda p: (p.name.lower(), p.name not in publisher, p.name),
    )
    if not folders:
        raise DatasetError(
            f"no image folder (expected {IMAGE_FOLDERS[0]}/ and {IMAGE_FOLDERS[1]}/, or {SINGLE_IMAGE_FOLDER}/)",
            path=root / IMAGE_FOLDERS[0],
            hint=DOWNLOAD_HINT,
        )
    return folders


def read(root: str | Path, **options) -> pa.Table:
    """Index HAM10000 at ``root`` into the common sample table (images are not decoded).

    One row per ``HAM10000_metadata.csv`` row, in file order: ``sample_id`` = ``image_id``,
    ``label`` indexes :data:`CLASSES` (``dx``), ``group_id`` = ``lesion_id``, ``official_split``
    null, and ``dx_type``, ``age``, ``sex``, ``localization``, ``dataset`` (plus any extra columns)
    as raw ``meta_*`` strings, empty cells as null and ``unknown`` kept. Option ``group_by``:
    ``lesion`` (default) or ``image`` (``group_id`` = ``image_id``; warns, see module doc). Raises
    :class:`DatasetError` (file, row/column, what to do) for a missing root / metadata file /
    column / image folder, a wrong cell count, an unknown ``dx``, an empty id, a duplicate
    ``image_id`` or a listed image that is not on disk.
    """
    reject_unknown_options("ham10000", options, SOURCE.options)
    group_by = options.get("group_by", "lesion")
    if group_by not in ("lesion", "image"):
        raise DatasetError(
            f"option group_by={group_by!r} is not lesion or image",
            path="ham10000 read()",
            hint="group_by=lesion (leak-free, the default) or group_by=image (leakage studies only)",
        )
    if group_by == "image":
        warnings.warn(IMAGE_LEVEL_WARNING, stacklevel=2)
    root = dataset_root(root, DOWNLOAD_HINT)
    meta_path = required_path(root, METADATA_FILE, DOWNLOAD_HINT)
    table = read_csv(meta_path, REQUIRED_COLUMNS, what="HAM10000 metadata file")
    meta_names = list(META_COLUMNS) + [c for c in table.header if c and c not in COLUMNS]
    images = index_images(_image_folders(root), ".jpg")

    out, absent = [], []
    for line, image_id, cells in listed_ids(table, "image_id"):
        lesion_id = required_cell(table, line, cells, "lesion_id")
        label = class_cell(table, line, cells, "dx", CLASSES, f"image_id {image_id}", "HAM10000 dx codes")
        image = images.get(image_id + ".jpg")
        if image is None:
            absent.append(image_id)
            continue
        group = lesion_id if group_by == "lesion" else image_id
        out.append(sample_row(image_id, image, label, CLASSES, group, meta=meta_cells(table, cells, meta_names)))
    if absent:
        raise absent_images_error(
            absent,
            len(table.rows),
            METADATA_FILE,
            root / IMAGE_FOLDERS[0],
            hint=f"images must be <image_id>.jpg in {IMAGE_FOLDERS[0]}/ and {IMAGE_FOLDERS[1]}/ "
            f"(or all in {SINGLE_IMAGE_FOLDER}/); unzip both image parts",
        )
    return build_table(out, meta_names)


SOURCE = DatasetSource(
    name="ham10000",
    title="HAM10000 (dermoscopic images of pigmented lesions, ISIC 2018 Task 3 training set)",
    classes=CLASSES,
    read=read,
    features=FEATURES,
    group="lesion",
    notes="No official split: use a grouped split by lesion_id (up to 6 images per lesion). "
    "Missing age is empty, missing sex/localization 'unknown'. 'dx_type' and 'dataset' leak "
    "the label (all follow_up images are nv).",
    options={"group_by": GROUP_BY_OPTION_HELP},
    extra={"class_names": CLASS_NAMES, "columns": COLUMNS, "isic2018_task3_order": ISIC2018_TASK3_ORDER},
)
