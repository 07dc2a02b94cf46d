"""PAD-UFES-20 source: the publisher's layout, the real metadata, the miniature and clear errors.

What every source promises (schema, determinism, ``check``, damaged files) is in test_source_contract.py.
"""

from __future__ import annotations

import io
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from dermfuse_data.schema import CORE_COLUMNS, validate_table
from dermfuse_data.sources.pad_ufes_20 import CLASSES, COLUMNS, META_COLUMNS, SOURCE
from dermfuse_data.splits import make_splits
from dermfuse_data.synthetic.lesions import image_class_of
from dermfuse_data.synthetic.pad_ufes_20 import METADATA_ONLY_PAIRS
from tests.data._support import assert_unreadable, drop_column, edit_csv, read_csv, real_path, set_cell

DATASET = "pad_ufes_20"
REAL_COUNTS = {"BCC": 845, "ACK": 730, "NEV": 244, "SEK": 235, "SCC": 192, "MEL": 52}


def test_source_declares_classes_features_and_leak():
    assert SOURCE.classes == ("ACK", "BCC", "MEL", "NEV", "SCC", "SEK") and SOURCE.group == "patient"
    names = [f.name for f in SOURCE.features]
    assert len(names) == 22 and set(names) <= set(META_COLUMNS)
    assert {f.name for f in SOURCE.features if f.kind == "numeric"} == {"age", "diameter_1", "diameter_2"}
    assert SOURCE.feature("fitspatrick").kind == "categorical"
    biopsed = SOURCE.feature("biopsed")
    assert biopsed.leaks_label and "BCC" in biopsed.why_leaks
    assert [f.name for f in SOURCE.features if f.leaks_label] == ["biopsed"]


# ------------------------------------------------------------------ real metadata
def test_real_metadata_read(real_pad_root):
    table = SOURCE.read(real_pad_root)
    validate_table(table)
    assert table.num_rows == 2298
    assert len(set(table.column("group_id").to_pylist())) == 1373
    assert Counter(table.column("label_name").to_pylist()) == REAL_COUNTS
    assert table.column_names == CORE_COLUMNS + ["meta_" + c for c in META_COLUMNS]
    assert set(table.column("official_split").to_pylist()) == {None}
    # raw values kept: UNK as written, empty as null
    assert Counter(table.column("meta_grew").to_pylist())["UNK"] == 402
    assert table.column("meta_smoke").null_count == 804
    assert Path(table.column("image_path")[0].as_py()).is_file()


def _lesion_id_shared_by_patients(table) -> bool:
    patients_of: dict[str, set[str]] = {}
    for lesion, patient in zip(table.column("meta_lesion_id").to_pylist(), table.column("group_id").to_pylist()):
        patients_of.setdefault(lesion, set()).add(patient)
    return any(len(p) > 1 for p in patients_of.values())


def test_real_metadata_lesion_id_not_unique_across_patients(real_pad_root):
    assert _lesion_id_shared_by_patients(SOURCE.read(real_pad_root))  # why group_id is the patient


def test_real_metadata_biopsed_leaks_as_documented(real_pad_root):
    table = SOURCE.read(real_pad_root)
    pairs = Counter(zip(table.column("label_name").to_pylist(), table.column("meta_biopsed").to_pylist()))
    for cancer in ("BCC", "SCC", "MEL"):
        assert pairs[(cancer, "False")] == 0 and pairs[(cancer, "True")] == REAL_COUNTS[cancer]
    assert sum(n for (dx, b), n in pairs.items() if dx in ("ACK", "NEV", "SEK") and b == "True") == 253


