"""PH2 dermoscopic image database (Mendonça et al., IEEE EMBC 2013, "PH² - A dermoscopic image
database for research and benchmarking"; Hospital Pedro Hispano, Matosinhos).

200 dermoscopic images with lesion masks, the clinical diagnosis and the dermatologists' assessment
of dermoscopic criteria, as the publisher ships them (``PH2Dataset.rar`` unpacks to ``PH2Dataset/``)::

    <root>/PH2_dataset.xlsx                         sheet "Folha1": legends, header on row 13
    <root>/PH2_dataset.txt                          the same table as '||'-delimited text
    <root>/PH2 Dataset images/IMD002/IMD002_Dermoscopic_Image/IMD002.bmp     24-bit BMP
    <root>/PH2 Dataset images/IMD002/IMD002_lesion/IMD002_lesion.bmp         1-bit BMP mask
    <root>/PH2 Dataset images/IMD002/IMD002_roi/IMD002_R1_Label4.bmp         colour regions (ignored)

Some copies name the image folder ``PH2_Dataset_images``; both are accepted, and ``<root>`` may also
be the folder holding ``PH2Dataset/``. Labels come from ``PH2_dataset.xlsx`` (one column per
clinical diagnosis marked ``X``; the header row is found by its ``Image Name`` cell) or, where only
the text release is present or ``metadata=txt`` is asked for, from ``PH2_dataset.txt`` (format below).

Three classes in the publisher's order: ``Common Nevus``, ``Atypical Nevus``, ``Melanoma``. No
official split; ``group_id`` is the image id. Raw metadata columns (``meta_*``):
``histological_diagnosis`` (only for the 41 histopathology-confirmed lesions), ``asymmetry``
(0/1/2), ``pigment_network`` (AT/T), ``dots_globules`` (A/AT/T), ``streaks``, ``regression_areas``,
``blue_whitish_veil`` (A/P) and one column per colour (``white``, ``red``, ``light_brown``,
``dark_brown``, ``blue_gray``, ``black``: ``X`` or null = absent). All of them are the experts'
reading of the same images that led to the diagnosis, so every feature is marked ``leaks_label``.

``PH2_dataset.txt`` (format pinned from public parsers of the release, several independent ones
agreeing): a header line ``||   Name || Histological Diagnosis || Clinical Diagnosis || Asymmetry |
Pigment Network | Dots/Globules | Streaks | Regression Areas | Blue-Whitish Veil ||  Colors ||``,
then one ``||``/``|``-delimited line per image with the clinical diagnosis as a code (0 common nevus,
1 atypical nevus, 2 melanoma) and the colours as space-separated codes (1 white, 2 red, 3 light
brown, 4 dark brown, 5 blue-gray, 6 black), spread here into the same per-colour columns as the
xlsx so both releases give the same table. Lines not starting with ``||`` (legends) are ignored.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import build_table, sample_row
from dermfuse_data.sources.base import DatasetSource, MetaFeature
from dermfuse_data.sources.publisher_files import absent_images_error, choice_option, dataset_root, folder_holds

CLASSES = ("Common Nevus", "Atypical Nevus", "Melanoma")
XLSX_FILE = "PH2_dataset.xlsx"
TXT_FILE = "PH2_dataset.txt"
IMAGE_FOLDERS = ("PH2 Dataset images", "PH2_Dataset_images")
UNPACKED_FOLDER = "PH2Dataset"
CRITERIA = ("asymmetry", "pigment_network", "dots_globules", "streaks", "regression_areas", "blue_whitish_veil")
COLOURS = ("white", "red", "light_brown", "dark_brown", "blue_gray", "black")
#: ``meta_*`` columns, the same for both metadata files
META_COLUMNS = ("histological_diagnosis",) + CRITERIA + COLOURS
#: header cells of the xlsx (first line of each cell; the rest is the legend, e.g. ``(0/1/2)``)
_CRITERIA_HEADER = ("Asymmetry", "Pigment Network", "Dots/Globules", "Streaks", "Regression Areas", "Blue-Whitish Veil")
XLSX_HEADER = (
    "Image Name",
    "Histological Diagnosis",
    *CLASSES,
    *_CRITERIA_HEADER,
    "White",
    "Red",
    "Light-Brown",
    "Dark-Brown",
    "Blue-Gray",
    "Black",
)
TXT_HEADER = ("Name", "Histological Diagnosis", "Clinical Diagnosis", *_CRITERIA_HEADER, "Colors")
#: ``Colors`` codes of the text release
COLOUR_CODES = {str(i + 1): name for i, name in enumerate(COLOURS)}
METADATA_OPTIONS = ("auto", "xlsx", "txt")
HEADER_SEARCH_ROWS = 40
DOWNLOAD_HINT = (
    "download PH2 from its publisher (fc.up.pt/addi/ph2 database.html), unpack "
    "PH2Dataset.rar and pass the PH2Dataset folder (it holds PH2_dataset.xlsx and "
    "'PH2 Dataset images/')"
)

_WHY = {
    "histological_diagnosis": (
        "filled only for the 41 histopathology-confirmed lesions and names the class: none of the "
        "80 common nevi has one, Melanoma / Nodular Melanoma / Lentigo Maligna occur only for "
        "melanomas and Dysplastic / Intradermal / Blue Nevus only for atypical nevi"
    ),
    "asymmetry": (
        "dermatologists' ABCD assessment behind the diagnosis: fully symmetric (0) in 77/80 "
        "common nevi but fully asymmetric (2) in 33/40 melanomas"
    ),
    "pigment_network": (
        "dermatologists' assessment behind the diagnosis: Typical for all 80 common "
        "nevi, Atypical for 77/80 atypical nevi and 39/40 melanomas"
    ),
    "dots_globules": (
        "dermatologists' assessment behind the diagnosis: Typical in 46/80 common nevi and in no melanoma"
    ),
    "streaks": ("dermatologists' assessment behind the diagnosis: present in 1/80 common nevi and 13/40 melanomas"),
    "regression_areas": (
        "dermatologists' assessment behind the diagnosis: present in no common "
        "nevus, 4/80 atypical nevi and 21/40 melanomas"
    ),
    "blue_whitish_veil": (
        "dermatologists' assessment behind the diagnosis: present in no common "
        "nevus, 6/80 atypical nevi and 30/40 melanomas"
    ),
}
_WHY_COLOUR = (
    "colours are part of the dermatologists' assessment behind the diagnosis (blue-gray in "
    "2/80 common nevi vs 26/40 melanomas; white 1/80 vs 13/40); an empty cell means the "
    "colour is absent, so the encoder's '=missing' column reads as 'absent'"
)
FEATURES = tuple(
    MetaFeature(name, name, "categorical", leaks_label=True, why_leaks=_WHY[name])
    for name in ("histological_diagnosis",) + CRITERIA
) + tuple(
    MetaFeature(name, name, "categorical", missing=(), leaks_label=True, why_leaks=_WHY_COLOUR) for name in COLOURS
)


@dataclass(frozen=True)
class Record:
    """One image's row of the metadata file: where it is, its id, label and raw metadata."""

    row: int
    image_id: str
    label: int
    meta: dict[str, str | None]


