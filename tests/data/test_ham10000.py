"""HAM10000 source: both metadata releases, both image layouts, the real file, the miniature, errors."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from dermfuse_data.check import encoding_widths
from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import CORE_COLUMNS, validate_table
from dermfuse_data.sources.ham10000 import CLASSES, COLUMNS, IMAGE_FOLDERS, META_COLUMNS, METADATA_FILE, SOURCE
from dermfuse_data.splits import crossing_groups, make_splits
from dermfuse_data.synthetic.ham10000 import METADATA_ONLY_PAIRS, write_miniature
from dermfuse_data.synthetic.lesions import image_class_of
from dermfuse_data.tabular import select_features
from tests.data._support import (
    assert_unreadable,
    drop_column,
    edit_csv,
    read_csv,
    real_path,
    set_cell,
    tiny_image,
    write_csv,
)

DATASET = "ham10000"
REAL_COUNTS = {"nv": 6705, "mel": 1113, "bkl": 1099, "bcc": 514, "akiec": 327, "vasc": 142, "df": 115}


def _stand_in_images(root: Path, image_ids: list[str], split_parts: bool) -> None:
    stand_in = root / "stand_in.jpg"
    stand_in.write_bytes(tiny_image("JPEG"))
    for folder in IMAGE_FOLDERS if split_parts else ("HAM10000_images",):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for image_id in image_ids:
        if split_parts:
            folder = IMAGE_FOLDERS[0] if int(image_id[5:]) <= 29305 else IMAGE_FOLDERS[1]
        else:
            folder = "HAM10000_images"
        os.link(stand_in, root / folder / f"{image_id}.jpg")  # hard links: fast


@pytest.fixture(scope="module")
def real_root(tmp_path_factory) -> Path:
    """The real 8-column CRLF metadata file + stand-in JPEGs in the two publisher part folders."""
    real_csv = real_path("ham10000", METADATA_FILE)
    root = tmp_path_factory.mktemp("ham_real")
    (root / METADATA_FILE).write_bytes(real_csv.read_bytes())
    _stand_in_images(root, [r[1] for r in read_csv(real_csv)[1]], split_parts=True)
    return root


@pytest.fixture(scope="module")
def real_table(real_root):
    return SOURCE.read(real_root)


@pytest.fixture(scope="module")
def real_seven_column_root(tmp_path_factory) -> Path:
    """The real file rewritten as the 7-column release (LF, ages ``80.0``), one ``HAM10000_images/``."""
    real_csv = real_path("ham10000", METADATA_FILE)
    root = tmp_path_factory.mktemp("ham_real_7col")
    header, rows = read_csv(real_csv)
    assert header == list(COLUMNS)
    age = header.index("age")
    rows7 = [r[:7] for r in rows]
    for r in rows7:
        r[age] = f"{float(r[age]):.1f}" if r[age] else ""
    write_csv(root / METADATA_FILE, header[:7], rows7, end="\n")
    _stand_in_images(root, [r[1] for r in rows], split_parts=False)
    return root


def test_source_declares_classes_features_and_leaks():
    assert SOURCE.classes == ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc") == tuple(sorted(CLASSES))
    assert SOURCE.group == "lesion" and not SOURCE.has_masks and set(SOURCE.options) == {"group_by"}
    assert {f.name: f.kind for f in SOURCE.features} == {
        "age": "numeric",
        "sex": "categorical",
        "localization": "categorical",
        "dx_type": "categorical",
        "dataset": "categorical",
    }
    assert [f.name for f in SOURCE.features if f.leaks_label] == ["dx_type", "dataset"]
    assert "3704 follow_up images are nv" in SOURCE.feature("dx_type").why_leaks
    assert [f.name for f in select_features(SOURCE)] == ["age", "sex", "localization"]
    with pytest.raises(DatasetError, match="leaks the label"):
        select_features(SOURCE, ["age", "dx_type"])


# ------------------------------------------------------------------ real metadata
def test_real_metadata_read(real_table):
    table = real_table
    validate_table(table)
    assert table.num_rows == 10015
    assert len(set(table.column("group_id").to_pylist())) == 7470
    assert Counter(table.column("label_name").to_pylist()) == REAL_COUNTS
    assert table.column_names == CORE_COLUMNS + ["meta_" + c for c in META_COLUMNS]
    assert set(table.column("official_split").to_pylist()) == {None}
    assert table.column("meta_age").null_count == 57
    assert Counter(table.column("meta_sex").to_pylist())["unknown"] == 57
    assert Counter(table.column("meta_localization").to_pylist())["unknown"] == 234
    assert table.column("meta_dataset").null_count == 0
    assert table.column("sample_id")[0].as_py() == "ISIC_0027419"
    assert table.column("meta_age")[0].as_py() == "80"  # as written
    parts = Counter(Path(p).parent.name for p in table.column("image_path").to_pylist())
    assert parts == {IMAGE_FOLDERS[0]: 5000, IMAGE_FOLDERS[1]: 5015}


def test_real_dx_type_and_dataset_leak_as_documented(real_table):
    rows = real_table.select(["label_name", "meta_dx_type", "meta_dataset"]).to_pylist()
    by_type = Counter((r["meta_dx_type"], r["label_name"]) for r in rows)
    follow_up = sum(n for (t, _), n in by_type.items() if t == "follow_up")
    assert follow_up == by_type[("follow_up", "nv")] == 3704
    assert sum(n for (t, _), n in by_type.items() if t == "confocal") == by_type[("confocal", "bkl")] == 69
    for cancer in ("mel", "bcc", "akiec"):
        assert by_type[("histo", cancer)] == REAL_COUNTS[cancer]
    molemax = Counter(r["label_name"] for r in rows if r["meta_dataset"] == "vidir_molemax")
    assert (molemax["nv"], sum(molemax.values())) == (3720, 3954)
    cohorts = Counter(r["meta_dataset"] for r in rows if r["meta_dx_type"] == "follow_up")
    assert cohorts == {"vidir_molemax": 3704}


def test_real_seven_column_lf_release_in_one_folder_reads_the_same(real_table, real_seven_column_root):
    raw = (real_seven_column_root / METADATA_FILE).read_bytes()
    assert b"\r\n" not in raw and b",80.0," in raw
    table = SOURCE.read(real_seven_column_root)
    assert table.column_names == real_table.column_names
    for name in ("sample_id", "label", "label_name", "group_id", "meta_sex", "meta_localization", "meta_dx_type"):
        assert table.column(name).to_pylist() == real_table.column(name).to_pylist(), name
    assert table.column("meta_dataset").null_count == 10015
    assert [None if a is None else float(a) for a in table.column("meta_age").to_pylist()] == [
        None if a is None else float(a) for a in real_table.column("meta_age").to_pylist()
    ]
    assert {Path(p).parent.name for p in table.column("image_path").to_pylist()} == {"HAM10000_images"}


@pytest.mark.slow  # ~10 s alone (two StratifiedGroupKFold passes over 7470 lesions + 10015 decodes)
def test_check_json_on_real_metadata(real_root, cli):
    rc, out, _ = cli("check", "--dataset", "ham10000", "--root", real_root, "--json")
    report = json.loads(out)
    assert rc == 0, report["problems"]
    assert report["rows"] == 10015 and report["groups"] == 7470 and report["group_unit"] == "lesion"
    assert report["classes"] == {c: REAL_COUNTS[c] for c in CLASSES}
    assert report["missing"] == {"dx_type": 0, "age": 57, "sex": 57, "localization": 234, "dataset": 0}
    assert report["problems"] == [] and report["warnings"] == []  # no group crosses splits
    assert report["images_verified"] == 10015 and report["split_kind"].startswith("grouped")
    assert report["encoded_widths"] == {"age": 2, "sex": 3, "localization": 15}  # 14 sites + missing
    assert report["encoded_width"] == 20  # dx_type, dataset leak: refused


def test_real_encoded_width(real_table):
    """The width ``check`` reports, fitted on the default split's training rows (no leaking column)."""
    widths = encoding_widths(real_table, SOURCE)
    assert widths == {"age": 2, "sex": 3, "localization": 15} and sum(widths.values()) == 20


