"""ISIC 2017 source: the challenge layout, the real ground truth, the miniature and clear errors."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import pytest

from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import CORE_COLUMNS, validate_table
from dermfuse_data.sources.isic2017 import (
    CLASSES,
    LABEL_COLUMNS,
    METADATA_COLUMNS,
    SOURCE,
    data_dir,
    labels_csv,
    mask_dir,
    metadata_name,
)
from dermfuse_data.splits import crossing_groups, make_splits
from dermfuse_data.synthetic.isic2017 import METADATA_ONLY_PAIRS
from dermfuse_data.synthetic.lesions import image_class_of
from dermfuse_data.tabular import TabularEncoder, select_features
from tests.data._support import (
    REAL_METADATA,
    assert_unreadable,
    check_json,
    drop_column,
    edit_csv,
    read_csv,
    real_path,
    tiny_image,
    write_csv,
)

DATASET = "isic2017"
REAL = REAL_METADATA / "isic2017"
REAL_COUNTS = {
    "train": {"melanoma": 374, "seborrheic_keratosis": 254, "nevus": 1372},
    "val": {"melanoma": 30, "seborrheic_keratosis": 42, "nevus": 78},
    "test": {"melanoma": 117, "seborrheic_keratosis": 90, "nevus": 393},
}
SPLITS = ("train", "val", "test")


def _ids(path: Path) -> list[str]:
    with open(path, newline="") as fh:
        return [row["image_id"] for row in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def real_root(tmp_path_factory) -> Path:
    """The challenge layout in tmp: the real Part 3 CSVs and training metadata, stand-in files per id."""
    real_path("isic2017")
    root = tmp_path_factory.mktemp("isic2017_real")
    jpg, png = tiny_image("JPEG"), tiny_image("PNG", "L")
    for split in SPLITS:
        labels_csv(root, split).write_bytes((REAL / labels_csv(root, split).name).read_bytes())
        data_dir(root, split).mkdir()
        mask_dir(root, split).mkdir()
        for image_id in _ids(labels_csv(root, split)):
            (data_dir(root, split) / f"{image_id}.jpg").write_bytes(jpg)
            (data_dir(root, split) / f"{image_id}_superpixels.png").write_bytes(png)
            (mask_dir(root, split) / f"{image_id}_segmentation.png").write_bytes(png)
    meta = data_dir(root, "train") / metadata_name("train")
    meta.write_bytes((REAL / meta.name).read_bytes())
    return root


def _check(cli, root: Path, *extra: str) -> tuple[int, dict]:
    return check_json(cli, DATASET, root, *extra)


def test_source_declares_classes_masks_and_features():
    assert SOURCE.classes == ("melanoma", "seborrheic_keratosis", "nevus")
    assert SOURCE.has_masks and SOURCE.tasks == ("classification", "segmentation")
    assert [(f.name, f.kind, f.leaks_label) for f in SOURCE.features] == [
        ("age_approximate", "numeric", False),
        ("sex", "categorical", False),
    ]
    assert "splits" in SOURCE.options and SOURCE.group == "image"


# ------------------------------------------------------------------ real ground truth
def test_real_check_json_counts(real_root, cli):
    rc, report = _check(cli, real_root, "--no-verify-images")
    assert rc == 0, report["problems"]
    assert report["rows"] == 2750 and report["groups"] == 2750 and report["problems"] == []
    assert report["classes"] == {"melanoma": 521, "seborrheic_keratosis": 386, "nevus": 1843}
    assert report["split_kind"] == "official"
    assert report["splits"] == {"train": 2000, "val": 150, "test": 600}
    # training metadata: 256 'unknown' ages, 229 'unknown' sexes; val/test have no metadata file
    assert report["missing"] == {"age_approximate": 256 + 750, "sex": 229 + 750}
    assert report["encoded_widths"] == {"age_approximate": 2, "sex": 3} and report["encoded_width"] == 5


def test_real_read_per_split_classes_and_raw_metadata(real_root):
    table = SOURCE.read(real_root)
    validate_table(table)
    assert table.column_names == CORE_COLUMNS + ["meta_age_approximate", "meta_sex"]
    rows = table.to_pylist()
    for split in SPLITS:
        assert Counter(r["label_name"] for r in rows if r["official_split"] == split) == REAL_COUNTS[split]
    train = [r for r in rows if r["official_split"] == "train"]
    assert Counter(r["meta_sex"] for r in train) == {"male": 900, "female": 871, "unknown": 229}
    assert sum(r["meta_age_approximate"] == "unknown" for r in train) == 256  # kept as written
    assert all(r["meta_sex"] is None for r in rows if r["official_split"] != "train")
    assert all(r["sample_id"] == r["group_id"] for r in rows)
    assert all(r["mask_path"].endswith(f"{r['sample_id']}_segmentation.png") for r in rows)
    assert rows[0]["sample_id"] == _ids(REAL / "ISIC-2017_Training_Part3_GroundTruth.csv")[0]


def test_real_no_group_crosses_splits(real_root):
    table = SOURCE.read(real_root)
    split = make_splits(table, seed=0)
    assert crossing_groups(split) == {}
    assert split.column("split").to_pylist() == table.column("official_split").to_pylist()


def test_real_metadata_encodes_on_train(real_root):
    table = SOURCE.read(real_root)
    encoder = TabularEncoder(select_features(SOURCE, "all"))
    x = encoder.fit_transform(table.slice(0, 2000))
    assert encoder.feature_names == ["age_approximate", "sex"]
    assert x[:, encoder.column_names.index("age_approximate=missing")].sum() == 256
    assert x[:, encoder.column_names.index("sex=missing")].sum() == 229


# ------------------------------------------------------------------ synthetic miniature
def test_miniature_in_the_challenge_layout(synth_root):
    for split in SPLITS:
        raw = labels_csv(synth_root, split).read_bytes()
        assert raw.startswith(b"image_id,melanoma,seborrheic_keratosis\r\n")  # CRLF as published
        meta = (data_dir(synth_root, split) / metadata_name(split)).read_bytes()
        assert meta.startswith(b"image_id,age_approximate,sex\n")
        assert b"unknown" in b"".join((data_dir(synth_root, s) / metadata_name(s)).read_bytes() for s in SPLITS)
        assert len(list(data_dir(synth_root, split).glob("*_superpixels.png"))) > 0
    table = SOURCE.read(synth_root)
    assert Counter(table.column("official_split").to_pylist()) == {"train": 90, "val": 30, "test": 45}
    counts = Counter(table.column("label_name").to_pylist())
    assert min(counts.values()) >= 15 and counts["nevus"] > 2 * counts["melanoma"]  # published imbalance kept
    assert not any("superpixels" in p for p in table.column("image_path").to_pylist())


def test_miniature_metadata_only_pair(synth_root):
    sk, nevus = CLASSES.index("seborrheic_keratosis"), CLASSES.index("nevus")
    assert ((sk, nevus),) == METADATA_ONLY_PAIRS
    assert image_class_of(sk, METADATA_ONLY_PAIRS) == image_class_of(nevus, METADATA_ONLY_PAIRS)
    assert image_class_of(0, METADATA_ONLY_PAIRS) != image_class_of(nevus, METADATA_ONLY_PAIRS)
    rows = SOURCE.read(synth_root).to_pylist()
    ages = {
        c: [int(r["meta_age_approximate"]) for r in rows if r["label_name"] == c]
        for c in ("seborrheic_keratosis", "nevus")
    }
    assert max(ages["nevus"]) < min(ages["seborrheic_keratosis"])


# ------------------------------------------------------------------ optional parts, options
def test_missing_metadata_file_gives_null_metadata(mini):
    (data_dir(mini, "val") / metadata_name("val")).unlink()
    rows = SOURCE.read(mini).to_pylist()
    assert all(
        r["meta_sex"] is None and r["meta_age_approximate"] is None for r in rows if r["official_split"] == "val"
    )
    assert all(r["meta_sex"] is not None for r in rows if r["official_split"] == "train")


def test_metadata_file_in_root_is_found(mini):
    shutil.move(data_dir(mini, "test") / metadata_name("test"), mini / metadata_name("test"))
    rows = SOURCE.read(mini).to_pylist()
    assert all(r["meta_sex"] is not None for r in rows if r["official_split"] == "test")


def test_missing_mask_folder_gives_null_masks_for_that_split(mini, cli):
    shutil.rmtree(mask_dir(mini, "test"))
    table = SOURCE.read(mini)
    masks = dict(zip(table.column("official_split").to_pylist(), table.column("mask_path").to_pylist()))
    assert masks["test"] is None and masks["train"] is not None
    assert table.column("mask_path").null_count == 45
    rc, report = _check(cli, mini)
    assert rc == 0 and report["images_verified"] == 165 + 120


def test_splits_option(mini, cli):
    shutil.rmtree(data_dir(mini, "test"))
    labels_csv(mini, "test").unlink()
    with pytest.raises(DatasetError, match="Test_v2_Part3_GroundTruth.csv not found") as err:
        SOURCE.read(mini)
    assert "splits=" in err.value.hint
    table = SOURCE.read(mini, splits="val,train")
    assert table.column("official_split").to_pylist() == ["train"] * 90 + ["val"] * 30
    assert SOURCE.read(mini, splits=["val"]).num_rows == 30
    rc, report = _check(cli, mini, "--option", "splits=train,val")
    assert rc == 0 and report["splits"] == {"train": 90, "val": 30, "test": 0}
    with pytest.raises(DatasetError, match="unknown split"):
        SOURCE.read(mini, splits="train,validation")


def test_metadata_renamed_column_named_by_check(mini, cli):
    meta = data_dir(mini, "train") / metadata_name("train")
    meta.write_text(meta.read_text().replace("image_id,age_approximate,sex", "image_id,age,sex", 1))
    rc, out, err = cli("check", "--dataset", "isic2017", "--root", mini)
    assert rc == 2 and "Traceback" not in out + err
    assert f"{meta} (row 1): missing column(s) ['age_approximate']" in err
    assert "the header has ['image_id', 'age', 'sex']" in err and "rename the columns back" in err


def test_non_utf8_metadata_named_by_check(mini, cli):
    meta = data_dir(mini, "val") / metadata_name("val")
    meta.write_bytes(meta.read_bytes().replace(b"female", "f\xe9male".encode("cp1252"), 1))
    rc, report = _check(cli, mini)
    assert rc == 2 and report["readable"] is False and len(report["problems"]) == 1
    assert report["problems"][0].startswith(f"{meta}: not UTF-8 text (invalid continuation byte")
    assert "restore the original file" in report["problems"][0]


# ------------------------------------------------------------------ clear errors
def _edit_gt(split: str, edit):
    return lambda root: edit_csv(labels_csv(root, split), edit)


def _set(row: int, column: int, value: str):
    def edit(header, rows):
        rows[row][column] = value
        return header, rows

    return edit


def _both(header, rows):
    rows[3][1] = rows[3][2] = "1.0"
    return header, rows


def _delete_images(root: Path) -> None:
    for p in sorted(data_dir(root, "train").glob("ISIC_???????.jpg"))[:7]:
        p.unlink()


def _delete_mask(root: Path) -> None:
    sorted(mask_dir(root, "val").glob("*.png"))[0].unlink()


def _cross_split_duplicate(root: Path) -> None:
    header, rows = read_csv(labels_csv(root, "train"))
    moved = rows[0][0]
    shutil.copy(data_dir(root, "train") / f"{moved}.jpg", data_dir(root, "val"))
    shutil.copy(mask_dir(root, "train") / f"{moved}_segmentation.png", mask_dir(root, "val"))
    val_header, val_rows = read_csv(labels_csv(root, "val"))
    write_csv(labels_csv(root, "val"), val_header, val_rows + [rows[0]])
    meta = data_dir(root, "val") / metadata_name("val")
    meta.write_text(meta.read_text() + f"{moved},50,male\n")


def _short_metadata(root: Path) -> None:
    meta = data_dir(root, "test") / metadata_name("test")
    lines = meta.read_text().splitlines(keepends=True)
    meta.write_text("".join(lines[:-2]))


BAD_INPUTS = {
    "missing Part3 csv": (
        lambda r: labels_csv(r, "train").unlink(),
        ["ISIC-2017_Training_Part3_GroundTruth.csv not found"],
    ),
    "missing image folder": (
        lambda r: shutil.rmtree(data_dir(r, "val")),
        ["ISIC-2017_Validation_Data", "image folder", "not found"],
    ),
    "missing column": (
        _edit_gt("val", drop_column("seborrheic_keratosis")),
        [
            "ISIC-2017_Validation_Part3_GroundTruth.csv (row 1)",
            "missing column(s) ['seborrheic_keratosis']",
            "'melanoma'",
        ],
    ),
    "unknown label value": (
        _edit_gt("train", _set(4, 1, "0.5")),
        ["ISIC-2017_Training_Part3_GroundTruth.csv (row 6)", "unknown value '0.5'", "'melanoma'"],
    ),
    "both diagnoses": (
        _edit_gt("test", _both),
        ["ISIC-2017_Test_v2_Part3_GroundTruth.csv (row 5)", "both melanoma and seborrheic_keratosis"],
    ),
    "duplicate id": (
        _edit_gt("train", lambda h, rows: (h, rows[:3] + [rows[1]] + rows[3:])),
        ["ISIC-2017_Training_Part3_GroundTruth.csv (row 5)", "duplicate image_id", "also on row 3"],
    ),
    "id in two splits": (_cross_split_duplicate, ["duplicate id", "train split", "again in the val split"]),
    "image absent": (
        _delete_images,
        ["7 of 90 images listed in ISIC-2017_Training_Part3_GroundTruth.csv are not on disk", ", ..."],
    ),
    "mask absent": (_delete_mask, ["ISIC-2017_Validation_Part1_GroundTruth", "1 of 30 images have no mask"]),
    "metadata rows missing": (
        _short_metadata,
        ["ISIC-2017_Test_v2_Data_metadata.csv", "2 of 45 images of the ground truth have no metadata row"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_clear_error_and_check_exit_2(case, mini, cli):
    mutate, expected = BAD_INPUTS[case]
    mutate(mini)
    assert_unreadable(cli, DATASET, mini, expected)


def test_declared_headers_match_real_files():
    real_path("isic2017")
    for split in SPLITS:
        assert tuple(read_csv(REAL / labels_csv(Path("."), split).name)[0]) == LABEL_COLUMNS
    assert tuple(read_csv(REAL / metadata_name("train"))[0]) == METADATA_COLUMNS