def test_real_no_patient_crosses_splits(real_pad_root, cli):
    """Patients (read from the raw CSV, not from group_id) never straddle train/val/test."""
    _, rows = read_csv(real_pad_root / "metadata.csv")
    patient_of = {r[COLUMNS.index("img_id")]: r[COLUMNS.index("patient_id")] for r in rows}
    images_per_patient = Counter(patient_of.values())
    assert len(images_per_patient) == 1373 and max(images_per_patient.values()) > 1
    table = SOURCE.read(real_pad_root)
    for seed in (0, 1, 2):
        split = make_splits(table, seed=seed)  # no official split
        splits_of: dict[str, set[str]] = {}
        for sid, s in zip(split.column("sample_id").to_pylist(), split.column("split").to_pylist()):
            splits_of.setdefault(patient_of[sid], set()).add(s)
        assert all(len(s) == 1 for s in splits_of.values())
        sizes = Counter(split.column("split").to_pylist())
        assert sum(sizes.values()) == 2298 and min(sizes.values()) > 200
    rc, out, _ = cli("check", "--dataset", "pad_ufes_20", "--root", real_pad_root, "--json", "--no-verify-images")
    report = json.loads(out)
    assert rc == 0 and report["group_unit"] == "patient" and report["groups"] == 1373
    assert report["warnings"] == ["image decoding not verified (--no-verify-images)"]  # none crossing


def test_real_header_is_the_declared_one():
    header, _ = read_csv(real_path("pad_ufes_20", "metadata.csv"))
    assert tuple(header) == COLUMNS


# ------------------------------------------------------------------ synthetic miniature
def test_miniature_in_the_publishers_layout(synth_root):
    header, rows = read_csv(synth_root / "metadata.csv")
    assert tuple(header) == COLUMNS
    assert b"\r\n" not in (synth_root / "metadata.csv").read_bytes()  # LF, as the real file
    table = SOURCE.read(synth_root)
    assert table.num_rows == len(rows) and 120 <= len(rows) <= 200
    counts = Counter(table.column("label_name").to_pylist())
    assert min(counts.values()) >= 10 and counts["BCC"] > 3 * counts["MEL"]  # published imbalance kept
    per_patient = Counter(table.column("group_id").to_pylist())
    assert max(per_patient.values()) >= 3 and table.num_rows / len(per_patient) > 1.5
    parts = {Path(p).parent.name for p in table.column("image_path").to_pylist()}
    assert parts == {"imgs_part_1", "imgs_part_2", "imgs_part_3"}
    cells = [c for r in rows for c in r]
    assert "" in cells and "UNK" in cells  # missing as the real file
    for path in sorted((synth_root / "images").rglob("*.png"))[:5]:
        with Image.open(io.BytesIO(path.read_bytes())) as im:
            assert im.mode == "RGB" and 88 <= im.width <= 128 and 88 <= im.height <= 128


def test_miniature_metadata_only_pairs(synth_root):
    """ACK/SCC and NEV/SEK share the image distribution; bleed and age tell them apart."""
    ack, nev, scc, sek = (CLASSES.index(c) for c in ("ACK", "NEV", "SCC", "SEK"))
    assert set(METADATA_ONLY_PAIRS) == {(ack, scc), (nev, sek)}
    assert image_class_of(ack, METADATA_ONLY_PAIRS) == image_class_of(scc, METADATA_ONLY_PAIRS)
    assert image_class_of(nev, METADATA_ONLY_PAIRS) == image_class_of(sek, METADATA_ONLY_PAIRS)
    assert len({image_class_of(c, METADATA_ONLY_PAIRS) for c in range(6)}) == 4
    table = SOURCE.read(synth_root).to_pylist()
    bleed = {dx: {r["meta_bleed"] for r in table if r["label_name"] == dx} for dx in ("ACK", "SCC")}
    assert bleed == {"ACK": {"False"}, "SCC": {"True"}}
    ages = {dx: [int(r["meta_age"]) for r in table if r["label_name"] == dx] for dx in ("NEV", "SEK")}
    assert max(ages["NEV"]) < min(ages["SEK"])


def test_miniature_lesion_id_reused_across_patients(synth_root):
    assert _lesion_id_shared_by_patients(SOURCE.read(synth_root))


