"""PAD-UFES-20 (Pacheco et al., Data in Brief 2020; Mendeley Data doi:10.17632/zr7vgbcyr2.1).

Smartphone photos of skin lesions with 21 clinical fields, as the publisher ships them::

    <root>/metadata.csv                              26 columns, one row per image
    <root>/images/imgs_part_1/PAT_<patient>_<lesion>_<n>.png
    <root>/images/imgs_part_2/...
    <root>/images/imgs_part_3/...

Also accepted: all PNGs directly in ``<root>/images/`` (a common re-packaging), any deeper nesting
under ``images/`` (e.g. ``imgs_part_1/imgs_part_1/`` from unzipping each part into its own folder),
or the ``imgs_part_*`` folders directly under ``<root>``. Six classes (``diagnostic``), no official
split; ``group_id`` is the patient (``lesion_id`` is not unique across patients). Missing cells are
written empty (the fields of patients seen before the full questionnaire) or ``UNK``; both are kept
as written here (empty -> null) and treated as missing by the encoder.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import build_table
from dermfuse_data.sources.base import DatasetSource, MetaFeature
from dermfuse_data.synthetic import (class_counts, count_image_classes, draw_lesion, image_class_of,
                                     maybe_missing, save_image)

CLASSES = ("ACK", "BCC", "MEL", "NEV", "SCC", "SEK")
CLASS_NAMES = {
    "ACK": "actinic keratosis", "BCC": "basal cell carcinoma", "MEL": "melanoma",
    "NEV": "nevus", "SCC": "squamous cell carcinoma", "SEK": "seborrheic keratosis",
}
#: the 26 columns of ``metadata.csv`` in the publisher's order
COLUMNS = (
    "patient_id", "lesion_id", "smoke", "drink", "background_father", "background_mother", "age",
    "pesticide", "gender", "skin_cancer_history", "cancer_history", "has_piped_water",
    "has_sewage_system", "fitspatrick", "region", "diameter_1", "diameter_2", "diagnostic", "itch",
    "grew", "hurt", "changed", "bleed", "elevation", "img_id", "biopsed",
)
KEY_COLUMNS = ("img_id", "diagnostic", "patient_id")
#: raw columns kept as ``meta_*`` (everything but the id, label and group columns)
META_COLUMNS = tuple(c for c in COLUMNS if c not in KEY_COLUMNS)
METADATA_FILE = "metadata.csv"
IMAGE_PARTS = ("imgs_part_1", "imgs_part_2", "imgs_part_3")
DOWNLOAD_HINT = ("download PAD-UFES-20 from Mendeley Data (doi:10.17632/zr7vgbcyr2.1), unzip it and "
                 "pass the folder holding metadata.csv and images/imgs_part_{1,2,3}/")

_CATEGORICAL = ("smoke", "drink", "background_father", "background_mother", "pesticide", "gender",
                "skin_cancer_history", "cancer_history", "has_piped_water", "has_sewage_system",
                "fitspatrick", "region", "itch", "grew", "hurt", "changed", "bleed", "elevation")
_NUMERIC = ("age", "diameter_1", "diameter_2")
_FEATURE_ORDER = ("smoke", "drink", "background_father", "background_mother", "age", "pesticide",
                  "gender", "skin_cancer_history", "cancer_history", "has_piped_water",
                  "has_sewage_system", "fitspatrick", "region", "diameter_1", "diameter_2", "itch",
                  "grew", "hurt", "changed", "bleed", "elevation", "biopsed")
WHY_BIOPSED_LEAKS = (
    "biopsy is ordered for suspected cancers: in the published metadata.csv every BCC (845), SCC "
    "(192) and MEL (52) image is biopsed=True, while only 253 of the 1209 ACK/NEV/SEK images are "
    "(all cancers are histopathology-confirmed, the rest mostly by clinical consensus), so "
    "biopsed=False rules out the three cancers")

#: clinical features for the tabular encoder; ``column`` is the raw metadata column name (the table
#: column is ``meta_<column>``)
FEATURES = tuple(
    MetaFeature(name, name, "numeric" if name in _NUMERIC else "categorical")
    if name != "biopsed" else
    MetaFeature(name, name, "categorical", leaks_label=True, why_leaks=WHY_BIOPSED_LEAKS)
    for name in _FEATURE_ORDER
)


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(line number, cells)`` of ``path`` (header included), with clear errors for bad files."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            try:
                for cells in reader:
                    yield reader.line_num, cells
            except csv.Error as exc:
                raise DatasetError(f"not a valid CSV file: {exc}", path=path, row=reader.line_num,
                                   hint="fix the quoting on that line or restore the original "
                                        "metadata.csv") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path,
                           hint="restore the original metadata.csv (a spreadsheet may have re-saved "
                                "it in another encoding; save as CSV UTF-8)") from None


def _read_metadata(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and ``(line, cells)`` data rows of ``metadata.csv``, checking the column set."""
    rows = _csv_rows(path)
    header: list[str] | None = None
    for _, cells in rows:
        if any(c.strip() for c in cells):
            header = [c.strip() for c in cells]
            break
    if header is None:
        raise DatasetError("metadata.csv is empty", path=path,
                           hint="restore the original file; " + DOWNLOAD_HINT)
    dupes = sorted({c for c in header if c and header.count(c) > 1})
    if dupes:
        raise DatasetError(f"column(s) {dupes} appear more than once in the header", path=path, row=1,
                           hint="remove the repeated columns or restore the original metadata.csv")
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise DatasetError(
            f"missing column(s) {missing}; the header has {header}", path=path, row=1,
            hint=f"PAD-UFES-20's metadata.csv has these {len(COLUMNS)} columns: {list(COLUMNS)}; "
                 "restore the original file or rename the columns back")
    data = []
    for line, cells in rows:
        if not any(c.strip() for c in cells):
            continue  # blank line
        if len(cells) != len(header):
            raise DatasetError(
                f"has {len(cells)} cells but the header has {len(header)} columns", path=path,
                row=line, hint="a value probably contains an unquoted comma, or the row was cut; "
                               "fix that line or restore the original metadata.csv")
        data.append((line, cells))
    return header, data


