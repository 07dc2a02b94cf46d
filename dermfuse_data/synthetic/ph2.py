"""The PH2 miniature, in the publisher's exact layout (:mod:`dermfuse_data.sources.ph2`).

``PH2_dataset.xlsx`` (sheet ``Folha1``: legends in F2:K9, ``Clinical Diagnosis`` / ``Colors`` group
titles on row 12, the published header on row 13, one row per image, classes and colours marked
``X``), ``PH2_dataset.txt`` (the same table as ``||``-delimited text), and per image
``PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp`` (24-bit BMP),
``IMDxxx_lesion/IMDxxx_lesion.bmp`` (1-bit BMP mask at image size) and, for some, an
``IMDxxx_roi/IMDxxx_R1_Label4.bmp`` colour-region mask. The dermoscopic criteria are drawn per
class with the frequencies of the real sheet, except ``pigment_network``, which separates common
(always T) from atypical nevi (always AT): the two share one image distribution
(:data:`METADATA_ONLY_PAIRS`).
"""

from __future__ import annotations

import datetime
import io
import re
import zipfile
from pathlib import Path

import numpy as np

from dermfuse_data.sources.ph2 import (
    CLASSES,
    COLOURS,
    CRITERIA,
    IMAGE_FOLDERS,
    TXT_FILE,
    XLSX_FILE,
    XLSX_HEADER,
    image_path,
    mask_path,
)
from dermfuse_data.synthetic.files import save_1bit_bmp, save_image
from dermfuse_data.synthetic.lesions import class_counts, draw_class_lesion, random_size

#: common and atypical nevi share one image distribution and differ only in ``pigment_network``
#: (Typical vs Atypical, as in 80/80 and 77/80 of the real images): a label-leaking feature, so a
#: model needs ``allow_leaky_metadata`` to separate them
METADATA_ONLY_PAIRS = ((CLASSES.index("Common Nevus"), CLASSES.index("Atypical Nevus")),)
SYNTHETIC_IMAGES = 100
#: published class counts (common nevus, atypical nevus, melanoma)
REAL_COUNTS = (80, 80, 40)
#: value counts per class of each criterion in the real PH2_dataset.xlsx (pigment network made
#: fully separating for the two nevus classes, see the module docstring)
_CRITERIA_COUNTS = {
    "asymmetry": ({"0": 77, "1": 2, "2": 1}, {"0": 35, "1": 27, "2": 18}, {"0": 5, "1": 2, "2": 33}),
    "pigment_network": ({"T": 1}, {"AT": 1}, {"AT": 39, "T": 1}),
    "dots_globules": ({"A": 29, "T": 46, "AT": 5}, {"A": 40, "T": 8, "AT": 32}, {"A": 18, "AT": 22}),
    "streaks": ({"A": 79, "P": 1}, {"A": 64, "P": 16}, {"A": 27, "P": 13}),
    "regression_areas": ({"A": 1}, {"A": 76, "P": 4}, {"A": 19, "P": 21}),
    "blue_whitish_veil": ({"A": 1}, {"A": 74, "P": 6}, {"A": 10, "P": 30}),
}
#: P(colour marked) per class, in :data:`COLOURS` order, from the real sheet
_COLOUR_P = (
    (1 / 80, 4 / 80, 60 / 80, 58 / 80, 2 / 80, 4 / 80),
    (5 / 80, 4 / 80, 51 / 80, 64 / 80, 10 / 80, 15 / 80),
    (13 / 40, 2 / 40, 28 / 40, 34 / 40, 26 / 40, 23 / 40),
)
#: (P(histology given), value counts) per class, from the real sheet
_HISTOLOGY = (
    (0.0, {"": 1}),
    (8 / 80, {"Dysplastic Nevus": 5, "Intradermal Nevus": 2, "Blue Nevus": 1}),
    (33 / 40, {"Melanoma": 26, "Lentigo Maligna": 5, "Nodular Melanoma": 2}),
)
_LEGENDS = (  # (cell, value) of the legend block, as in the published sheet (typo included)
    ("F2", "Legends"),
    ("F3", "Asymmetry"),
    ("G3", 0),
    ("H3", "Fully Simmetric"),
    ("G4", 1),
    ("H4", "Symmetric in 1 axes"),
    ("G5", 2),
    ("H5", "Fully Asymmetric"),
    ("F6", "Pigment Network\nDots/Globules\nStreaks\nRegression Areas\nBlue-Whitish Veil"),
    ("G6", "AT"),
    ("H6", "Atypical"),
    ("G7", "T"),
    ("H7", "Typical"),
    ("G8", "A"),
    ("H8", "Absent"),
    ("G9", "P"),
    ("H9", "Present"),
    ("C12", "Clinical Diagnosis"),
    ("L12", "Colors"),
)
_MERGED = (
    "F2:K2",
    "F3:F5",
    "H3:K3",
    "H4:K4",
    "H5:K5",
    "F6:F9",
    "H6:K6",
    "H7:K7",
    "H8:K8",
    "H9:K9",
    "C12:E12",
    "L12:Q12",
)
#: header row as published: the criteria cells carry their legend on a second line
_HEADER_CELLS = (
    XLSX_HEADER[:5]
    + (
        "Asymmetry\n(0/1/2)",
        "Pigment Network\n(AT/T)",
        "Dots/Globules\n(A/AT/T)",
        "Streaks\n(A/P)",
        "Regression Areas\n(A/P)",
        "Blue-Whitish Veil\n(A/P)",
    )
    + XLSX_HEADER[11:]
)
_TXT_HEADER = (
    "||   Name || Histological Diagnosis || Clinical Diagnosis || Asymmetry | Pigment Network "
    "| Dots/Globules | Streaks | Regression Areas | Blue-Whitish Veil ||           Colors ||"
)
_TXT_LEGEND = (
    "",
    "Legend:",
    "Clinical Diagnosis: 0 - Common Nevus; 1 - Atypical Nevus; 2 - Melanoma",
    "Asymmetry: 0 - Fully Symmetric; 1 - Symmetric in 1 axe; 2 - Fully Asymmetric",
    "Pigment Network, Dots/Globules, Streaks, Regression Areas, Blue-Whitish Veil: "
    "A - Absent; AT - Atypical; P - Present; T - Typical",
    "Colors: 1 - White; 2 - Red; 3 - Light-Brown; 4 - Dark-Brown; 5 - Blue-Gray; 6 - Black",
)
#: the publication date, used for every timestamp inside the xlsx so that its bytes depend on the seed only
_FIXED_TIME = datetime.datetime(2013, 7, 3)


