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

import pyarrow as pa

from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import build_table
from dermfuse_data.sources.base import DatasetSource, MetaFeature

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


SOURCE = DatasetSource(
    name="pad_ufes_20",
    title="PAD-UFES-20 (smartphone skin-lesion photos + clinical data)",
    classes=CLASSES,
    read=read,
    features=FEATURES,
    group="patient",
    has_masks=False,
    tasks=("classification",),
    notes="No official split: use a grouped split by patient. 'UNK' and empty cells both mean "
          "missing. 'biopsed' leaks the label (all BCC/SCC/MEL are biopsied).",
    extra={"class_names": CLASS_NAMES, "columns": COLUMNS},
)