def test_flat_images_folder_accepted(mini):
    images = mini / "images"
    for png in list(images.rglob("*.png")):
        png.rename(images / png.name)
    for part in images.glob("imgs_part_*"):
        part.rmdir()
    table = SOURCE.read(mini)
    assert table.num_rows == len(read_csv(mini / "metadata.csv")[1])
    assert {Path(p).parent for p in table.column("image_path").to_pylist()} == {images.resolve()}


# ------------------------------------------------------------------ clear errors
def _edit(root: Path, edit) -> Path:
    return edit_csv(root / "metadata.csv", edit, end="\n")


def _first_image(root: Path) -> Path:
    return sorted((root / "images").rglob("*.png"))[0]


#: name -> (break the copy, texts the error must hold)
BAD_INPUTS = {
    "missing metadata.csv": (lambda root: (root / "metadata.csv").unlink(), ["metadata.csv not found"]),
    "missing column": (
        lambda root: _edit(root, drop_column("diagnostic")),
        ["metadata.csv (row 1)", "missing column(s) ['diagnostic']"],
    ),
    "unknown diagnostic": (
        lambda root: _edit(root, set_cell(0, "diagnostic", "XYZ")),
        ["metadata.csv (row 2)", "unknown diagnostic 'XYZ'"],
    ),
    "image absent": (
        lambda root: _first_image(root).unlink(),
        ["1 of 160 images listed in metadata.csv are not on disk"],
    ),
    "duplicate img_id": (
        lambda root: _edit(root, lambda h, r: (h, r + [r[0]])),
        ["metadata.csv (row 162)", "duplicate img_id", "(also on row 2)"],
    ),
    "UTF-16 metadata.csv": (
        lambda root: (root / "metadata.csv").write_text((root / "metadata.csv").read_text(), encoding="utf-16"),
        ["metadata.csv: not UTF-8 text (invalid start byte at byte 0)", "save as CSV UTF-8"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_unreadable_dataset_exits_2_with_clear_message(case, mini, cli):
    mutate, expected = BAD_INPUTS[case]
    mutate(mini)
    assert_unreadable(cli, DATASET, mini, expected)


def test_missing_metadata_csv_lists_the_folder(mini, cli):
    (mini / "metadata.csv").unlink()
    error = assert_unreadable(cli, DATASET, mini, [str(mini / "metadata.csv"), "not found", "images"])
    assert "->" in str(error)


def test_missing_column_lists_missing_and_present(mini, cli):
    path = _edit(mini, drop_column("diagnostic"))
    error = assert_unreadable(
        cli, DATASET, mini, [str(path), "missing column(s) ['diagnostic']", "'img_id'"], hint="rename"
    )
    assert error.row == 1


def test_unknown_diagnostic_names_row(mini, cli):
    path = _edit(mini, set_cell(4, "diagnostic", "MELANOMA"))
    error = assert_unreadable(cli, DATASET, mini, [f"{path} (row 6)", "'MELANOMA'", "'diagnostic'"], hint="ACK")
    assert error.row == 6


def test_image_listed_but_absent(mini, cli):
    for png in sorted((mini / "images").rglob("*.png"))[:7]:
        png.unlink()
    assert_unreadable(
        cli, DATASET, mini, ["7 of 160", "not on disk", ", ...", str(mini / "images")], hint="imgs_part_1"
    )


def test_duplicate_img_id_names_both_rows(mini, cli):
    path = _edit(mini, lambda header, rows: (header, rows[:3] + [rows[1]] + rows[3:]))
    assert_unreadable(cli, DATASET, mini, [f"{path} (row 5)", "duplicate img_id", "row 3"], hint="once")


def test_row_with_wrong_cell_count(mini, cli):
    path = _edit(mini, lambda header, rows: (header, rows[:2] + [rows[2][:-3]] + rows[3:]))
    assert_unreadable(cli, DATASET, mini, [str(path), "(row 4): has 23 cells but the header has 26"], hint="comma")


def test_no_images_folder(mini, cli):
    shutil.rmtree(mini / "images")
    assert_unreadable(cli, DATASET, mini, ["no images folder", str(mini / "images")])