def _key(name: object) -> str:
    """``'Blue-Whitish Veil\\n(A/P)'`` -> ``'blue_whitish_veil'``: first line, lowercase, snake."""
    first = str(name or "").split("\n")[0]
    return re.sub(r"[^0-9a-z]+", "_", first.lower()).strip("_")


def _text(value: object) -> str | None:
    """A cell as the raw string the publisher wrote (``0`` not ``0.0``); empty -> None."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _check_header(path: Path, row: int, header: list[str], expected: tuple[str, ...]) -> dict[str, int]:
    """Column key -> index, raising a :class:`DatasetError` that lists missing vs present columns."""
    index = {}
    for i, name in enumerate(header):
        index.setdefault(_key(name), i)
    missing = [name for name in expected if _key(name) not in index]
    if missing:
        present = [str(h).split("\n")[0] for h in header if h not in (None, "")]
        raise DatasetError(
            f"missing column(s) {missing}; the header has {present}",
            path=path,
            row=row,
            hint=f"PH2's {path.name} has the columns {list(expected)}; restore the "
            "original file or rename the columns back",
        )
    return {_key(name): index[_key(name)] for name in expected}


def _check_unique(path: Path, records: list[Record]) -> None:
    seen: dict[str, int] = {}
    for r in records:
        if r.image_id in seen:
            raise DatasetError(
                f"duplicate image {r.image_id!r} (also on row {seen[r.image_id]})",
                path=path,
                row=r.row,
                hint="each image must be listed once; delete the repeated row",
            )
        seen[r.image_id] = r.row


# ---------------------------------------------------------------------------------------------
# PH2_dataset.xlsx
# ---------------------------------------------------------------------------------------------
def read_xlsx(path: Path) -> list[Record]:
    """Records of ``PH2_dataset.xlsx`` (first sheet; header row found by its ``Image Name`` cell)."""
    import openpyxl

    try:  # read-only sheets parse lazily: a damaged sheet fails while iterating, not on open
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
        try:
            sheets = workbook.worksheets
            rows = list(sheets[0].iter_rows(values_only=True)) if sheets else None
        finally:
            workbook.close()
    except Exception as exc:
        raise DatasetError(
            f"not a readable Excel file ({type(exc).__name__}: {exc})",
            path=path,
            hint="restore the original PH2_dataset.xlsx (or use metadata=txt)",
        ) from None
    if rows is None:
        raise DatasetError(
            "the workbook has no worksheet",
            path=path,
            hint="restore the original PH2_dataset.xlsx (or use metadata=txt)",
        )
    header_at = next(
        (i for i, cells in enumerate(rows[:HEADER_SEARCH_ROWS]) if "image_name" in {_key(c) for c in cells}), None
    )
    if header_at is None:
        raise DatasetError(
            f"no header row with an 'Image Name' cell in the first {HEADER_SEARCH_ROWS} rows",
            path=path,
            hint="restore the original PH2_dataset.xlsx (its header is on row 13)",
        )
    header = list(rows[header_at])
    col = _check_header(path, header_at + 1, header, XLSX_HEADER)
    records = []
    for number, cells in enumerate(rows[header_at + 1 :], start=header_at + 2):
        cells = list(cells) + [None] * (len(header) - len(cells))
        if all(_text(c) is None for c in cells):
            continue
        image_id = _text(cells[col["image_name"]])
        if image_id is None:
            raise DatasetError(
                "empty 'Image Name'",
                path=path,
                row=number,
                hint="every row needs its image name (IMDxxx); fix or delete the row",
            )
        marked = []
        for label, name in enumerate(CLASSES):
            mark = _text(cells[col[_key(name)]])
            if mark is not None and mark.upper() != "X":
                raise DatasetError(
                    f"unknown mark {mark!r} in column {name!r} (image {image_id})",
                    path=path,
                    row=number,
                    hint=f"the clinical diagnosis is marked with X in one of {list(CLASSES)}; fix the cell",
                )
            if mark is not None:
                marked.append(label)
        if len(marked) != 1:
            found = [CLASSES[m] for m in marked]
            raise DatasetError(
                f"image {image_id} has {'no' if not marked else 'more than one'} clinical diagnosis marked ({found})",
                path=path,
                row=number,
                hint=f"mark exactly one of {list(CLASSES)} with X",
            )
        meta = {name: _text(cells[col[name]]) for name in ("histological_diagnosis",) + CRITERIA}
        meta.update({name: _text(cells[col[name]]) for name in COLOURS})
        records.append(Record(number, image_id, marked[0], meta))
    _check_unique(path, records)
    return records


# ---------------------------------------------------------------------------------------------
# PH2_dataset.txt
# ---------------------------------------------------------------------------------------------
def _txt_cells(line: str) -> list[str]:
    """One table line's cells: ``'|| IMD003 ||  || 0 || 0 | T | ... ||  3  4 ||'`` ->
    ``['IMD003', '', '0', '0', 'T', ..., '3  4']``."""
    return [c.strip() for c in re.split(r"\|\|?", line.strip().strip("|"))]


def read_txt(path: Path) -> list[Record]:
    """Records of ``PH2_dataset.txt`` (format in the module docstring)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    header, col, records = None, {}, []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip().startswith("||") or not re.search(r"[0-9A-Za-z]", line):
            continue
        cells = _txt_cells(line)
        if header is None:
            if _key(cells[0]) != "name":
                raise DatasetError(
                    f"the first table line is not the header (starts {cells[0]!r})",
                    path=path,
                    row=number,
                    hint="restore the original PH2_dataset.txt (its first '||' "
                    "line names the columns: Name, Histological Diagnosis, ...)",
                )
            header = cells
            col = _check_header(path, number, header, TXT_HEADER)
            continue
        if len(cells) != len(header):
            raise DatasetError(
                f"has {len(cells)} cells but the header has {len(header)} columns",
                path=path,
                row=number,
                hint="fix that line or restore the original file",
            )
        image_id = cells[col["name"]]
        if not image_id:
            raise DatasetError("empty 'Name'", path=path, row=number, hint="fix or delete the line")
        code = cells[col["clinical_diagnosis"]]
        if code not in ("0", "1", "2"):
            raise DatasetError(
                f"unknown Clinical Diagnosis {code!r} (image {image_id})",
                path=path,
                row=number,
                hint="codes are 0 Common Nevus, 1 Atypical Nevus, 2 Melanoma; fix the value",
            )
        meta: dict[str, str | None] = {n: (cells[col[n]] or None) for n in ("histological_diagnosis",) + CRITERIA}
        meta.update({name: None for name in COLOURS})
        for token in cells[col["colors"]].split():
            if token not in COLOUR_CODES:
                raise DatasetError(
                    f"unknown colour code {token!r} in column 'Colors' (image {image_id})",
                    path=path,
                    row=number,
                    hint="colour codes are 1 White, 2 Red, 3 Light-Brown, 4 Dark-Brown, "
                    "5 Blue-Gray, 6 Black, separated by spaces",
                )
            meta[COLOUR_CODES[token]] = "X"
        records.append(Record(number, image_id, int(code), meta))
    if header is None:
        raise DatasetError(
            "no '||'-delimited table found", path=path, hint="restore the original PH2_dataset.txt; " + DOWNLOAD_HINT
        )
    _check_unique(path, records)
    return records


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
def _unpacked(root: Path) -> Path:
    """``root``, or ``root/PH2Dataset`` when ``root`` is the folder the archive was unpacked in."""
    own = [root / XLSX_FILE, root / TXT_FILE] + [root / f for f in IMAGE_FOLDERS]
    if not any(p.exists() for p in own) and (root / UNPACKED_FOLDER).is_dir():
        return root / UNPACKED_FOLDER
    return root


