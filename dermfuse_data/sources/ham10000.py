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
is no official split.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa

from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import build_table
from dermfuse_data.sources.base import DatasetSource, MetaFeature
from dermfuse_data.sources.publisher_files import (absent_images_error, dataset_root,
                                                   duplicate_error, index_images, read_csv,
                                                   reject_unknown_options, required_file)
from dermfuse_data.synthetic import (class_counts, count_image_classes, draw_lesion, image_class_of,
                                     maybe_missing, save_image)

CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
CLASS_NAMES = {
    "akiec": "actinic keratosis / intraepithelial carcinoma (Bowen's disease)",
    "bcc": "basal cell carcinoma",
    "bkl": "benign keratosis-like lesion (solar lentigo, seborrheic keratosis, lichen planus-like "
           "keratosis)",
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
DOWNLOAD_HINT = ("download HAM10000 from Harvard Dataverse (doi:10.7910/DVN/DBW86T), unzip "
                 "HAM10000_images_part_1.zip and HAM10000_images_part_2.zip next to "
                 "HAM10000_metadata.csv and pass that folder")

WHY_DX_TYPE_LEAKS = (
    "dx_type says how the diagnosis was confirmed, and that depends on the diagnosis: in the "
    "published HAM10000_metadata.csv all 3704 follow_up images are nv and all 69 confocal images "
    "are bkl, while every mel (1113), bcc (514) and akiec (327) image is histo; follow_up alone "
    "identifies 55% of the nv images with no error")
WHY_DATASET_LEAKS = (
    "dataset is the acquisition cohort, a shortcut to the label: 3720 of the 3954 vidir_molemax "
    "images (94%) are nv and that cohort holds all 3704 follow_up images, while rosendahl holds "
    "295 of the 327 akiec; only the 8-column release has it")
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
    folders = sorted((p for p in root.iterdir() if p.is_dir() and p.name.lower() in wanted),
                     key=lambda p: (p.name.lower(), p.name not in publisher, p.name))
    if not folders:
        raise DatasetError(
            f"no image folder (expected {IMAGE_FOLDERS[0]}/ and {IMAGE_FOLDERS[1]}/, or "
            f"{SINGLE_IMAGE_FOLDER}/)", path=root / IMAGE_FOLDERS[0],
            hint=DOWNLOAD_HINT)
    return folders


def read(root: str | Path, **options) -> pa.Table:
    """Index HAM10000 at ``root`` into the common sample table (images are not decoded).

    One row per ``HAM10000_metadata.csv`` row, in file order: ``sample_id`` = ``image_id``,
    ``label`` indexes :data:`CLASSES` (``dx``), ``group_id`` = ``lesion_id``, ``official_split``
    null, and ``dx_type``, ``age``, ``sex``, ``localization``, ``dataset`` (plus any extra columns)
    as raw ``meta_*`` strings, empty cells as null and ``unknown`` kept. Takes no options. Raises
    :class:`DatasetError` (file, row/column, what to do) for a missing root / metadata file /
    column / image folder, a wrong cell count, an unknown ``dx``, an empty id, a duplicate
    ``image_id`` or a listed image that is not on disk.
    """
    reject_unknown_options("ham10000", options, SOURCE.options)
    root = dataset_root(root, DOWNLOAD_HINT)
    meta_path = required_file(root, METADATA_FILE, DOWNLOAD_HINT)
    table = read_csv(meta_path, REQUIRED_COLUMNS, what="HAM10000 metadata file")
    col = table.col
    extra = [c for c in table.header if c and c not in COLUMNS]
    meta_names = list(META_COLUMNS) + extra
    images = index_images(_image_folders(root), ".jpg")

    out, seen, absent = [], {}, []
    for line, cells in table.rows:
        image_id = cells[col["image_id"]].strip()
        lesion_id = cells[col["lesion_id"]].strip()
        for name, value in (("image_id", image_id), ("lesion_id", lesion_id)):
            if not value:
                raise DatasetError(f"empty {name}", path=meta_path, row=line,
                                   hint=f"every row needs an {name}; fix or delete that row")
        dx = cells[col["dx"]]
        if dx.strip().lower() not in CLASSES:
            raise DatasetError(f"unknown dx {dx!r} in column 'dx' (image_id {image_id})",
                               path=meta_path, row=line,
                               hint=f"HAM10000 dx codes are {list(CLASSES)}; fix the value or drop "
                                    "the row")
        if image_id in seen:
            raise duplicate_error("image_id", image_id, meta_path, line, seen[image_id])
        seen[image_id] = line
        image = images.get(image_id + ".jpg")
        if image is None:
            absent.append(image_id)
            continue
        label = CLASSES.index(dx.strip().lower())
        row = {"sample_id": image_id, "image_path": image, "label": label,
               "label_name": CLASSES[label], "group_id": lesion_id, "official_split": None}
        for name in meta_names:
            value = cells[col[name]] if name in col else ""
            row["meta_" + name] = value if value.strip() else None
        out.append(row)
    if absent:
        raise absent_images_error(
            absent, len(table.rows), METADATA_FILE, root / IMAGE_FOLDERS[0],
            hint=f"images must be <image_id>.jpg in {IMAGE_FOLDERS[0]}/ and {IMAGE_FOLDERS[1]}/ "
                 f"(or all in {SINGLE_IMAGE_FOLDER}/); unzip both image parts")
    return build_table(out, meta_names)


# ---------------------------------------------------------------------------------------------
# synthetic miniature
# ---------------------------------------------------------------------------------------------
#: (bkl, df) share one image distribution and differ only in ``age`` (df <= 45, bkl >= 60, never
#: missing for these two classes)
METADATA_ONLY_PAIRS = ((CLASSES.index("bkl"), CLASSES.index("df")),)
SYNTHETIC_IMAGES = 150
#: published class frequencies (real metadata), used for the miniature's imbalance
_REAL_COUNTS = {"akiec": 327, "bcc": 514, "bkl": 1099, "df": 115, "mel": 1113, "nv": 6705,
                "vasc": 142}
_AGE_RANGE = {"akiec": (50, 85), "bcc": (45, 85), "bkl": (60, 85), "df": (20, 45),
              "mel": (35, 85), "nv": (15, 60), "vasc": (10, 80)}
_LOCALIZATIONS = {
    "akiec": ("face", "scalp", "upper extremity", "ear", "neck", "hand"),
    "bcc": ("back", "face", "trunk", "chest", "neck", "lower extremity"),
    "bkl": ("face", "back", "trunk", "chest", "upper extremity", "lower extremity"),
    "df": ("lower extremity", "upper extremity", "trunk"),
    "mel": ("back", "lower extremity", "upper extremity", "trunk", "face", "chest", "abdomen"),
    "nv": ("back", "lower extremity", "trunk", "abdomen", "upper extremity", "chest", "foot",
           "genital", "acral"),
    "vasc": ("trunk", "lower extremity", "abdomen", "face", "back"),
}
#: how each class was confirmed (published proportions, rounded)
_DX_TYPE = {
    "akiec": {"histo": 1.0}, "bcc": {"histo": 1.0}, "mel": {"histo": 1.0},
    "bkl": {"histo": 0.7, "consensus": 0.24, "confocal": 0.06},
    "df": {"histo": 0.48, "consensus": 0.52},
    "nv": {"follow_up": 0.55, "histo": 0.37, "consensus": 0.08},
    "vasc": {"histo": 0.47, "consensus": 0.53},
}
#: acquisition cohort of non-follow-up images per class (follow_up -> vidir_molemax)
_COHORT = {
    "akiec": {"rosendahl": 0.9, "vidir_modern": 0.1},
    "bcc": {"rosendahl": 0.58, "vidir_modern": 0.41, "vienna_dias": 0.01},
    "bkl": {"rosendahl": 0.45, "vidir_modern": 0.43, "vidir_molemax": 0.11, "vienna_dias": 0.01},
    "df": {"rosendahl": 0.26, "vidir_modern": 0.44, "vidir_molemax": 0.26, "vienna_dias": 0.04},
    "mel": {"rosendahl": 0.31, "vidir_modern": 0.61, "vidir_molemax": 0.02, "vienna_dias": 0.06},
    "nv": {"rosendahl": 0.27, "vidir_modern": 0.61, "vidir_molemax": 0.01, "vienna_dias": 0.11},
    "vasc": {"rosendahl": 0.02, "vidir_modern": 0.58, "vidir_molemax": 0.38, "vienna_dias": 0.02},
}


def _pick(rng: np.random.Generator, probabilities: dict[str, float]) -> str:
    names = list(probabilities)
    p = np.asarray([probabilities[n] for n in names], float)
    return str(rng.choice(names, p=p / p.sum()))


def _synthetic_rows(rng: np.random.Generator, n_images: int) -> list[dict[str, str]]:
    """Metadata rows (8-column release) with the published imbalance, 1-4 images per lesion."""
    counts = class_counts(n_images, [_REAL_COUNTS[c] for c in CLASSES], minimum=10)
    lesions: list[tuple[str, int]] = []
    for name, count in zip(CLASSES, counts):
        left = count
        while left > 0:
            k = min(left, int(rng.choice([1, 2, 3, 4], p=[0.5, 0.3, 0.15, 0.05])))
            lesions.append((name, k))
            left -= k
    lesion_numbers = rng.choice(np.arange(0, 7800), len(lesions), replace=False)
    image_numbers = rng.choice(np.arange(24306, 34321), n_images, replace=False)
    rows, ii = [], 0
    for (name, k), number in zip(lesions, lesion_numbers):
        lo, hi = _AGE_RANGE[name]
        age = str(5 * int(rng.integers(lo // 5, hi // 5 + 1)))
        paired = any(CLASSES.index(name) in pair for pair in METADATA_ONLY_PAIRS)
        dx_type = _pick(rng, _DX_TYPE[name])
        lesion = {
            "lesion_id": f"HAM_{number:07d}", "dx": name, "dx_type": dx_type,
            "age": age if paired else maybe_missing(rng, age, 0.02),
            "sex": maybe_missing(rng, str(rng.choice(["male", "female"], p=[0.54, 0.46])), 0.02,
                                 "unknown"),
            "localization": maybe_missing(rng, str(rng.choice(_LOCALIZATIONS[name])), 0.04,
                                          "unknown"),
            "dataset": "vidir_molemax" if dx_type == "follow_up" else
                       "vidir_modern" if dx_type == "confocal" else _pick(rng, _COHORT[name]),
        }
        for _ in range(k):
            rows.append(dict(lesion, image_id=f"ISIC_{image_numbers[ii]:07d}"))
            ii += 1
    return [rows[i] for i in rng.permutation(len(rows))]


def synthesize(out: str | Path, seed: int = 0, n_images: int = SYNTHETIC_IMAGES) -> Path:
    """Write a HAM10000 miniature in the publisher's layout into ``out``; returns ``out``.

    ``HAM10000_metadata.csv`` is the 8-column release (CRLF, ages as ``80``, missing age empty,
    missing sex/localization ``unknown``) and the ``n_images`` JPEGs (about 112-128 x 84-96 px,
    landscape like the real 600x450) go to ``HAM10000_images_part_1/`` or ``_part_2/`` by id
    number as in the release. All seven classes with the published imbalance (at least 10 images
    each), 1-4 images per ``lesion_id``; ``dx_type`` and ``dataset`` follow the published
    per-class proportions (so they leak as in the real file). Each class has its own lesion style
    (:func:`~dermfuse_data.synthetic.draw_lesion`) except bkl vs df, which differ only in ``age``
    (:data:`METADATA_ONLY_PAIRS`). Byte-identical for the same ``seed``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([int(seed), 30])
    rows = _synthetic_rows(rng, n_images)
    n_image_classes = count_image_classes(len(CLASSES), METADATA_ONLY_PAIRS)
    for i, row in enumerate(rows):
        img_rng = np.random.default_rng([int(seed), 31, i])
        height = int(img_rng.integers(84, 97))
        image_class = image_class_of(CLASSES.index(row["dx"]), METADATA_ONLY_PAIRS)
        rgb, _ = draw_lesion(img_rng, (height, round(height * 4 / 3)), image_class, n_image_classes)
        part = IMAGE_FOLDERS[0] if int(row["image_id"][5:]) <= PART_1_LAST else IMAGE_FOLDERS[1]
        save_image(out / part / f"{row['image_id']}.jpg", rgb, quality=90)
    with open(out / METADATA_FILE, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        writer.writerows([row[c] for c in COLUMNS] for row in rows)
    return out


SOURCE = DatasetSource(
    name="ham10000",
    title="HAM10000 (dermoscopic images of pigmented lesions, ISIC 2018 Task 3 training set)",
    classes=CLASSES,
    read=read,
    synthesize=synthesize,
    features=FEATURES,
    group="lesion",
    has_masks=False,
    tasks=("classification",),
    notes="No official split: use a grouped split by lesion_id (up to 6 images per lesion). "
          "Missing age is empty, missing sex/localization 'unknown'. 'dx_type' and 'dataset' leak "
          "the label (all follow_up images are nv).",
    options={},
    extra={"class_names": CLASS_NAMES, "metadata_only_pairs": METADATA_ONLY_PAIRS,
           "columns": COLUMNS, "isic2018_task3_order": ISIC2018_TASK3_ORDER},
)