def _pick(rng: np.random.Generator, counts: dict[str, int]) -> str:
    values = list(counts)
    p = np.asarray([counts[v] for v in values], float)
    return str(values[int(rng.choice(len(values), p=p / p.sum()))])


def synthetic_rows(rng: np.random.Generator, n_images: int = SYNTHETIC_IMAGES) -> list[dict]:
    """Rows (``image_id``, ``label``, criteria, colours, histology) grouped by class like the real sheet."""
    counts = class_counts(n_images, REAL_COUNTS, minimum=1)
    numbers = rng.choice(np.arange(2, 438), n_images, replace=False)
    rows, start = [], 0
    for label, count in enumerate(counts):
        for number in sorted(numbers[start : start + count]):
            row = {"image_id": f"IMD{number:03d}", "label": label}
            for name in CRITERIA:
                row[name] = _pick(rng, _CRITERIA_COUNTS[name][label])
            row["colours"] = [c for c, p in zip(COLOURS, _COLOUR_P[label]) if rng.random() < p]
            if not row["colours"]:
                row["colours"] = ["dark_brown"]
            p_histology, values = _HISTOLOGY[label]
            row["histological_diagnosis"] = _pick(rng, values) if rng.random() < p_histology else ""
            rows.append(row)
        start += count
    return rows


def _save_xlsx(workbook, path: Path) -> None:
    """Save ``workbook`` with fixed timestamps (document properties and zip entries)."""
    workbook.properties.created = _FIXED_TIME
    buffer = io.BytesIO()
    workbook.save(buffer)  # openpyxl stamps 'modified' with the current time: replaced below
    stamp = _FIXED_TIME.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>" + stamp, data)
            entry = zipfile.ZipInfo(info.filename, date_time=_FIXED_TIME.timetuple()[:6])
            entry.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(entry, data)


def write_xlsx(rows: list[dict], path: Path) -> Path:
    """``PH2_dataset.xlsx`` as published: sheet ``Folha1``, legends, header on row 13, ``X`` marks."""
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Folha1"
    for cell, value in _LEGENDS:
        sheet[cell] = value
    for cells in _MERGED:
        sheet.merge_cells(cells)
    for column, value in enumerate(_HEADER_CELLS, start=1):
        sheet.cell(row=13, column=column, value=value)
    for r, row in enumerate(rows, start=14):
        values = [row["image_id"], row["histological_diagnosis"] or None]
        values += ["X" if row["label"] == k else None for k in range(len(CLASSES))]
        values += [int(row["asymmetry"])] + [row[name] for name in CRITERIA[1:]]
        values += ["X" if c in row["colours"] else None for c in COLOURS]
        for column, value in enumerate(values, start=1):
            sheet.cell(row=r, column=column, value=value)
    _save_xlsx(workbook, path)
    return path


def write_txt(rows: list[dict], path: Path) -> Path:
    """``PH2_dataset.txt``: the '||' table (clinical diagnosis and colours as codes), then a legend."""
    lines = [_TXT_HEADER]
    for row in rows:
        colours = "  ".join(str(COLOURS.index(c) + 1) for c in row["colours"])
        lines.append(
            f"|| {row['image_id']} || {row['histological_diagnosis']:>22} || {row['label']:>18} || "
            f"{row['asymmetry']:>9} | {row['pigment_network']:>15} | {row['dots_globules']:>13} | "
            f"{row['streaks']:>7} | {row['regression_areas']:>16} | {row['blue_whitish_veil']:>17} || "
            f"{colours:>16} ||"
        )
    path.write_text("\n".join(lines + list(_TXT_LEGEND)) + "\n", encoding="utf-8")
    return path


def write_miniature(out: Path, seed: int = 0, n_images: int = SYNTHETIC_IMAGES) -> Path:
    """Write the PH2 miniature (module docstring) into ``out``; byte-identical per ``seed``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([int(seed), 2013])
    rows = synthetic_rows(rng, n_images)
    images = out / IMAGE_FOLDERS[0]
    for i, row in enumerate(rows):
        img_rng = np.random.default_rng([int(seed), 2013, i])
        size = random_size(img_rng, 96, 129)
        rgb, mask = draw_class_lesion(img_rng, size, row["label"], len(CLASSES), METADATA_ONLY_PAIRS)
        image_id = row["image_id"]
        save_image(image_path(images, image_id), rgb, format="BMP")
        save_1bit_bmp(mask_path(images, image_id), mask)
        if img_rng.random() < 0.25:  # some images also ship a colour-region mask (ignored by read)
            region = mask & (np.arange(size[1])[None, :] < size[1] // 2)
            save_1bit_bmp(images / image_id / f"{image_id}_roi" / f"{image_id}_R1_Label4.bmp", region)
    write_xlsx(rows, out / XLSX_FILE)
    write_txt(rows, out / TXT_FILE)
    return out