def _image_dirs(root: Path) -> list[Path]:
    """Folders to search for the PNGs: ``images/`` (recursively), else ``imgs_part_*`` at the root."""
    images = root / "images"
    if images.is_dir():
        return [images]
    parts = sorted(p for p in root.glob("imgs_part_*") if p.is_dir())
    if parts:
        return parts
    raise DatasetError(
        "no images folder (expected images/imgs_part_1/, imgs_part_2/, imgs_part_3/ or images/)",
        path=images, hint=DOWNLOAD_HINT + "; unzip the three image parts into images/")


def _index_images(root: Path) -> dict[str, Path]:
    """File name -> path of every file below the image folders (first in sorted order wins)."""
    found: dict[str, Path] = {}
    for top in _image_dirs(root):
        for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
            dirnames.sort()
            for name in sorted(filenames):
                found.setdefault(name, Path(dirpath) / name)
    return found


def _label_index(value: str) -> int | None:
    value = value.strip().upper()
    return CLASSES.index(value) if value in CLASSES else None


def read(root: str | Path) -> pa.Table:
    """Index PAD-UFES-20 at ``root`` into the common sample table (images are not decoded).

    One row per ``metadata.csv`` row, in file order: ``sample_id`` = ``img_id`` as written,
    ``group_id`` = ``patient_id``, ``official_split`` null, and the other 23 columns (plus any extra
    ones) as raw ``meta_*`` strings, empty cells as null and ``UNK`` kept. Raises
    :class:`DatasetError` (file, row/column, what to do) for a missing root / metadata.csv / column,
    a wrong cell count, an unknown ``diagnostic``, an empty id, a duplicate ``img_id`` or a listed
    image that is not on disk.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError("dataset folder does not exist", path=root, hint=DOWNLOAD_HINT)
    if not root.is_dir():
        raise DatasetError("is a file, not the dataset folder", path=root, hint=DOWNLOAD_HINT)
    root = root.resolve()
    meta_path = root / METADATA_FILE
    if not meta_path.is_file():
        present = sorted(p.name for p in root.iterdir())[:10]
        raise DatasetError(f"{METADATA_FILE} not found (the folder holds {present})", path=meta_path,
                           hint=DOWNLOAD_HINT)
    header, data = _read_metadata(meta_path)
    col = {name: i for i, name in enumerate(header)}
    extra = [c for c in header if c and c not in COLUMNS]
    meta_names = list(META_COLUMNS) + extra
    images = _index_images(root)

    out, seen, absent = [], {}, []
    for line, cells in data:
        img_id = cells[col["img_id"]].strip()
        patient = cells[col["patient_id"]].strip()
        diagnostic = cells[col["diagnostic"]]
        for name, value in (("img_id", img_id), ("patient_id", patient)):
            if not value:
                raise DatasetError(f"empty {name}", path=meta_path, row=line,
                                   hint=f"every row needs an {name}; fix or delete that row")
        label = _label_index(diagnostic)
        if label is None:
            raise DatasetError(
                f"unknown diagnostic {diagnostic!r} in column 'diagnostic' (img_id {img_id})",
                path=meta_path, row=line,
                hint=f"PAD-UFES-20 diagnostics are {list(CLASSES)}; fix the value or drop the row")
        if img_id in seen:
            raise DatasetError(
                f"duplicate img_id {img_id!r} in column 'img_id' (also on row {seen[img_id]})",
                path=meta_path, row=line, hint="each image must be listed once; delete the repeated row")
        seen[img_id] = line
        image = images.get(img_id)
        if image is None:
            absent.append(img_id)
            continue
        row = {"sample_id": img_id, "image_path": str(image), "label": label,
               "label_name": CLASSES[label], "group_id": patient, "official_split": None}
        for name in meta_names:
            value = cells[col[name]]
            row["meta_" + name] = value if value.strip() else None
        out.append(row)
    if absent:
        shown = ", ".join(absent[:5]) + (", ..." if len(absent) > 5 else "")
        raise DatasetError(
            f"{len(absent)} of {len(data)} images listed in {METADATA_FILE} are not on disk "
            f"({shown})", path=root / "images",
            hint="images must be in images/imgs_part_1/, imgs_part_2/, imgs_part_3/ (or all in "
                 "images/), named exactly as img_id; unzip all three parts")
    return build_table(out, meta_names)


# ---------------------------------------------------------------------------------------------
# synthetic miniature
# ---------------------------------------------------------------------------------------------
#: (ACK, SCC) share one image distribution and differ only in ``bleed`` (ACK never bleeds, SCC
#: always does); (NEV, SEK) share one and differ only in ``age`` (NEV < 40, SEK >= 60).
METADATA_ONLY_PAIRS = ((CLASSES.index("ACK"), CLASSES.index("SCC")),
                       (CLASSES.index("NEV"), CLASSES.index("SEK")))
SYNTHETIC_IMAGES = 160
#: published class frequencies (real metadata.csv), used for the miniature's imbalance
_REAL_COUNTS = {"ACK": 730, "BCC": 845, "MEL": 52, "NEV": 244, "SCC": 192, "SEK": 235}
_AGE_RANGE = {"ACK": (45, 86), "BCC": (40, 91), "MEL": (28, 81), "NEV": (15, 40), "SCC": (50, 93),
              "SEK": (60, 89)}
_REGIONS = {
    "ACK": ("FACE", "FOREARM", "HAND", "NOSE", "ARM", "SCALP", "EAR"),
    "BCC": ("FACE", "NOSE", "BACK", "CHEST", "NECK", "EAR", "LIP"),
    "MEL": ("BACK", "CHEST", "ARM", "THIGH", "FACE"),
    "NEV": ("BACK", "CHEST", "ARM", "ABDOMEN", "THIGH", "FACE"),
    "SCC": ("FACE", "FOREARM", "HAND", "NOSE", "ARM", "SCALP", "EAR"),
    "SEK": ("BACK", "CHEST", "ABDOMEN", "FACE", "NECK", "THIGH"),
}
_BACKGROUNDS = ("POMERANIA", "GERMANY", "ITALY", "BRAZIL", "UNK", "NETHERLANDS", "PORTUGAL", "POLAND")
_BACKGROUND_P = (0.33, 0.29, 0.15, 0.06, 0.06, 0.04, 0.04, 0.03)
#: P(True) of the lesion questions per class (``bleed`` of ACK/SCC is fixed, see above)
_SYMPTOM_P = {
    "ACK": dict(itch=0.7, grew=0.3, hurt=0.1, changed=0.05, bleed=0.0, elevation=0.6),
    "BCC": dict(itch=0.6, grew=0.6, hurt=0.2, changed=0.1, bleed=0.55, elevation=0.8),
    "MEL": dict(itch=0.4, grew=0.6, hurt=0.1, changed=0.3, bleed=0.1, elevation=0.4),
    "NEV": dict(itch=0.2, grew=0.3, hurt=0.05, changed=0.1, bleed=0.05, elevation=0.4),
    "SCC": dict(itch=0.7, grew=0.7, hurt=0.5, changed=0.1, bleed=1.0, elevation=0.8),
    "SEK": dict(itch=0.4, grew=0.4, hurt=0.05, changed=0.05, bleed=0.05, elevation=0.6),
}
_P_UNK = dict(itch=0.01, grew=0.15, hurt=0.01, changed=0.15, bleed=0.01, elevation=0.01)
_P_BIOPSED = {"ACK": 0.25, "BCC": 1.0, "MEL": 1.0, "NEV": 0.25, "SCC": 1.0, "SEK": 0.07}


def _bool(rng: np.random.Generator, p: float) -> str:
    return "True" if rng.random() < p else "False"


def _synthetic_rows(rng: np.random.Generator, n_images: int) -> list[dict[str, str]]:
    """Metadata rows (publisher's columns) of a miniature with the published class imbalance."""
    counts = class_counts(n_images, [_REAL_COUNTS[c] for c in CLASSES], minimum=10)
    patients: list[tuple[str, list[int]]] = []  # (class, images per lesion)
    for name, count in zip(CLASSES, counts):
        left = count
        while left > 0:
            lesions = []
            for _ in range(1 + int(rng.random() < 0.4)):
                k = min(left, int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25])))
                if k:
                    lesions.append(k)
                    left -= k
            patients.append((name, lesions))
    n_lesions = sum(len(les) for _, les in patients)
    patient_ids = rng.choice(np.arange(1, 2100), len(patients), replace=False)
    lesion_ids = rng.choice(np.arange(1, 4200), n_lesions, replace=False)
    image_numbers = rng.choice(np.arange(1, 1101), n_images, replace=False)
    # as in the real file, lesion_id is not unique across patients: the last patient's first
    # lesion reuses the first patient's first lesion id
    lesion_ids[n_lesions - len(patients[-1][1])] = lesion_ids[0]

    rows, li, ii = [], 0, 0
    for (name, lesions), pid in zip(patients, patient_ids):
        complete = rng.random() > 0.35  # otherwise only the short questionnaire (empty block)
        lo, hi = _AGE_RANGE[name]
        patient = {
            "patient_id": f"PAT_{pid}",
            "age": str(int(rng.integers(lo, hi))),
            "smoke": _bool(rng, 0.13), "drink": _bool(rng, 0.25),
            "background_father": str(rng.choice(_BACKGROUNDS, p=_BACKGROUND_P)),
            "background_mother": str(rng.choice(_BACKGROUNDS, p=_BACKGROUND_P)),
            "pesticide": _bool(rng, 0.4), "gender": str(rng.choice(["FEMALE", "MALE"])),
            "skin_cancer_history": _bool(rng, 0.45), "cancer_history": _bool(rng, 0.5),
            "has_piped_water": _bool(rng, 0.6), "has_sewage_system": _bool(rng, 0.55),
            "fitspatrick": f"{int(rng.choice([1, 2, 3, 4, 5], p=[.1, .55, .25, .07, .03]))}.0",
        }
        if not complete:
            for key in patient:
                if key not in ("patient_id", "age"):
                    patient[key] = ""
        for n_imgs in lesions:
            d1 = int(rng.integers(3, 21))
            lesion = dict(patient, lesion_id=str(lesion_ids[li]), diagnostic=name,
                          region=str(rng.choice(_REGIONS[name])),
                          diameter_1=f"{d1}.0" if complete else "",
                          diameter_2=f"{int(rng.integers(2, d1 + 1))}.0" if complete else "",
                          biopsed=_bool(rng, _P_BIOPSED[name]))
            for q, p in _SYMPTOM_P[name].items():
                lesion[q] = _bool(rng, p)
                if not (q == "bleed" and name in ("ACK", "SCC")):
                    lesion[q] = maybe_missing(rng, lesion[q], _P_UNK[q], "UNK")
            li += 1
            for _ in range(n_imgs):
                rows.append(dict(lesion, img_id=f"{lesion['patient_id']}_{lesion['lesion_id']}_"
                                                f"{image_numbers[ii]}.png"))
                ii += 1
    return [rows[i] for i in rng.permutation(len(rows))]


