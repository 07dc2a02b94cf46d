"""PH2 source: the publisher's layout, the real xlsx and folder listing, the miniature, clear errors."""

from __future__ import annotations

import re
import shutil
import zipfile
from collections import Counter
from pathlib import Path

import openpyxl
import pytest
from PIL import Image

from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import CORE_COLUMNS, validate_table
from dermfuse_data.sources.ph2 import (
    CLASSES,
    COLOURS,
    IMAGE_FOLDERS,
    META_COLUMNS,
    SOURCE,
    TXT_FILE,
    XLSX_FILE,
    image_path,
    mask_path,
    read_xlsx,
)
from dermfuse_data.splits import crossing_groups, make_splits
from dermfuse_data.synthetic.lesions import image_class_of
from dermfuse_data.synthetic.ph2 import METADATA_ONLY_PAIRS
from dermfuse_data.tabular import select_features
from tests.data._damage import cut
from tests.data._support import REAL_METADATA, assert_unreadable, check_json, real_path, tiny_image

DATASET = "ph2"
REAL = REAL_METADATA / "ph2"
REAL_XLSX = REAL / XLSX_FILE
REAL_LISTING = REAL / "PH2Dataset_tree_listing.Furqan3.tsv"
REAL_COUNTS = {"Common Nevus": 80, "Atypical Nevus": 80, "Melanoma": 40}


def _build_from_listing(root: Path) -> Path:
    """Every file of the real folder listing, as a tiny BMP (the real xlsx read in place)."""
    image, mask = tiny_image("BMP"), tiny_image("BMP", "1")
    for line in REAL_LISTING.read_text().splitlines():
        _, rel = line.split("\t")
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.name == XLSX_FILE:
            path.write_bytes(REAL_XLSX.read_bytes())
        else:
            path.write_bytes(image if "_Dermoscopic_Image/" in rel else mask)
    return root


@pytest.fixture(scope="module")
def listed_root(tmp_path_factory) -> Path:
    """``PH2Dataset/`` rebuilt from the real listing (which lacks IMD036); do not modify."""
    real_path("ph2", REAL_LISTING.name)
    return _build_from_listing(tmp_path_factory.mktemp("ph2_listed"))


@pytest.fixture(scope="module")
def real_root(tmp_path_factory) -> Path:
    """The listing's tree plus the image that listing lacks (IMD036): the full real dataset."""
    real_path("ph2", REAL_LISTING.name)
    root = _build_from_listing(tmp_path_factory.mktemp("ph2_full"))
    images = root / "PH2Dataset" / "PH2_Dataset_images"
    for path, data in (
        (image_path(images, "IMD036"), tiny_image("BMP")),
        (mask_path(images, "IMD036"), tiny_image("BMP", "1")),
    ):
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
    return root


def _check(cli, root: Path, *extra: str) -> tuple[int, dict]:
    return check_json(cli, DATASET, root, *extra)


def test_source_marks_every_feature_as_leaking():
    assert SOURCE.classes == ("Common Nevus", "Atypical Nevus", "Melanoma")
    assert SOURCE.has_masks and SOURCE.tasks == ("classification", "segmentation")
    assert [f.column for f in SOURCE.features] == list(META_COLUMNS)
    assert all(f.leaks_label and f.why_leaks for f in SOURCE.features)
    assert select_features(SOURCE, "all") == []  # nothing non-leaking
    with pytest.raises(DatasetError, match="leaks the label.*Typical for all 80 common nevi"):
        select_features(SOURCE, ["pigment_network"])
    assert len(select_features(SOURCE, ["pigment_network"], allow_leaky=True)) == 1


# ------------------------------------------------------------------ real xlsx + folder listing
def test_real_listing_reports_exactly_imd036_missing(listed_root, cli):
    rc, report = _check(cli, listed_root)
    assert rc == 2 and report["readable"] is False and len(report["problems"]) == 1
    problem = report["problems"][0]
    assert "1 of 200 images listed in PH2_dataset.xlsx are not on disk" in problem
    assert "IMD036/IMD036_Dermoscopic_Image/IMD036.bmp" in problem
    assert set(re.findall(r"IMD\d{3}", problem)) == {"IMD036"} and "PH2_Dataset_images" in problem


