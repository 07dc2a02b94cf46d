"""PAD-UFES-20 source: the publisher's layout, the real metadata, the miniature and clear errors."""
from __future__ import annotations

import csv
import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import CORE_COLUMNS, validate_table
from dermfuse_data.sources import get_source
from dermfuse_data.sources.pad_ufes_20 import CLASSES, COLUMNS, META_COLUMNS, SOURCE
from dermfuse_data.splits import make_splits
from dermfuse_data.synthetic import image_class_of
from dermfuse_data.synthetic.pad_ufes_20 import METADATA_ONLY_PAIRS, write_miniature

REAL_PAD_CSV = (Path(__file__).resolve().parents[2].parent / "shared" / "real_metadata"
                / "pad_ufes_20" / "metadata.csv")
REAL_COUNTS = {"BCC": 845, "ACK": 730, "NEV": 244, "SEK": 235, "SCC": 192, "MEL": 52}


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def test_registered_source_declares_classes_features_and_leak():
    assert get_source("pad_ufes_20") is SOURCE
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


def test_real_metadata_lesion_id_not_unique_across_patients(real_pad_root):
    table = SOURCE.read(real_pad_root)
    patients_of: dict[str, set[str]] = {}
    for lesion, patient in zip(table.column("meta_lesion_id").to_pylist(),
                               table.column("group_id").to_pylist()):
        patients_of.setdefault(lesion, set()).add(patient)
    assert any(len(p) > 1 for p in patients_of.values())  # why group_id is the patient


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
        split = make_splits(table, seed=seed)                           # no official split
        splits_of: dict[str, set[str]] = {}
        for sid, s in zip(split.column("sample_id").to_pylist(), split.column("split").to_pylist()):
            splits_of.setdefault(patient_of[sid], set()).add(s)
        assert all(len(s) == 1 for s in splits_of.values())
        sizes = Counter(split.column("split").to_pylist())
        assert sum(sizes.values()) == 2298 and min(sizes.values()) > 200
    rc, out, _ = cli("check", "--dataset", "pad_ufes_20", "--root", real_pad_root, "--json",
                     "--no-verify-images")
    report = json.loads(out)
    assert rc == 0 and report["group_unit"] == "patient" and report["groups"] == 1373
    assert report["warnings"] == ["image decoding not verified (--no-verify-images)"]  # none crossing


def test_real_header_is_the_declared_one():
    if not REAL_PAD_CSV.is_file():
        pytest.skip("../shared/real_metadata is absent")
    header, _ = read_csv(REAL_PAD_CSV)
    assert tuple(header) == COLUMNS


# ------------------------------------------------------------------ synthetic miniature
def test_miniature_round_trip(pad_synth_root):
    header, rows = read_csv(pad_synth_root / "metadata.csv")
    assert tuple(header) == COLUMNS
    table = SOURCE.read(pad_synth_root)
    validate_table(table)
    assert table.num_rows == len(rows) and 120 <= len(rows) <= 200
    counts = Counter(table.column("label_name").to_pylist())
    assert set(counts) == set(CLASSES) and min(counts.values()) >= 10
    assert counts["BCC"] > 3 * counts["MEL"]                            # published imbalance kept
    per_patient = Counter(table.column("group_id").to_pylist())
    assert max(per_patient.values()) >= 3 and table.num_rows / len(per_patient) > 1.5
    parts = {Path(p).parent.name for p in table.column("image_path").to_pylist()}
    assert parts == {"imgs_part_1", "imgs_part_2", "imgs_part_3"}
    cells = [c for r in rows for c in r]
    assert "" in cells and "UNK" in cells                               # missing as the real file


def test_miniature_metadata_only_pairs(pad_synth_root):
    """ACK/SCC and NEV/SEK share the image distribution; bleed and age tell them apart."""
    ack, nev, scc, sek = (CLASSES.index(c) for c in ("ACK", "NEV", "SCC", "SEK"))
    assert set(METADATA_ONLY_PAIRS) == {(ack, scc), (nev, sek)}
    assert image_class_of(ack, METADATA_ONLY_PAIRS) == image_class_of(scc, METADATA_ONLY_PAIRS)
    assert image_class_of(nev, METADATA_ONLY_PAIRS) == image_class_of(sek, METADATA_ONLY_PAIRS)
    assert len({image_class_of(c, METADATA_ONLY_PAIRS) for c in range(6)}) == 4
    table = SOURCE.read(pad_synth_root).to_pylist()
    bleed = {dx: {r["meta_bleed"] for r in table if r["label_name"] == dx} for dx in ("ACK", "SCC")}
    assert bleed == {"ACK": {"False"}, "SCC": {"True"}}
    ages = {dx: [int(r["meta_age"]) for r in table if r["label_name"] == dx] for dx in ("NEV", "SEK")}
    assert max(ages["NEV"]) < min(ages["SEK"])