def _metadata_file(root: Path, choice: str) -> Path:
    choice = choice_option(
        "metadata", choice, METADATA_OPTIONS, root, hint="metadata=auto reads PH2_dataset.xlsx, else PH2_dataset.txt"
    )
    names = {"xlsx": [XLSX_FILE], "txt": [TXT_FILE], "auto": [XLSX_FILE, TXT_FILE]}[choice]
    for name in names:
        if (root / name).is_file():
            return root / name
    raise DatasetError(
        f"{' or '.join(names)} not found ({folder_holds(root)})", path=root / names[0], hint=DOWNLOAD_HINT
    )


def _images_folder(root: Path) -> Path:
    for name in IMAGE_FOLDERS:
        if (root / name).is_dir():
            return root / name
    raise DatasetError(
        f"no image folder (expected '{IMAGE_FOLDERS[0]}/' or '{IMAGE_FOLDERS[1]}/')",
        path=root / IMAGE_FOLDERS[0],
        hint=DOWNLOAD_HINT,
    )


def image_path(images: Path, image_id: str) -> Path:
    """``<images>/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp``."""
    return images / image_id / f"{image_id}_Dermoscopic_Image" / f"{image_id}.bmp"


def mask_path(images: Path, image_id: str) -> Path:
    """``<images>/IMDxxx/IMDxxx_lesion/IMDxxx_lesion.bmp``."""
    return images / image_id / f"{image_id}_lesion" / f"{image_id}_lesion.bmp"