def test_real_check_json_counts(real_root, cli):
    rc, report = _check(cli, real_root)
    assert rc == 0, report["problems"]
    assert report["rows"] == 200 and report["groups"] == 200 and report["classes"] == REAL_COUNTS
    assert report["images_verified"] == 400 and report["problems"] == []
    assert report["split_kind"].startswith("grouped") and sum(report["splits"].values()) == 200
    assert report["missing"]["histological_diagnosis"] == 159 and report["missing"]["asymmetry"] == 0
    assert report["encoded_width"] == 0 and report["encoded_widths"] == {}  # every feature leaks


def test_real_xlsx_raw_values_back_the_leak_claims(real_root):
    table = SOURCE.read(real_root)
    validate_table(table)
    assert table.column_names == CORE_COLUMNS + ["meta_" + c for c in META_COLUMNS]
    rows = table.to_pylist()
    assert read_xlsx(REAL_XLSX)[0].row == 14  # header on row 13
    network = Counter((r["label_name"], r["meta_pigment_network"]) for r in rows)
    assert network[("Common Nevus", "T")] == 80 and network[("Atypical Nevus", "AT")] == 77
    histology = Counter((r["label_name"], r["meta_histological_diagnosis"]) for r in rows)
    assert histology[("Common Nevus", None)] == 80 and histology[("Melanoma", "Melanoma")] == 26
    assert Counter(r["meta_asymmetry"] for r in rows) == {"0": 117, "2": 52, "1": 31}
    assert Counter(r["meta_blue_gray"] for r in rows) == {None: 162, "X": 38}
    assert all(r["mask_path"].endswith(f"{r['sample_id']}_lesion.bmp") for r in rows)
    assert all(r["official_split"] is None and r["group_id"] == r["sample_id"] for r in rows)


def test_real_no_group_crosses_splits(real_root):
    split = make_splits(SOURCE.read(real_root), seed=0)
    assert crossing_groups(split) == {}
    per_split = Counter(zip(split.column("split").to_pylist(), split.column("label_name").to_pylist()))
    assert all(per_split[(s, c)] > 0 for s in ("train", "val", "test") for c in CLASSES)


# ------------------------------------------------------------------ synthetic miniature
def test_miniature_xlsx_has_the_published_sheet_layout(synth_root):
    sheet = openpyxl.load_workbook(synth_root / XLSX_FILE).worksheets[0]
    assert sheet.title == "Folha1" and sheet["C12"].value == "Clinical Diagnosis"
    header = [c.value for c in sheet[13]]
    if REAL_XLSX.is_file():
        real = openpyxl.load_workbook(REAL_XLSX).worksheets[0]
        assert header == [c.value for c in real[13]]
        assert [[c.value for c in row] for row in real.iter_rows(max_row=12)] == [
            [c.value for c in row] for row in sheet.iter_rows(max_row=12)
        ]
        assert {str(r) for r in real.merged_cells.ranges} == {str(r) for r in sheet.merged_cells.ranges}
    assert sheet["A14"].value.startswith("IMD") and sheet.max_row == 113


def test_miniature_round_trip_xlsx_and_txt_agree(synth_root, cli):
    table = SOURCE.read(synth_root)
    assert table.num_rows == 100
    assert Counter(table.column("label_name").to_pylist()) == {"Common Nevus": 40, "Atypical Nevus": 40, "Melanoma": 20}
    assert SOURCE.read(synth_root, metadata="txt").equals(table)
    assert SOURCE.read(synth_root.parent).equals(table)  # the folder holding PH2Dataset/
    text = (synth_root / TXT_FILE).read_text().splitlines()
    assert text[0].startswith("||   Name || Histological Diagnosis || Clinical Diagnosis ||")
    rc, report = _check(cli, synth_root, "--option", "metadata=txt", "--no-verify-images")
    assert rc == 0 and report["classes"] == {"Common Nevus": 40, "Atypical Nevus": 40, "Melanoma": 20}


