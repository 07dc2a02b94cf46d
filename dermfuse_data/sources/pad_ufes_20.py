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
    required_cell,
    required_path,
)

CLASSES = ("ACK", "BCC", "MEL", "NEV", "SCC", "SEK")
CLASS_NAMES = {
    "ACK": "actinic keratosis",
    "BCC": "basal cell carcinoma",
    "MEL": "melanoma",
    "NEV": "nevus",
    "SCC": "squamous cell carcinoma",
    "SEK": "seborrheic keratosis",
}
#: the 26 columns of ``metadata.csv`` in the publisher's order
COLUMNS = (
    "patient_id",
    "lesion_id",
    "smoke",
    "drink",
    "background_father",
    "background_mother",
    "age",
    "pesticide",
    "gender",
    "skin_cancer_history",
    "cancer_history",
    "has_piped_water",
    "has_sewage_system",
    "fitspatrick",
    "region",
    "diameter_1",
    "diameter_2",
    "diagnostic",
    "itch",
    "grew",
    "hurt",
    "changed",
    "bleed",
    "elevation",
    "img_id",
    "biopsed",
)
KEY_COLUMNS = ("img_id", "diagnostic", "patient_id")
#: raw columns kept as ``meta_*`` (everything but the id, label and group columns)
META_COLUMNS = tuple(c for c in COLUMNS if c not in KEY_COLUMNS)
METADATA_FILE = "metadata.csv"
IMAGE_PARTS = ("imgs_part_1", "imgs_part_2", "imgs_part_3")
DOWNLOAD_HINT = (
    "download PAD-UFES-20 from Mendeley Data (doi:10.17632/zr7vgbcyr2.1), unzip it and "
    "pass the folder holding metadata.csv and images/imgs_part_{1,2,3}/"
)

_NUMERIC = ("age", "diameter_1", "diameter_2")
#: every metadata column is a clinical feature except the lesion id (groups live in patient_id)
_FEATURE_ORDER = tuple(c for c in META_COLUMNS if c != "lesion_id")
WHY_BIOPSED_LEAKS = (
    "biopsy is ordered for suspected cancers: in the published metadata.csv every BCC (845), SCC "
    "(192) and MEL (52) image is biopsed=True, while only 253 of the 1209 ACK/NEV/SEK images are "
    "(all cancers are histopathology-confirmed, the rest mostly by clinical consensus), so "
    "biopsed=False rules out the three cancers"
)

#: clinical features for the tabular encoder; ``column`` is the raw metadata column name (the table
#: column is ``meta_<column>``)
FEATURES = tuple(
    MetaFeature(name, name, "numeric" if name in _NUMERIC else "categorical")
    if name != "biopsed"
    else MetaFeature(name, name, "categorical", leaks_label=True, why_leaks=WHY_BIOPSED_LEAKS)
    for name in _FEATURE_ORDER
)


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
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
        path=images,
        hint=DOWNLOAD_HINT + "; unzip the three image parts into images/",
    )


def read(root: str | Path) -> pa.Table:
    """Index PAD-UFES-20 at ``root`` into the common sample table (images are not decoded).

    One row per ``metadata.csv`` row, in file order: ``sample_id`` = ``img_id`` as written,
    ``group_id`` = ``patient_id``, ``official_split`` null, and the other 23 columns (plus any extra
    ones) as raw ``meta_*`` strings, empty cells as null and ``UNK`` kept. Raises
    :class:`DatasetError` (file, row/column, what to do) for a missing root / metadata.csv / column,
    a wrong cell count, an unknown ``diagnostic``, an empty id, a duplicate ``img_id`` or a listed
    image that is not on disk.
    """
    root = dataset_root(root, DOWNLOAD_HINT)
    meta_path = required_path(root, METADATA_FILE, DOWNLOAD_HINT)
    table = read_csv(meta_path, COLUMNS, what="PAD-UFES-20 metadata.csv", download_hint=DOWNLOAD_HINT)
    meta_names = list(META_COLUMNS) + [c for c in table.header if c and c not in COLUMNS]
    images = index_images(_image_dirs(root), "")

    out, absent = [], []
    for line, img_id, cells in listed_ids(table, "img_id"):
        patient = required_cell(table, line, cells, "patient_id")
        label = class_cell(table, line, cells, "diagnostic", CLASSES, f"img_id {img_id}", "PAD-UFES-20 diagnostics")
        image = images.get(img_id)
        if image is None:
            absent.append(img_id)
            continue
        out.append(sample_row(img_id, image, label, CLASSES, patient, meta=meta_cells(table, cells, meta_names)))
    if absent:
        raise absent_images_error(
            absent,
            len(table.rows),
            METADATA_FILE,
            root / "images",
            hint="images must be in images/imgs_part_1/, imgs_part_2/, imgs_part_3/ (or all in "
            "images/), named exactly as img_id; unzip all three parts",
        )
    return build_table(out, meta_names)


SOURCE = DatasetSource(
    name="pad_ufes_20",
    title="PAD-UFES-20 (smartphone skin-lesion photos + clinical data)",
    classes=CLASSES,
    read=read,
    features=FEATURES,
    group="patient",
    notes="No official split: use a grouped split by patient. 'UNK' and empty cells both mean "
    "missing. 'biopsed' leaks the label (all BCC/SCC/MEL are biopsied).",
    extra={"class_names": CLASS_NAMES, "columns": COLUMNS},
)