def synthesize(out: str | Path, seed: int = 0, n_images: int = SYNTHETIC_IMAGES) -> Path:
    """Write a PAD-UFES-20 miniature in the publisher's layout into ``out``; returns ``out``.

    ``metadata.csv`` has the 26 published headers in order (LF line ends, missing cells empty or
    ``UNK`` as in the real file) and ``n_images`` PNGs (88-128 px) spread over
    ``images/imgs_part_{1,2,3}/``; 1-2 lesions per patient, 1-3 images per lesion, all six classes
    with the published imbalance (at least 10 images each). The image shows BCC, MEL,
    ACK-or-SCC and NEV-or-SEK as four lesion styles (:func:`~dermfuse_data.synthetic.draw_lesion`);
    ACK vs SCC differ only in ``bleed`` and NEV vs SEK only in ``age`` (:data:`METADATA_ONLY_PAIRS`).
    Byte-identical for the same ``seed``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([int(seed), 20])
    rows = _synthetic_rows(rng, n_images)
    n_image_classes = count_image_classes(len(CLASSES), METADATA_ONLY_PAIRS)
    parts = rng.permutation(len(rows)) % len(IMAGE_PARTS)
    for i, (row, part) in enumerate(zip(rows, parts)):
        img_rng = np.random.default_rng([int(seed), 21, i])
        size = (int(img_rng.integers(88, 129)), int(img_rng.integers(88, 129)))
        image_class = image_class_of(CLASSES.index(row["diagnostic"]), METADATA_ONLY_PAIRS)
        rgb, _ = draw_lesion(img_rng, size, image_class, n_image_classes)
        save_image(out / "images" / IMAGE_PARTS[part] / row["img_id"], rgb)
    with open(out / METADATA_FILE, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows([row[c] for c in COLUMNS] for row in rows)
    return out


SOURCE = DatasetSource(
    name="pad_ufes_20",
    title="PAD-UFES-20 (smartphone skin-lesion photos + clinical data)",
    classes=CLASSES,
    read=read,
    synthesize=synthesize,
    features=FEATURES,
    group="patient",
    has_masks=False,
    tasks=("classification",),
    notes="No official split: use a grouped split by patient. 'UNK' and empty cells both mean "
          "missing. 'biopsed' leaks the label (all BCC/SCC/MEL are biopsied).",
    extra={"class_names": CLASS_NAMES, "metadata_only_pairs": METADATA_ONLY_PAIRS,
           "columns": COLUMNS},
)