@pytest.mark.slow  # ~7 s alone (StratifiedGroupKFold over 7470 lesions)
def test_real_grouped_split_keeps_lesions_together(real_table):
    split = make_splits(real_table, seed=3)
    assert crossing_groups(split) == {}
    images_per_lesion = Counter(real_table.column("group_id").to_pylist())
    assert max(images_per_lesion.values()) == 6 and sum(n > 1 for n in images_per_lesion.values()) == 1956
    sizes = Counter(split.column("split").to_pylist())
    assert all(0.1 < sizes[s] / 10015 < 0.2 for s in ("val", "test"))


# ------------------------------------------------------------------ synthetic miniature
def test_miniature_in_the_publishers_layout(synth_root):
    raw = (synth_root / METADATA_FILE).read_bytes()
    assert raw.startswith(b"lesion_id,image_id,dx,dx_type,age,sex,localization,dataset\r\n")
    header, rows = read_csv(synth_root / METADATA_FILE)
    table = SOURCE.read(synth_root)
    assert table.num_rows == len(rows) == 150
    counts = Counter(table.column("label_name").to_pylist())
    assert min(counts.values()) >= 10 and counts["nv"] > 3 * counts["mel"]
    per_lesion = Counter(table.column("group_id").to_pylist())
    assert max(per_lesion.values()) >= 3 and len(per_lesion) < 0.8 * table.num_rows
    assert {Path(p).parent.name for p in table.column("image_path").to_pylist()} == set(IMAGE_FOLDERS)
    for path in table.column("image_path").to_pylist():
        number = int(Path(path).stem[5:])
        assert (Path(path).parent.name == IMAGE_FOLDERS[0]) == (24306 <= number <= 29305)
    with Image.open(table.column("image_path")[0].as_py()) as im:
        assert im.format == "JPEG" and im.width > im.height
    cells = [c for r in rows for c in r]
    assert "" in cells and "unknown" in cells  # missing as the real file
    follow_up = {r[2] for r in rows if r[3] == "follow_up"}
    assert follow_up == {"nv"}  # leaks like the real file