def _absent_error(kind: str, absent: list[Path], total: int, listing: Path, images: Path) -> DatasetError:
    where = "IMDxxx_Dermoscopic_Image/IMDxxx.bmp" if kind == "image" else "IMDxxx_lesion/IMDxxx_lesion.bmp"
    return absent_images_error(
        [str(p.relative_to(images)) for p in absent],
        total,
        listing.name,
        images,
        hint=f"each {kind} must be at IMDxxx/{where} under '{images.name}/'; unpack the whole PH2 archive",
        kind=f"{kind}s",
    )


def read(root: str | Path, metadata: str = "auto") -> pa.Table:
    """Index PH2 at ``root`` into the common sample table (images are not decoded).

    One row per image row of the metadata file, in file order: ``sample_id`` = ``group_id`` = image
    name, label from the marked clinical diagnosis, ``mask_path`` the lesion mask, no official
    split, and the raw ``meta_*`` columns (:data:`META_COLUMNS`). ``metadata``: ``auto`` (xlsx, else
    txt), ``xlsx`` or ``txt``. Raises :class:`DatasetError` for a missing root / metadata file /
    image folder / column, no or several diagnoses on a row, an unknown code, a duplicate image, and
    listed images or masks that are not on disk.
    """
    root = _unpacked(dataset_root(root, DOWNLOAD_HINT))
    listing = _metadata_file(root, metadata)
    records = read_xlsx(listing) if listing.suffix == ".xlsx" else read_txt(listing)
    images = _images_folder(root)
    no_image = [image_path(images, r.image_id) for r in records if not os.path.isfile(image_path(images, r.image_id))]
    if no_image:
        raise _absent_error("image", no_image, len(records), listing, images)
    no_mask = [mask_path(images, r.image_id) for r in records if not os.path.isfile(mask_path(images, r.image_id))]
    if no_mask:
        raise _absent_error("mask", no_mask, len(records), listing, images)
    rows = [
        sample_row(
            r.image_id,
            image_path(images, r.image_id),
            r.label,
            CLASSES,
            mask_path=mask_path(images, r.image_id),
            meta=r.meta,
        )
        for r in records
    ]
    return build_table(rows, META_COLUMNS)


SOURCE = DatasetSource(
    name="ph2",
    title="PH2 (dermoscopic images, lesion masks, dermoscopic criteria)",
    classes=CLASSES,
    read=read,
    features=FEATURES,
    has_masks=True,
    tasks=("classification", "segmentation"),
    notes="200 images (80 common nevus, 80 atypical nevus, 40 melanoma), no official split: use a "
    "stratified grouped split. Every metadata column is the dermatologists' assessment behind "
    "the diagnosis and leaks the label (refused unless allow_leaky_metadata).",
    options={"metadata": "which label file to read: auto (PH2_dataset.xlsx, else PH2_dataset.txt), xlsx or txt"},
    extra={"meta_columns": META_COLUMNS, "colour_codes": COLOUR_CODES},
)