def test_miniature_bmp_images_and_1bit_masks(synth_root):
    for row in SOURCE.read(synth_root).to_pylist()[::23]:
        with Image.open(row["image_path"]) as im, Image.open(row["mask_path"]) as m:
            assert (im.format, im.mode, m.format, m.mode) == ("BMP", "RGB", "BMP", "1")
            assert m.size == im.size
    assert any(synth_root.rglob("*_roi/*_R1_Label4.bmp"))  # shipped, ignored


def test_miniature_metadata_only_pair(synth_root):
    assert METADATA_ONLY_PAIRS == ((0, 1),)
    assert image_class_of(0, METADATA_ONLY_PAIRS) == image_class_of(1, METADATA_ONLY_PAIRS)
    assert image_class_of(2, METADATA_ONLY_PAIRS) != image_class_of(0, METADATA_ONLY_PAIRS)
    rows = SOURCE.read(synth_root).to_pylist()
    network = {c: {r["meta_pigment_network"] for r in rows if r["label_name"] == c} for c in CLASSES[:2]}
    assert network == {"Common Nevus": {"T"}, "Atypical Nevus": {"AT"}}


def test_underscore_image_folder_accepted(mini):
    (mini / IMAGE_FOLDERS[0]).rename(mini / IMAGE_FOLDERS[1])
    table = SOURCE.read(mini)
    assert table.num_rows == 100 and IMAGE_FOLDERS[1] in table.column("image_path")[0].as_py()


# ------------------------------------------------------------------ clear errors
def _edit_xlsx(edit):
    def mutate(root: Path) -> None:
        workbook = openpyxl.load_workbook(root / XLSX_FILE)
        edit(workbook.worksheets[0])
        workbook.save(root / XLSX_FILE)

    return mutate


def _set_cells(**cells):
    def edit(sheet):
        for cell, value in cells.items():
            sheet[cell] = value

    return edit


def _edit_txt(edit):
    def mutate(root: Path) -> None:
        (root / XLSX_FILE).unlink()
        lines = (root / TXT_FILE).read_text().splitlines()
        (root / TXT_FILE).write_text("\n".join(edit(lines)) + "\n")

    return mutate


def _replace_line(lines: list[str], index: int, old: str, new: str) -> list[str]:
    """``lines`` with the first ``old`` of line ``index`` replaced by ``new`` (which must occur)."""
    line = lines[index] + "\n"
    assert old in line, (old, line)
    return lines[:index] + [line.replace(old, new, 1).rstrip("\n")] + lines[index + 1 :]


def _first_case(root: Path) -> str:
    return openpyxl.load_workbook(root / XLSX_FILE).worksheets[0]["A14"].value


def _edit_xlsx_zip(member: str, edit):
    """Damage one XML part inside the xlsx zip (``edit`` None deletes it); the zip stays valid."""

    def mutate(root: Path) -> None:
        with zipfile.ZipFile(root / XLSX_FILE) as z:
            parts = {name: z.read(name) for name in z.namelist()}
        assert member in parts, sorted(parts)
        if edit is None:
            del parts[member]
        else:
            parts[member] = edit(parts[member])
        with zipfile.ZipFile(root / XLSX_FILE, "w") as z:
            for name, data in parts.items():
                z.writestr(name, data)

    return mutate


def _delete_mask(root: Path) -> None:
    mask_path(root / IMAGE_FOLDERS[0], _first_case(root)).unlink()


def _delete_images(root: Path) -> None:
    for case in sorted((root / IMAGE_FOLDERS[0]).iterdir())[:6]:
        image_path(root / IMAGE_FOLDERS[0], case.name).unlink()