def test_miniature_bkl_and_df_differ_only_in_age(synth_root):
    bkl, df = CLASSES.index("bkl"), CLASSES.index("df")
    assert ((bkl, df),) == METADATA_ONLY_PAIRS
    assert image_class_of(bkl, METADATA_ONLY_PAIRS) == image_class_of(df, METADATA_ONLY_PAIRS)
    assert len({image_class_of(c, METADATA_ONLY_PAIRS) for c in range(len(CLASSES))}) == 6
    rows = SOURCE.read(synth_root).to_pylist()
    ages = {dx: [int(r["meta_age"]) for r in rows if r["label_name"] == dx] for dx in ("bkl", "df")}
    assert len(ages["bkl"]) == Counter(r["label_name"] for r in rows)["bkl"]  # never missing
    assert max(ages["df"]) < min(ages["bkl"])


def test_miniature_size_option(tmp_path):
    table = SOURCE.read(write_miniature(tmp_path / "small", 1, n_images=72))
    assert table.num_rows == 72 and set(table.column("label_name").to_pylist()) == set(CLASSES)


@pytest.mark.parametrize("layout", ["HAM10000_images", "ham10000_images_part_1", "nested"])
def test_other_image_folder_layouts(mini, layout):
    files = sorted(mini.rglob("*.jpg"))
    target = {
        "HAM10000_images": mini / "HAM10000_images",
        "ham10000_images_part_1": mini / "ham10000_images_part_1",
        "nested": mini / "HAM10000_images_part_1" / "HAM10000_images_part_1",
    }[layout]
    target.mkdir(parents=True, exist_ok=True)
    for f in files:
        f.rename(target / f.name)
    for part in IMAGE_FOLDERS:
        if part != "HAM10000_images_part_1" or layout != "nested":
            shutil.rmtree(mini / part, ignore_errors=True)
    table = SOURCE.read(mini)
    assert table.num_rows == len(files)
    assert {Path(p).parent for p in table.column("image_path").to_pylist()} == {target.resolve()}


# ------------------------------------------------------------------ clear errors
def _edit(root: Path, edit) -> Path:
    return edit_csv(root / METADATA_FILE, edit)


def _remove_images(root: Path, n: int) -> list[str]:
    gone = sorted(root.rglob("*.jpg"))[:n]
    for p in gone:
        p.unlink()
    return [p.stem for p in gone]


#: name -> (break the copy, texts the error must hold, hint text)
BAD_INPUTS = {
    "missing metadata file": (
        lambda root: (root / METADATA_FILE).unlink(),
        [f"{METADATA_FILE} not found", "HAM10000_images_part_1"],
        "Dataverse",
    ),
    "missing column": (
        lambda root: _edit(root, drop_column("dx")),
        [f"{METADATA_FILE} (row 1)", "missing column(s) ['dx']", "'lesion_id'"],
        "rename",
    ),
    "unknown dx": (
        lambda root: _edit(root, set_cell(3, "dx", "melanoma")),
        [f"{METADATA_FILE} (row 5)", "unknown dx 'melanoma'", "column 'dx'"],
        "akiec",
    ),
    "images absent": (
        lambda root: _remove_images(root, 7),
        ["7 of 150 images listed in HAM10000_metadata.csv are not on disk", "..."],
        "HAM10000_images_part_2",
    ),
    "duplicate image_id": (
        lambda root: _edit(root, lambda h, r: (h, r[:3] + [r[1]] + r[3:])),
        [f"{METADATA_FILE} (row 5)", "duplicate image_id", "(also on row 3)"],
        "once",
    ),
    "empty lesion_id": (
        lambda root: _edit(root, set_cell(0, "lesion_id", "")),
        [f"{METADATA_FILE} (row 2)", "empty lesion_id"],
        "lesion_id",
    ),
    "wrong cell count": (
        lambda root: _edit(root, lambda h, r: (h, r[:2] + [r[2][:-2]] + r[2:])),
        [f"{METADATA_FILE} (row 4)", "has 6 cells but the header has 8"],
        "comma",
    ),
    "no image folder": (
        lambda root: [shutil.rmtree(root / p) for p in IMAGE_FOLDERS],
        ["no image folder", "HAM10000_images/"],
        "unzip",
    ),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_clear_error_and_check_exit(mini, cli, name):
    breaker, texts, hint = BAD_INPUTS[name]
    breaker(mini)
    assert_unreadable(cli, DATASET, mini, texts, hint=hint)


def test_unknown_option(synth_root):
    with pytest.raises(DatasetError, match=r"unknown option\(s\) \['exclude_ham10000'\]"):
        SOURCE.read(synth_root, exclude_ham10000=True)
