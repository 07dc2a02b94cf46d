"""CBIS-DDSM source: TCIA's CSVs and DICOM tree, the real metadata, the miniature, clear errors.

Measured on the real CSVs (both abnormality types, official training rows): the five default
tabular features encode to 41 columns (density 5, mass shape 9, mass margins 6, calc type 15, calc
distribution 6, each with its missing indicator); the paper's 36-d one-hot is the same 36
categories without compound values and missing indicators.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dermfuse_data.errors import DatasetError
from dermfuse_data.images import load_image
from dermfuse_data.schema import CORE_COLUMNS, validate_table
from dermfuse_data.sources.cbis_ddsm import (
    CALC_COLUMNS,
    CLASSES,
    MASS_COLUMNS,
    META_COLUMNS,
    SOURCE,
    csv_name,
    official_split_overlap,
)
from dermfuse_data.splits import crossing_groups, make_splits
from dermfuse_data.synthetic.cbis_ddsm import IMAGE_SHAPE, write_miniature
from dermfuse_data.synthetic.dicom import dicom_bytes, write_dicom
from dermfuse_data.tabular import TabularEncoder, select_features
from tests.data._support import REAL_METADATA, assert_unreadable, edit_csv, read_csv, real_path, set_cell

DATASET = "cbis_ddsm"
REAL_CBIS = REAL_METADATA / "cbis_ddsm"
REAL_ROWS = {("mass", "train"): 1318, ("mass", "test"): 378, ("calc", "train"): 1546, ("calc", "test"): 326}
REAL_CLASSES = {"BENIGN": 2111, "MALIGNANT": 1457}
REAL_PAIRS = {
    "mass-train & mass-test": 0,
    "mass-train & calc-train": 45,
    "mass-train & calc-test": 13,
    "mass-test & calc-train": 18,
    "mass-test & calc-test": 3,
    "calc-train & calc-test": 0,
}
FILES = [(kind, split) for kind in ("mass", "calc") for split in ("train", "test")]


# ------------------------------------------------------------------ helpers
def edit_case_csv(root: Path, kind: str, split: str, edit) -> Path:
    """Rewrite a case-description CSV as TCIA writes it (CRLF; quoted cells keep their inner newline)."""
    return edit_csv(root / csv_name(kind, split), edit)


def dicom_size(path: str | Path) -> tuple[int, int]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return int(ds.Rows), int(ds.Columns)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def real_cbis_root(tmp_path_factory) -> Path:
    """The four real CSVs (copied into tmp) + tiny stand-in DICOMs for every listed file.

    Mass cases are laid out as the NBIA Data Retriever writes them (``CBIS-DDSM/<case>/<date>-DDSM-
    <n>/<series>/1-1.dcm``, crop and mask as 1-1/1-2 in alternating order); calc cases at the CSV
    paths taken literally, with crop and mask swapped for every third row, as the CSVs swap them.
    Full mammograms and masks are 16x12, crops 4x4.
    """
    real_path("cbis_ddsm")
    root = tmp_path_factory.mktemp("cbis_real")
    full = dicom_bytes(np.full((16, 12), 3000, np.uint16), uid_key=("full",))
    mask = dicom_bytes(np.zeros((16, 12), np.uint8), uid_key=("mask",))
    crop = dicom_bytes(np.full((4, 4), 2000, np.uint16), uid_key=("crop",))
    series = "07-20-2016-DDSM-00001"
    for kind, split in FILES:
        header, rows = read_csv(REAL_CBIS / csv_name(kind, split))
        (root / csv_name(kind, split)).write_bytes((REAL_CBIS / csv_name(kind, split)).read_bytes())
        col = {name: i for i, name in enumerate(header)}
        for i, cells in enumerate(rows):
            image, cropped, roi = (
                cells[col[c]].strip() for c in ("image file path", "cropped image file path", "ROI mask file path")
            )
            if kind == "mass":
                full_dir = root / "CBIS-DDSM" / image.split("/")[0] / series / "1.000000-full mammogram images-00001"
                roi_dir = root / "CBIS-DDSM" / cropped.split("/")[0] / series / "1.000000-ROI mask images-00002"
                files = {
                    full_dir / "1-1.dcm": full,
                    roi_dir / "1-1.dcm": crop if i % 2 else mask,
                    roi_dir / "1-2.dcm": mask if i % 2 else crop,
                }
            else:
                swapped = i % 3 == 0
                files = {
                    root / image: full,
                    root / cropped: mask if swapped else crop,
                    root / roi: crop if swapped else mask,
                }
            for path, data in files.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
    return root


@pytest.fixture(scope="module")
def real_table(real_cbis_root):
    return SOURCE.read(real_cbis_root)


@pytest.fixture(scope="module")
def synth_table(miniature):
    return SOURCE.read(miniature(DATASET))


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    """A smaller miniature (10 patients) to damage in the bad-input tests; do not modify."""
    return write_miniature(tmp_path_factory.mktemp("cbis_small") / "CBIS", 0, n_patients=10)


@pytest.fixture(scope="module")
def small_table(small_root):
    return SOURCE.read(small_root)


@pytest.fixture
def cbis_copy(small_root, tmp_path) -> Path:
    """A private, modifiable copy of the small miniature."""
    return Path(shutil.copytree(small_root, tmp_path / "CBIS"))


def in_copy(path: str, small_root: Path, copy: Path) -> Path:
    """``path`` of the small miniature, moved into its private ``copy``."""
    return copy / Path(path).relative_to(small_root.resolve())


def test_source_declares_classes_features_options():
    assert SOURCE.classes == CLASSES == ("BENIGN", "MALIGNANT") and SOURCE.group == "patient"
    assert SOURCE.has_masks and set(SOURCE.tasks) == {"classification", "segmentation"}
    assert set(SOURCE.options) == {"abnormality", "view"}
    assert "null" in SOURCE.options["view"] and "both" in SOURCE.options["abnormality"]
    kinds = {f.name: (f.kind, f.separator) for f in SOURCE.features}
    assert kinds == {
        "breast_density": ("categorical", "-"),
        "mass_shape": ("multi", "-"),
        "mass_margins": ("multi", "-"),
        "calc_type": ("multi", "-"),
        "calc_distribution": ("multi", "-"),
        "assessment": ("categorical", "-"),
    }
    assessment = SOURCE.feature("assessment")
    assert assessment.leaks_label and "BI-RADS" in assessment.why_leaks
    assert [f.name for f in SOURCE.features if f.leaks_label] == ["assessment"]
    assert all(f.column in META_COLUMNS for f in SOURCE.features)


# ------------------------------------------------------------------ real metadata
def test_real_headers_and_publisher_quirks():
    real_path("cbis_ddsm")
    for kind, split in FILES:
        data = (REAL_CBIS / csv_name(kind, split)).read_bytes()
        header, rows = read_csv(REAL_CBIS / csv_name(kind, split))
        assert tuple(header) == (MASS_COLUMNS if kind == "mass" else CALC_COLUMNS)
        assert len(rows) == REAL_ROWS[(kind, split)]
        assert data.split(b"\n", 1)[0].endswith(b"\r") and b'.dcm\n"' in data  # CRLF, quoted LF


def test_check_real_metadata_json(real_cbis_root, cli):
    rc, out, err = cli("check", "--dataset", "cbis_ddsm", "--root", real_cbis_root, "--json", "--no-verify-images")
    report = json.loads(out)
    assert rc == 0, report["problems"]
    assert report["rows"] == 3568 and report["groups"] == 1566
    assert report["classes"] == REAL_CLASSES and report["problems"] == []
    assert report["split_kind"] == "official"
    assert report["splits"] == {"train": 2864, "val": 0, "test": 704}
    assert any(w.startswith("31 groups appear in more than one official split") for w in report["warnings"]), report[
        "warnings"
    ]
    assert report["missing"]["mass_margins"] == 1872 + 60  # calc rows (null) + written NA
    assert report["missing"]["breast_density"] == 2 and "Traceback" not in err  # density 0
    # the mammography paper's 36-d clinical vector, plus one missing indicator per feature
    assert report["encoded_widths"] == {
        "breast_density": 5,
        "mass_shape": 9,
        "mass_margins": 6,
        "calc_type": 15,
        "calc_distribution": 6,
    }
    assert report["encoded_width"] == sum(report["encoded_widths"].values()) == 36 + 5


#: per abnormality type: rows per official split, classes, patients (README; classes and patients
#: counted from the four CSVs: pathology MALIGNANT vs the rest, distinct patient_id)
REAL_PER_TYPE = {
    "mass": ({"train": 1318, "val": 0, "test": 378}, {"BENIGN": 912, "MALIGNANT": 784}, 892),
    "calc": ({"train": 1546, "val": 0, "test": 326}, {"BENIGN": 1199, "MALIGNANT": 673}, 753),
}
REAL_WIDTHS_PER_TYPE = {
    "mass": {"breast_density": 5, "mass_shape": 9, "mass_margins": 6, "calc_type": 1, "calc_distribution": 1},
    "calc": {"breast_density": 5, "mass_shape": 1, "mass_margins": 1, "calc_type": 15, "calc_distribution": 6},
}


@pytest.mark.parametrize("kind", ["mass", "calc"])
def test_check_real_metadata_json_per_abnormality_type(real_cbis_root, cli, kind):
    rc, out, err = cli(
        "check",
        "--dataset",
        "cbis_ddsm",
        "--root",
        real_cbis_root,
        "--json",
        "--no-verify-images",
        "--option",
        f"abnormality={kind}",
    )
    report = json.loads(out)
    assert rc == 0 and report["problems"] == [] and "Traceback" not in err, report["problems"]
    splits, classes, patients = REAL_PER_TYPE[kind]
    assert report["splits"] == splits and report["split_kind"] == "official"
    assert report["rows"] == sum(splits.values()) and report["classes"] == classes
    assert report["groups"] == patients and report["group_unit"] == "patient"
    # no patient is in both official splits of one abnormality type (they cross only between types)
    assert report["warnings"] == ["image decoding not verified (--no-verify-images)"]
    rows = [r for split in ("train", "test") for r in read_csv(REAL_CBIS / csv_name(kind, split))[1]]
    header = read_csv(REAL_CBIS / csv_name(kind, "train"))[0]
    assert len({r[header.index("patient_id")] for r in rows}) == patients
    assert Counter(r[header.index("pathology")] == "MALIGNANT" for r in rows)[True] == classes["MALIGNANT"]
    # the other type's descriptors are all null: a lone missing column each
    widths = REAL_WIDTHS_PER_TYPE[kind]
    assert report["encoded_widths"] == widths and report["encoded_width"] == sum(widths.values())


def test_real_counts_per_file_and_abnormality_type(real_cbis_root, real_table):
    validate_table(real_table)
    assert real_table.column_names == CORE_COLUMNS + ["meta_" + c for c in META_COLUMNS]
    pairs = Counter(
        zip(real_table.column("meta_abnormality_type").to_pylist(), real_table.column("official_split").to_pylist())
    )
    assert pairs == {
        ("mass", "train"): 1318,
        ("mass", "test"): 378,
        ("calcification", "train"): 1546,
        ("calcification", "test"): 326,
    }
    for kind in ("mass", "calc"):
        table = SOURCE.read(real_cbis_root, abnormality=kind)
        assert Counter(table.column("official_split").to_pylist()) == {
            "train": REAL_ROWS[(kind, "train")],
            "test": REAL_ROWS[(kind, "test")],
        }
    pathology = Counter(
        zip(real_table.column("meta_pathology").to_pylist(), real_table.column("label_name").to_pylist())
    )
    assert pathology == {
        ("MALIGNANT", "MALIGNANT"): 1457,
        ("BENIGN", "BENIGN"): 1429,
        ("BENIGN_WITHOUT_CALLBACK", "BENIGN"): 682,
    }


def test_real_raw_values_unified_and_kept(real_table):
    rows = real_table.to_pylist()
    assert real_table.column("meta_breast_density").null_count == 0  # both spellings unified
    assert Counter(r["meta_breast_density"] for r in rows)["0"] == 2  # kept raw, missing to encoder
    assert Counter(r["meta_mass_margins"] for r in rows)["NA"] == 60  # NA kept as written
    assert not any(
        r["meta_roi_mask_file_path"].endswith("\n") or r["meta_cropped_image_file_path"].endswith("\n") for r in rows
    )
    first = rows[0]
    assert first["sample_id"] == "Mass-Training_P_00001_LEFT_CC_1" and first["group_id"] == "P_00001"
    assert first["meta_mass_shape"] == "IRREGULAR-ARCHITECTURAL_DISTORTION"
    assert len({r["sample_id"] for r in rows}) == len(rows)


def test_real_crop_and_mask_told_apart_by_size(real_cbis_root, real_table):
    """Whatever the file numbers say (1-1/1-2 alternate, calc CSV paths swapped), sizes decide."""
    roi = SOURCE.read(real_cbis_root, view="roi")
    assert roi.column("mask_path").null_count == roi.num_rows
    picks = range(0, real_table.num_rows, 89)
    for i in picks:
        assert dicom_size(real_table.column("image_path")[i].as_py()) == (16, 12)
        assert dicom_size(real_table.column("mask_path")[i].as_py()) == (16, 12)
        assert dicom_size(roi.column("image_path")[i].as_py()) == (4, 4)
    names = Counter(Path(p).name for p in real_table.column("mask_path").to_pylist()[:1696])
    assert names["1-1.dcm"] > 800 and names["1-2.dcm"] > 800  # mass: TCIA tree


def test_real_official_split_overlap(real_table):
    overlap = official_split_overlap(real_table)
    assert overlap["pairs"] == REAL_PAIRS
    assert overlap["patients"] == {"mass-train": 691, "mass-test": 201, "calc-train": 602, "calc-test": 151}
    assert len(overlap["crossing"]) == 31 and "P_00001" not in overlap["crossing"]
    mass_only = official_split_overlap(real_table.slice(0, 1696))  # mass rows come first
    assert mass_only["crossing"] == [] and mass_only["pairs"] == {"mass-train & mass-test": 0}


def test_real_grouped_resplit_has_no_crossing_patient(real_table):
    official = make_splits(real_table, seed=0)
    assert len(crossing_groups(official)) == 31
    regrouped = make_splits(real_table, seed=0, use_official=False)
    assert crossing_groups(regrouped) == {}
    counts = Counter(regrouped.column("split").to_pylist())
    assert min(counts.values()) > 400 and sum(counts.values()) == 3568


def test_real_default_features_width_and_leak_refused(real_table):
    train = real_table.filter(np.asarray(real_table.column("official_split").to_pylist()) == "train")
    encoder = TabularEncoder(select_features(SOURCE, "all")).fit(train)
    assert encoder.feature_names == ["breast_density", "mass_shape", "mass_margins", "calc_type", "calc_distribution"]
    assert encoder.group_widths == [5, 9, 6, 15, 6] and encoder.width == 41  # paper: 36 + 5 missing
    assert "mass_shape=ARCHITECTURAL_DISTORTION" in encoder.column_names  # split on "-" only
    assert "calc_type=ROUND_AND_REGULAR" in encoder.column_names  # "_" never split
    matrix = encoder.transform(real_table)
    density0 = np.asarray(real_table.column("meta_breast_density").to_pylist()) == "0"
    assert matrix[density0, 4].tolist() == [1.0, 1.0]  # density 0 = missing
    with pytest.raises(DatasetError, match="leaks the label"):
        select_features(SOURCE, ["assessment"])
    assert select_features(SOURCE, ["assessment"], allow_leaky=True)[0].name == "assessment"


# ------------------------------------------------------------------ synthetic miniature
def test_miniature_layout_and_round_trip(synth_root, synth_table):
    assert len(list(synth_root.rglob("*.dcm"))) > 20
    for kind, split in FILES:
        data = (synth_root / csv_name(kind, split)).read_bytes()
        assert read_csv(synth_root / csv_name(kind, split))[0] == list(MASS_COLUMNS if kind == "mass" else CALC_COLUMNS)
        quoted_newline = b'.dcm\n"\r\n' if kind == "mass" else b'.dcm\n",'  # mask / crop column
        assert data.split(b"\n", 1)[0].endswith(b"\r") and quoted_newline in data
    validate_table(synth_table)
    assert 60 <= synth_table.num_rows <= 200
    rows = synth_table.to_pylist()
    assert Counter(r["label_name"] for r in rows).keys() == {"BENIGN", "MALIGNANT"}
    assert {r["meta_pathology"] for r in rows} == {"MALIGNANT", "BENIGN", "BENIGN_WITHOUT_CALLBACK"}
    assert {(r["meta_abnormality_type"], r["official_split"]) for r in rows} == {
        ("mass", "train"),
        ("mass", "test"),
        ("calcification", "train"),
        ("calcification", "test"),
    }
    overlap = official_split_overlap(synth_table)
    assert overlap["pairs"]["mass-train & calc-train"] >= 1 and len(overlap["crossing"]) >= 2
    assert any(r["meta_abnormality_id"] == "2" for r in rows)  # two findings, one image
    full = pydicom.dcmread(rows[0]["image_path"])
    assert (full.Rows, full.Columns) == IMAGE_SHAPE and full.BitsStored == 16
    assert full.PhotometricInterpretation == "MONOCHROME2" and full.pixel_array.max() > 255
    mask = pydicom.dcmread(rows[0]["mask_path"])
    assert (mask.Rows, mask.Columns) == IMAGE_SHAPE and mask.BitsAllocated == 8
    assert set(np.unique(mask.pixel_array)) == {0, 255}
    assert "CBIS-DDSM" in Path(rows[0]["image_path"]).parts
    assert Path(rows[0]["image_path"]).parts[-2].startswith("1.000000-full mammogram images-")


def test_miniature_swaps_file_numbers_like_the_real_data(synth_root):
    """The crop is sometimes 1-1.dcm, sometimes 1-2.dcm; the CSV numbering does not say which."""
    roi_rows = SOURCE.read(synth_root, view="roi").to_pylist()
    crop_names = Counter(Path(r["image_path"]).name for r in roi_rows)
    assert crop_names["1-1.dcm"] > 5 and crop_names["1-2.dcm"] > 5
    assert any("cropped images" in r["image_path"] for r in roi_rows)  # two-series cases too
    for r in roi_rows:
        assert dicom_size(r["image_path"])[0] < IMAGE_SHAPE[0] / 2
    mass = [r for r in roi_rows if r["meta_abnormality_type"] == "mass"]
    listed = Counter(r["meta_cropped_image_file_path"][-10:] for r in mass)
    assert listed["000000.dcm"] and listed["000001.dcm"]


def test_miniature_class_learnable_from_the_crop(synth_root):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score

    rows = [
        r for r in SOURCE.read(synth_root, view="roi").to_pylist() if r["meta_mass_shape"] != "LOBULATED"
    ]  # image-learnable rows
    x = np.stack([load_image(r["image_path"], (24, 24))[0][..., 0].ravel() / 255.0 for r in rows])
    y = np.array([r["label"] for r in rows])
    scores = cross_val_score(
        LogisticRegression(max_iter=3000), x, y, cv=GroupKFold(4), groups=[r["group_id"] for r in rows]
    )
    chance = max(np.bincount(y)) / len(y)
    assert scores.mean() > max(0.75, chance + 0.15), (scores, chance)


def test_miniature_metadata_only_rule(synth_table):
    """Lobulated masses look alike in both classes; the margins tell them apart."""
    lobulated = [r for r in synth_table.to_pylist() if r["meta_mass_shape"] == "LOBULATED"]
    assert len(lobulated) >= 6
    assert {(r["meta_mass_margins"], r["label_name"]) for r in lobulated} == {
        ("ILL_DEFINED", "MALIGNANT"),
        ("OBSCURED", "BENIGN"),
    }


def test_miniature_masks_cover_the_lesion(synth_table):
    for r in synth_table.to_pylist()[:12]:
        image, size = load_image(r["image_path"])
        mask, _ = load_image(r["mask_path"], mask=True, expect_size=size)
        assert image.dtype == np.uint8 and size == (IMAGE_SHAPE[1], IMAGE_SHAPE[0])
        assert 0 < mask.sum() < mask.size / 10
        if r["meta_abnormality_type"] == "mass":
            assert image[mask > 0].mean() > image[mask == 0].mean() + 20


def test_check_warns_of_the_official_split_crossing(synth_root, synth_table, cli):
    rc, out, err = cli("check", "--dataset", "cbis_ddsm", "--root", synth_root, "--json", "--no-verify-images")
    report = json.loads(out)
    assert rc == 0 and report["problems"] == [], report["problems"]
    crossing = len(official_split_overlap(synth_table)["crossing"])
    assert f"{crossing} groups appear in more than one official split" in " ".join(report["warnings"])
    rc, out, _ = cli(
        "check",
        "--dataset",
        "cbis_ddsm",
        "--root",
        synth_root,
        "--json",
        "--option",
        "abnormality=calc",
        "--option",
        "view=roi",
    )
    report = json.loads(out)
    assert rc == 0 and report["images_verified"] == report["rows"] < synth_table.num_rows


def test_csv_paths_taken_literally_are_accepted(synth_root, synth_table, tmp_path):
    """Images at ``<root>/<CSV path>`` (older download), crop and mask content swapped."""
    literal = tmp_path / "literal"
    literal.mkdir()
    for kind, split in FILES:
        shutil.copy(synth_root / csv_name(kind, split), literal)
    for r in synth_table.to_pylist():
        (literal / r["meta_image_file_path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(r["image_path"], literal / r["meta_image_file_path"])
    for r in SOURCE.read(synth_root, view="roi").to_pylist():
        mask = synth_table.column("mask_path")[
            synth_table.column("sample_id").to_pylist().index(r["sample_id"])
        ].as_py()
        for listed, actual in (
            (r["meta_cropped_image_file_path"], mask),  # swapped on purpose
            (r["meta_roi_mask_file_path"], r["image_path"]),
        ):
            (literal / listed).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(actual, literal / listed)
    table = SOURCE.read(literal)
    assert table.column("sample_id").to_pylist() == synth_table.column("sample_id").to_pylist()
    assert all(dicom_size(p) == IMAGE_SHAPE for p in table.column("mask_path").to_pylist())
    assert all(str(literal) in p and "CBIS-DDSM" not in p for p in table.column("image_path").to_pylist())
    crops = SOURCE.read(literal, view="roi").column("image_path").to_pylist()
    assert all(dicom_size(p)[0] < IMAGE_SHAPE[0] / 2 for p in crops)


@pytest.mark.slow  # imports pytorch_lightning (~10-25 s on a busy 2-core CPU)
def test_datamodule_grouped_resplit_and_official_warning(synth_root, synth_table, tmp_path):
    from dermfuse_data.datamodule import DermDataModule

    crossing = len(official_split_overlap(synth_table)["crossing"])
    dm = DermDataModule("cbis_ddsm", root=str(synth_root), cache_dir=str(tmp_path), use_official_split=False)
    assert crossing_groups(dm.table) == {} and set(dm.table.column("split").to_pylist()) == {"train", "val", "test"}
    assert dm.meta_names == ["breast_density", "mass_shape", "mass_margins", "calc_type", "calc_distribution"]
    with pytest.warns(UserWarning, match=f"puts {crossing} groups in more than one split"):
        official = DermDataModule(
            "cbis_ddsm",
            root=str(synth_root),
            cache_dir=str(tmp_path / "o"),
            source_options={"abnormality": "both", "view": "full"},
        ).table
    assert len(crossing_groups(official)) == crossing


# ------------------------------------------------------------------ 16-bit DICOM decoding
def _phantom() -> tuple[np.ndarray, np.ndarray]:
    """A 16-bit 'mammogram' (values up to ~40000) with a small bright mass, and the mass mask."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:48]
    mass = np.hypot(yy - 30, xx - 20) < 5
    pixels = 12000 + rng.normal(0, 800, (64, 48)) + 25000 * mass
    return np.clip(pixels, 0, 65535).astype(np.uint16), mass