BAD_INPUTS = {
    "no metadata file": (
        lambda r: [(r / f).unlink() for f in (XLSX_FILE, TXT_FILE)],
        ["PH2_dataset.xlsx or PH2_dataset.txt not found"],
    ),
    "no image folder": (lambda r: shutil.rmtree(r / IMAGE_FOLDERS[0]), ["no image folder"]),
    "missing column": (
        _edit_xlsx(_set_cells(E13="Melanomas")),
        ["PH2_dataset.xlsx (row 13)", "missing column(s) ['Melanoma']", "'Melanomas'"],
    ),
    "no header row": (_edit_xlsx(_set_cells(A13="Image")), ["no header row with an 'Image Name' cell"]),
    "unknown mark": (
        _edit_xlsx(_set_cells(C16="Y")),
        ["PH2_dataset.xlsx (row 16)", "unknown mark 'Y' in column 'Common Nevus'"],
    ),
    "two classes marked": (
        _edit_xlsx(_set_cells(E15="X")),
        ["PH2_dataset.xlsx (row 15)", "more than one clinical diagnosis", "'Common Nevus', 'Melanoma'"],
    ),
    "no class marked": (
        _edit_xlsx(_set_cells(C14=None)),
        ["PH2_dataset.xlsx (row 14)", "no clinical diagnosis marked"],
    ),
    "duplicate image": (
        _edit_xlsx(lambda s: s.__setitem__("A20", s["A18"].value)),
        ["PH2_dataset.xlsx (row 20)", "duplicate image", "also on row 18"],
    ),
    "image absent": (_delete_images, ["6 of 100 images listed in PH2_dataset.xlsx are not on disk", ", ..."]),
    "mask absent": (_delete_mask, ["1 of 100 masks listed in PH2_dataset.xlsx are not on disk", "_lesion.bmp"]),
    "xlsx cut": (
        lambda r: cut(r / XLSX_FILE),
        ["PH2_dataset.xlsx: not a readable Excel file (BadZipFile", "metadata=txt"],
    ),
    "xlsx sheet cut": (
        _edit_xlsx_zip("xl/worksheets/sheet1.xml", lambda xml: xml[: len(xml) // 2]),
        ["PH2_dataset.xlsx: not a readable Excel file (ParseError"],
    ),
    "xlsx without sheet": (
        _edit_xlsx_zip("xl/worksheets/sheet1.xml", None),
        ["PH2_dataset.xlsx: the workbook has no worksheet"],
    ),
    "txt unknown code": (
        _edit_txt(lambda lines: _replace_line(lines, 1, "||                  0 ||", "||                  3 ||")),
        ["PH2_dataset.txt (row 2)", "unknown Clinical Diagnosis '3'"],
    ),
    "txt unknown colour": (
        _edit_txt(lambda lines: _replace_line(lines, 3, " ||\n", "  9 ||\n")),
        ["PH2_dataset.txt (row 4)", "unknown colour code '9'"],
    ),
    "txt missing column": (
        _edit_txt(lambda ls: _replace_line(ls, 0, "Clinical Diagnosis", "Diagnosis")),
        ["PH2_dataset.txt (row 1)", "missing column(s) ['Clinical Diagnosis']"],
    ),
    "txt wrong cell count": (
        _edit_txt(lambda lines: _replace_line(lines, 5, " | ", " ")),
        ["PH2_dataset.txt (row 6)", "has 9 cells but the header has 10"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_clear_error_and_check_exit_2(case, mini, cli):
    mutate, expected = BAD_INPUTS[case]
    mutate(mini)
    assert_unreadable(cli, DATASET, mini, expected)


def test_bad_metadata_option_exits_2(mini, cli):
    rc, report = _check(cli, mini, "--option", "metadata=csv")
    assert rc == 2 and "metadata='csv'" in report["problems"][0]
    (mini / TXT_FILE).unlink()
    with pytest.raises(DatasetError, match="PH2_dataset.txt not found"):
        SOURCE.read(mini, metadata="txt")
    assert [c for c in COLOURS] == ["white", "red", "light_brown", "dark_brown", "blue_gray", "black"]