def test_miniature_lesion_id_reused_across_patients(pad_synth_root):
    table = SOURCE.read(pad_synth_root)
    patients_of: dict[str, set[str]] = {}
    for lesion, patient in zip(table.column("meta_lesion_id").to_pylist(),
                               table.column("group_id").to_pylist()):
        patients_of.setdefault(lesion, set()).add(patient)
    assert any(len(p) > 1 for p in patients_of.values())


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_miniature_deterministic_per_seed(pad_synth_root, tmp_path):
    again = write_miniature(tmp_path / "again", 0)
    other = write_miniature(tmp_path / "other", 1)
    assert _digest(again) == _digest(pad_synth_root)
    assert (again / "metadata.csv").read_bytes() == (pad_synth_root / "metadata.csv").read_bytes()
    assert (other / "metadata.csv").read_bytes() != (again / "metadata.csv").read_bytes()
    assert set(_digest(other).values()).isdisjoint(
        v for k, v in _digest(again).items() if k.endswith(".png"))


def test_flat_images_folder_accepted(pad_copy):
    images = pad_copy / "images"
    for png in list(images.rglob("*.png")):
        png.rename(images / png.name)
    for part in images.glob("imgs_part_*"):
        part.rmdir()
    table = SOURCE.read(pad_copy)
    assert table.num_rows == len(read_csv(pad_copy / "metadata.csv")[1])
    assert {Path(p).parent for p in table.column("image_path").to_pylist()} == {images.resolve()}


def test_read_does_not_decode_images(pad_copy):
    png = next((pad_copy / "images").rglob("*.png"))
    png.write_bytes(b"not a png")
    assert SOURCE.read(pad_copy).num_rows == len(read_csv(pad_copy / "metadata.csv")[1])


# ------------------------------------------------------------------ clear errors
def _edit(root: Path, edit) -> Path:
    header, rows = read_csv(root / "metadata.csv")
    header, rows = edit(header, rows)
    write_csv(root / "metadata.csv", header, rows)
    return root / "metadata.csv"


def test_missing_root(tmp_path):
    with pytest.raises(DatasetError, match="does not exist") as err:
        SOURCE.read(tmp_path / "nowhere")
    assert "nowhere" in str(err.value) and "Mendeley" in str(err.value)


def test_missing_metadata_csv(pad_copy):
    (pad_copy / "metadata.csv").unlink()
    with pytest.raises(DatasetError) as err:
        SOURCE.read(pad_copy)
    msg = str(err.value)
    assert str(pad_copy / "metadata.csv") in msg and "not found" in msg and "images" in msg
    assert "->" in msg and err.value.hint


def test_missing_column_lists_missing_and_present(pad_copy):
    def drop(header, rows):
        i = header.index("diagnostic")
        return header[:i] + header[i + 1:], [r[:i] + r[i + 1:] for r in rows]
    path = _edit(pad_copy, drop)
    with pytest.raises(DatasetError) as err:
        SOURCE.read(pad_copy)
    msg = str(err.value)
    assert str(path) in msg and "missing column(s) ['diagnostic']" in msg
    assert "'img_id'" in msg and "rename" in msg and err.value.row == 1


def test_unknown_diagnostic_names_row(pad_copy):
    def bad(header, rows):
        rows[4][header.index("diagnostic")] = "MELANOMA"
        return header, rows
    path = _edit(pad_copy, bad)
    with pytest.raises(DatasetError) as err:
        SOURCE.read(pad_copy)
    msg = str(err.value)
    assert f"{path} (row 6)" in msg and "'MELANOMA'" in msg and "'diagnostic'" in msg
    assert "ACK" in err.value.hint and err.value.row == 6


def test_image_listed_but_absent(pad_copy):
    gone = sorted((pad_copy / "images").rglob("*.png"))[:7]
    for p in gone:
        p.unlink()
    with pytest.raises(DatasetError) as err:
        SOURCE.read(pad_copy)
    msg = str(err.value)
    assert "7 of" in msg and "not on disk" in msg and "..." in msg
    assert sum(p.name in msg for p in gone) == 5 and str(pad_copy / "images") in msg
    assert "imgs_part_1" in err.value.hint


def test_duplicate_img_id_names_both_rows(pad_copy):
    path = _edit(pad_copy, lambda header, rows: (header, rows[:3] + [rows[1]] + rows[3:]))
    with pytest.raises(DatasetError) as err:
        SOURCE.read(pad_copy)
    msg = str(err.value)
    assert f"{path} (row 5)" in msg and "duplicate img_id" in msg and "row 3" in msg
    assert "once" in err.value.hint


def test_row_with_wrong_cell_count(pad_copy):
    path = _edit(pad_copy, lambda header, rows: (header, rows[:2] + [rows[2][:-3]] + rows[3:]))
    with pytest.raises(DatasetError, match=r"\(row 4\): has 23 cells but the header has 26") as err:
        SOURCE.read(pad_copy)
    assert str(path) in str(err.value) and "comma" in err.value.hint


def test_no_images_folder(pad_copy):
    shutil.rmtree(pad_copy / "images")
    with pytest.raises(DatasetError, match="no images folder") as err:
        SOURCE.read(pad_copy)
    assert str(pad_copy / "images") in str(err.value)