def test_16bit_dicom_decodes_to_uint8_with_mass_brighter(tmp_path):
    pixels, mass = _phantom()
    path = write_dicom(tmp_path / "m2.dcm", pixels, uid_key=("m2",))
    image, size = load_image(path)
    assert image.dtype == np.uint8 and image.shape == (64, 48, 3) and size == (48, 64)
    gray = image[..., 0].astype(float)
    assert gray[mass].mean() > 200 and gray[~mass].mean() < 120  # windowed, not truncated
    assert gray.max() == 255 and gray.min() == 0


def test_monochrome1_is_inverted_and_modality_lut_applied(tmp_path):
    pixels, mass = _phantom()
    reference = load_image(write_dicom(tmp_path / "m2.dcm", pixels, uid_key=("m2",)))[0]
    inverted = (65535 - pixels.astype(np.int64)).astype(np.uint16)
    mono1 = load_image(write_dicom(tmp_path / "m1.dcm", inverted, uid_key=("m1",), photometric="MONOCHROME1"))[0]
    assert mono1[..., 0][mass].mean() > mono1[..., 0][~mass].mean() + 100  # mass still bright
    assert np.abs(mono1.astype(int) - reference.astype(int)).max() <= 2
    stored = ((pixels.astype(np.int64) + 1000) // 2).astype(np.uint16)  # value = 2*stored-2000
    rescaled = load_image(write_dicom(tmp_path / "lut.dcm", stored, uid_key=("lut",), rescale=(2.0, -2000.0)))[0]
    assert np.abs(rescaled.astype(int) - reference.astype(int)).max() <= 2


# ------------------------------------------------------------------ clear errors
def _roi_files(root: Path, sample_id: str) -> list[Path]:
    return sorted((root / "CBIS-DDSM" / sample_id).rglob("*.dcm"))


_unknown_pathology = set_cell(2, "pathology", "MALIGANT")


def _rename_pathology(header, rows):
    return [("diagnosis" if c == "pathology" else c) for c in header], rows


def test_missing_csv_names_file_and_suggests_option(cbis_copy):
    (cbis_copy / csv_name("calc", "test")).unlink()
    with pytest.raises(DatasetError) as err:
        SOURCE.read(cbis_copy)
    msg = str(err.value)
    assert str(cbis_copy / "calc_case_description_test_set.csv") in msg and "not found" in msg
    assert "mass_case_description_train_set.csv" in msg and "abnormality=mass" in err.value.hint
    assert SOURCE.read(cbis_copy, abnormality="mass").num_rows > 0


def test_renamed_column_lists_missing_and_present(cbis_copy):
    path = edit_case_csv(cbis_copy, "mass", "train", _rename_pathology)
    with pytest.raises(DatasetError) as err:
        SOURCE.read(cbis_copy)
    msg = str(err.value)
    assert f"{path} (row 1)" in msg and "missing column(s) ['pathology']" in msg
    assert "'diagnosis'" in msg and "rename" in err.value.hint


def test_either_density_spelling_is_accepted(cbis_copy, small_table):
    def respell(header, rows):
        return [header[0], "breast_density"] + header[2:], rows

    edit_case_csv(cbis_copy, "calc", "train", respell)
    table = SOURCE.read(cbis_copy)
    assert table.column("meta_breast_density").to_pylist() == small_table.column("meta_breast_density").to_pylist()


def test_unknown_pathology_names_row_and_value(cbis_copy):
    path = edit_case_csv(cbis_copy, "calc", "test", _unknown_pathology)
    with pytest.raises(DatasetError) as err:
        SOURCE.read(cbis_copy)
    msg = str(err.value)
    assert f"{path} (row 4)" in msg and "unknown pathology 'MALIGANT'" in msg
    assert "BENIGN_WITHOUT_CALLBACK" in err.value.hint and err.value.row == 4


def test_duplicate_abnormality_names_both_rows(cbis_copy):
    path = edit_case_csv(cbis_copy, "mass", "train", lambda header, rows: (header, rows + [rows[1]]))
    with pytest.raises(DatasetError) as err:
        SOURCE.read(cbis_copy)
    msg = str(err.value)
    assert "duplicate abnormality" in msg and "(also on row 3)" in msg and str(path) in msg
    assert "once" in err.value.hint


def test_duplicate_across_files_names_the_other_file(cbis_copy):
    _, train = read_csv(cbis_copy / csv_name("mass", "train"))
    edit_case_csv(cbis_copy, "mass", "test", lambda header, rows: (header, rows + [train[0]]))
    with pytest.raises(DatasetError, match="also on row 2 of mass_case_description_train_set.csv"):
        SOURCE.read(cbis_copy)


def test_missing_full_mammogram_counted_with_ids(cbis_copy, small_root, small_table):
    gone = small_table.column("image_path")[0].as_py()
    in_copy(gone, small_root, cbis_copy).unlink()
    sharing = small_table.column("image_path").to_pylist().count(gone)
    with pytest.raises(DatasetError) as err:
        SOURCE.read(cbis_copy)
    msg = str(err.value)
    assert f"{sharing} of {small_table.num_rows} full mammograms" in msg and "not on disk" in msg
    assert small_table.column("sample_id")[0].as_py() in msg and "resume" in err.value.hint


def test_missing_mask_then_missing_crop(cbis_copy, small_table):
    sample = small_table.column("sample_id")[0].as_py()
    crop, mask = sorted(_roi_files(cbis_copy, sample), key=lambda p: dicom_size(p)[0])
    mask.unlink()
    with pytest.raises(DatasetError, match=f"1 of {small_table.num_rows} ROI masks .*{sample}"):
        SOURCE.read(cbis_copy)
    assert SOURCE.read(cbis_copy, view="roi").num_rows == small_table.num_rows  # crop still there
    crop.unlink()
    with pytest.raises(DatasetError, match=f"1 of {small_table.num_rows} cropped ROI images"):
        SOURCE.read(cbis_copy, view="roi")


def test_no_image_tree(cbis_copy):
    shutil.rmtree(cbis_copy / "CBIS-DDSM")
    with pytest.raises(DatasetError, match="no image folders") as err:
        SOURCE.read(cbis_copy)
    assert "NBIA" in err.value.hint


def test_unreadable_dicom_header_named(cbis_copy, small_table):
    sample = small_table.column("sample_id")[3].as_py()
    broken = _roi_files(cbis_copy, sample)[0]
    broken.write_bytes(b"not a DICOM file at all")
    with pytest.raises(DatasetError, match="1 DICOM header") as err:
        SOURCE.read(cbis_copy)
    assert str(broken) in str(err.value) and "re-download" in err.value.hint


def test_crop_and_mask_of_equal_size_is_an_error(cbis_copy, small_table):
    sample = small_table.column("sample_id")[0].as_py()
    a, b = _roi_files(cbis_copy, sample)
    b.write_bytes(a.read_bytes())
    with pytest.raises(DatasetError, match=f"cannot tell the cropped image from the ROI mask of {sample}"):
        SOURCE.read(cbis_copy)


def test_bad_option_value(cbis_copy):
    with pytest.raises(DatasetError, match=r"option abnormality='masses' is not one of"):
        SOURCE.read(cbis_copy, abnormality="masses")
    assert SOURCE.read(cbis_copy, abnormality="calcification").num_rows > 0


BAD_INPUTS = {
    "missing CSV": (
        lambda root: (root / csv_name("mass", "test")).unlink(),
        ["mass_case_description_test_set.csv not found"],
    ),
    "renamed column": (
        lambda root: edit_case_csv(root, "mass", "train", _rename_pathology),
        ["(row 1)", "missing column(s) ['pathology']"],
    ),
    "unknown pathology": (
        lambda root: edit_case_csv(root, "calc", "test", _unknown_pathology),
        ["(row 4)", "unknown pathology 'MALIGANT'"],
    ),
    "duplicate": (
        lambda root: edit_case_csv(root, "calc", "train", lambda h, r: (h, r + [r[0]])),
        ["duplicate abnormality", "(also on row 2)"],
    ),
    "missing DICOM": (lambda root: shutil.rmtree(next((root / "CBIS-DDSM").glob("Calc-Test_*"))), ["not on disk"]),
    "bad option": (None, ["option view='crop' is not one of"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_unreadable_dataset_exits_2_with_clear_message(case, cbis_copy, cli):
    damage, expected = BAD_INPUTS[case]
    if damage is not None:
        damage(cbis_copy)
    assert_unreadable(cli, DATASET, cbis_copy, expected, options=["view=crop"] if damage is None else [])
