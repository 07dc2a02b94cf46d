"""ISIC 2019 source: the two real CSVs, the HAM10000 subset, the miniature and clear errors."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from dermfuse_data.check import encoding_widths
from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import CORE_COLUMNS, validate_table
from dermfuse_data.sources.isic2019 import (
    CLASSES,
    GROUND_TRUTH_COLUMNS,
    GROUND_TRUTH_FILE,
    IMAGE_FOLDER,
    METADATA_COLUMNS,
    METADATA_FILE,
    SOURCE,
    in_ham10000,
)
from dermfuse_data.splits import crossing_groups, make_splits
from dermfuse_data.synthetic.isic2019 import METADATA_ONLY_PAIRS, write_miniature
from dermfuse_data.synthetic.lesions import image_class_of
from dermfuse_data.tabular import select_features
from tests.data._support import (
    REAL_METADATA,
    assert_unreadable,
    drop_column,
    edit_csv,
    read_csv,
    real_path,
    set_cell,
    tiny_image,
    write_csv,
)

DATASET = "isic2019"
REAL_DIR = REAL_METADATA / "isic2019"
REAL_HAM_CSV = REAL_METADATA / "ham10000" / "HAM10000_metadata.csv"
REAL_COUNTS = {
    "MEL": 4522,
    "NV": 12875,
    "BCC": 3323,
    "AK": 867,
    "BKL": 2624,
    "DF": 239,
    "VASC": 253,
    "SCC": 628,
    "UNK": 0,
}
#: the HAM10000 subset of ISIC 2019 is all of HAM10000: 10015 images (ISIC_0024306..ISIC_0034320)
HAM_SUBSET = 10015


@pytest.fixture(scope="module")
def real_root(tmp_path_factory) -> Path:
    """The two real CSVs (copied byte for byte) + a stand-in JPEG for each of the 25331 ids."""
    real_path("isic2019", GROUND_TRUTH_FILE)
    root = tmp_path_factory.mktemp("isic2019_real")
    for name in (GROUND_TRUTH_FILE, METADATA_FILE):
        (root / name).write_bytes((REAL_DIR / name).read_bytes())
    (root / IMAGE_FOLDER).mkdir()
    stand_in = root / "stand_in.jpg"
    stand_in.write_bytes(tiny_image("JPEG"))
    for row in read_csv(REAL_DIR / GROUND_TRUTH_FILE)[1]:
        os.link(stand_in, root / IMAGE_FOLDER / f"{row[0]}.jpg")  # hard links: fast
    return root


@pytest.fixture(scope="module")
def real_table(real_root):
    return SOURCE.read(real_root)


def test_source_declares_classes_features_and_option():
    assert SOURCE.classes == ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
    assert GROUND_TRUTH_COLUMNS == ("image",) + CLASSES
    assert SOURCE.group == "lesion" and not SOURCE.has_masks
    assert {f.name: f.kind for f in SOURCE.features} == {
        "age_approx": "numeric",
        "anatom_site_general": "categorical",
        "sex": "categorical",
    }
    assert not any(f.leaks_label for f in SOURCE.features)
    assert "in_ham10000" not in [f.column for f in select_features(SOURCE, "all", allow_leaky=True)]
    assert list(SOURCE.options) == ["exclude_ham10000"] and "true" in SOURCE.options["exclude_ham10000"]


def test_ham10000_id_range():
    assert in_ham10000("ISIC_0024306") and in_ham10000("ISIC_0034320")
    assert in_ham10000("ISIC_0030000_downsampled")
    assert not in_ham10000("ISIC_0024305") and not in_ham10000("ISIC_0034321")
    assert not in_ham10000("ISIC_0000017_downsampled") and not in_ham10000("BCN_0024306")


# ------------------------------------------------------------------ real metadata
def test_real_metadata_read(real_table):
    table = real_table
    validate_table(table)
    assert table.num_rows == 25331
    counts = Counter(table.column("label_name").to_pylist())
    assert {c: counts.get(c, 0) for c in CLASSES} == REAL_COUNTS
    assert table.column_names == CORE_COLUMNS + [
        "meta_age_approx",
        "meta_anatom_site_general",
        "meta_lesion_id",
        "meta_sex",
        "meta_in_ham10000",
    ]
    nulls = {c: table.column("meta_" + c).null_count for c in ("age_approx", "anatom_site_general", "lesion_id", "sex")}
    assert nulls == {"age_approx": 437, "anatom_site_general": 2631, "lesion_id": 2084, "sex": 384}
    ids = table.column("sample_id").to_pylist()
    downsampled = [i for i in ids if i.endswith("_downsampled")]
    assert len(downsampled) == 2074
    paths = dict(zip(ids, table.column("image_path").to_pylist()))
    assert Path(paths[downsampled[0]]).name == f"{downsampled[0]}.jpg"
    # group: lesion_id, else the image itself (11847 lesions + 2084 single images)
    groups = table.column("group_id").to_pylist()
    assert len(set(groups)) == 13931
    lesion = table.column("meta_lesion_id").to_pylist()
    assert all(g == (les or i) for g, les, i in zip(groups, lesion, ids))
    assert set(table.column("official_split").to_pylist()) == {None}


def test_real_ham10000_subset_is_all_of_ham10000(real_table):
    """ISIC_0024306..ISIC_0034320 are the 10015 HAM10000 images, with HAM10000's own lesion_ids;
    HAM10000's akiec (327) is split there into AK (130) and SCC (197, Bowen's disease)."""
    rows = real_table.select(["sample_id", "label_name", "meta_lesion_id", "meta_in_ham10000"]).to_pylist()
    flagged = [r for r in rows if r["meta_in_ham10000"] == "true"]
    assert len(flagged) == HAM_SUBSET and {r["meta_in_ham10000"] for r in rows} == {"true", "false"}
    assert not any(r["sample_id"].endswith("_downsampled") for r in flagged)
    assert Counter(r["label_name"] for r in flagged) == {
        "NV": 6705,
        "MEL": 1113,
        "BKL": 1099,
        "BCC": 514,
        "SCC": 197,
        "VASC": 142,
        "AK": 130,
        "DF": 115,
    }
    if REAL_HAM_CSV.is_file():
        _, ham_rows = read_csv(REAL_HAM_CSV)
        ham = {r[1]: (r[0], r[2]) for r in ham_rows}
        assert {r["sample_id"]: r["meta_lesion_id"] for r in flagged} == {k: v[0] for k, v in ham.items()}
        pairs = Counter((ham[r["sample_id"]][1], r["label_name"]) for r in flagged)
        assert pairs[("akiec", "AK")] == 130 and pairs[("akiec", "SCC")] == 197
        assert all(a.upper() == b for (a, b), _ in pairs.items() if a != "akiec")


def test_real_exclude_ham10000(real_root, real_table):
    table = SOURCE.read(real_root, exclude_ham10000="true")
    assert table.num_rows == 25331 - HAM_SUBSET == 15316
    assert set(table.column("meta_in_ham10000").to_pylist()) == {"false"}
    assert not any(g.startswith("HAM_") for g in table.column("group_id").to_pylist())


def test_real_metadata_gender_column_gives_identical_meta(real_root, real_table, tmp_path):
    header, rows = read_csv(REAL_DIR / METADATA_FILE)
    assert header == list(METADATA_COLUMNS)
    write_csv(tmp_path / METADATA_FILE, [("gender" if c == "sex" else c) for c in header], rows)
    shutil.copy(real_root / GROUND_TRUTH_FILE, tmp_path / GROUND_TRUTH_FILE)
    os.symlink(real_root / IMAGE_FOLDER, tmp_path / IMAGE_FOLDER)
    table = SOURCE.read(tmp_path)
    assert table.column_names == real_table.column_names
    for name in table.column_names:
        if name != "image_path":
            assert table.column(name).to_pylist() == real_table.column(name).to_pylist(), name


@pytest.mark.slow  # ~30-60 s: check's default grouped split runs StratifiedGroupKFold twice on 13931 groups
def test_check_json_on_real_metadata(real_root, cli):
    rc, out, _ = cli("check", "--dataset", "isic2019", "--root", real_root, "--json", "--no-verify-images")
    report = json.loads(out)
    assert rc == 0, report["problems"]
    assert report["rows"] == 25331 and report["groups"] == 13931 and report["group_unit"] == "lesion"
    assert report["classes"] == REAL_COUNTS
    assert report["missing"] == {
        "age_approx": 437,
        "anatom_site_general": 2631,
        "lesion_id": 2084,
        "sex": 384,
        "in_ham10000": 0,
    }
    # no "groups appear in more than one split" warning: only the empty UNK class is reported
    assert report["warnings"] == [
        "classes without samples: ['UNK']",
        "image decoding not verified (--no-verify-images)",
    ]
    assert sum(report["splits"].values()) == 25331
    assert report["encoded_widths"] == {"age_approx": 2, "anatom_site_general": 9, "sex": 3}
    assert report["encoded_width"] == 14


def test_real_encoded_width(real_table):
    """The width ``check`` reports, fitted on the default split's training rows (no leaking column)."""
    widths = encoding_widths(real_table, SOURCE)
    assert widths == {"age_approx": 2, "anatom_site_general": 9, "sex": 3} and sum(widths.values()) == 14


@pytest.mark.slow  # ~30-60 s, as above
def test_real_grouped_split_keeps_lesions_together(real_table):
    split = make_splits(real_table, seed=3)
    assert crossing_groups(split) == {}
    per_lesion = Counter(real_table.column("group_id").to_pylist())
    assert sum(n > 1 for n in per_lesion.values()) > 5000


# ------------------------------------------------------------------ synthetic miniature
def test_miniature_in_the_publishers_layout(synth_root):
    truth = (synth_root / GROUND_TRUTH_FILE).read_bytes()
    assert truth.startswith(b"image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK\r\n")
    assert b",1.0," in truth and b",0.0\r\n" in truth
    assert (
        (synth_root / METADATA_FILE).read_bytes().startswith(b"image,age_approx,anatom_site_general,lesion_id,sex\r\n")
    )
    _, rows = read_csv(synth_root / GROUND_TRUTH_FILE)
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    table = SOURCE.read(synth_root)
    assert table.num_rows == len(rows) == 160
    counts = Counter(table.column("label_name").to_pylist())
    assert min(counts.values()) >= 8
    assert counts["NV"] > 2 * counts["MEL"]
    ids = table.column("sample_id").to_pylist()
    assert sum(i.endswith("_downsampled") for i in ids) >= 5
    assert {Path(p).parent.name for p in table.column("image_path").to_pylist()} == {IMAGE_FOLDER}
    assert all(Path(p).name == f"{i}.jpg" for i, p in zip(ids, table.column("image_path").to_pylist()))
    lesions = table.column("meta_lesion_id").to_pylist()
    assert lesions.count(None) >= 5
    groups = Counter(table.column("group_id").to_pylist())
    assert max(groups.values()) >= 3 and len(groups) < 0.8 * len(ids)
    assert {g[:4] for g in groups} == {"HAM_", "BCN_", "ISIC"}
    flags = table.column("meta_in_ham10000").to_pylist()
    assert flags == ["true" if in_ham10000(i) else "false" for i in ids] and "true" in flags


def test_miniature_exclude_ham10000_from_the_command_line(synth_root, cli):
    n_ham = sum(in_ham10000(r[0]) for r in read_csv(synth_root / GROUND_TRUTH_FILE)[1])
    rc, out, _ = cli(
        "check", "--dataset", "isic2019", "--root", synth_root, "--json", "--option", "exclude_ham10000=true"
    )
    assert rc == 0 and json.loads(out)["rows"] == 160 - n_ham
    rc, out, _ = cli(
        "check", "--dataset", "isic2019", "--root", synth_root, "--json", "--option", "exclude_ham10000"
    )  # bare flag means true
    assert json.loads(out)["rows"] == 160 - n_ham
    assert SOURCE.read(synth_root, exclude_ham10000=False).num_rows == 160
    rc, out, err = cli("check", "--dataset", "isic2019", "--root", synth_root, "--option", "exclude_ham10000=maybe")
    assert rc == 2 and "exclude_ham10000='maybe' is not a boolean" in err and "Traceback" not in err


def test_miniature_df_and_vasc_differ_only_in_site(synth_root):
    df, vasc = CLASSES.index("DF"), CLASSES.index("VASC")
    assert ((df, vasc),) == METADATA_ONLY_PAIRS
    assert image_class_of(df, METADATA_ONLY_PAIRS) == image_class_of(vasc, METADATA_ONLY_PAIRS)
    assert len({image_class_of(c, METADATA_ONLY_PAIRS) for c in range(8)}) == 7
    rows = SOURCE.read(synth_root).to_pylist()
    sites = {dx: {r["meta_anatom_site_general"] for r in rows if r["label_name"] == dx} for dx in ("DF", "VASC")}
    assert sites["DF"] == {"lower extremity"}
    assert None not in sites["VASC"] and "lower extremity" not in sites["VASC"]


def test_miniature_size_option(tmp_path):
    table = SOURCE.read(write_miniature(tmp_path / "small", 1, n_images=72))
    assert table.num_rows == 72 and set(table.column("label_name").to_pylist()) == set(CLASSES) - {"UNK"}


def test_read_does_not_decode_images_and_accepts_nested_unzip(mini):
    folder = mini / IMAGE_FOLDER
    next(folder.glob("*.jpg")).write_bytes(b"not a jpeg")
    nested = folder / IMAGE_FOLDER
    nested.mkdir()
    for f in folder.glob("*.jpg"):
        f.rename(nested / f.name)
    table = SOURCE.read(mini)
    assert table.num_rows == 160
    assert {Path(p).parent for p in table.column("image_path").to_pylist()} == {nested.resolve()}


# ------------------------------------------------------------------ clear errors
def _label_of_row(root: Path, row: int) -> str:
    header, rows = read_csv(root / GROUND_TRUTH_FILE)
    return next(c for c in CLASSES if rows[row][header.index(c)] == "1.0")


def _remove_images(root: Path, n: int) -> list[str]:
    gone = sorted((root / IMAGE_FOLDER).glob("*.jpg"))[:n]
    for p in gone:
        p.unlink()
    return [p.stem for p in gone]


GT, MD = GROUND_TRUTH_FILE, METADATA_FILE
#: name -> (break the copy, texts the error must hold, hint text)
BAD_INPUTS = {
    "missing ground truth": (lambda r: (r / GT).unlink(), [f"{GT} not found", MD], "isic-archive"),
    "missing metadata": (lambda r: (r / MD).unlink(), [f"{MD} not found", GT], "isic-archive"),
    "missing class column": (
        lambda r: edit_csv(r / GT, drop_column("SCC")),
        [f"{GT} (row 1)", "missing column(s) ['SCC']", "'UNK'"],
        "rename",
    ),
    "missing sex column": (
        lambda r: edit_csv(r / MD, drop_column("sex")),
        [f"{MD} (row 1)", "missing column(s) ['sex']", "'gender'"],
        "lesion_id",
    ),
    "row marked as no class": (
        lambda r: edit_csv(r / GT, set_cell(2, _label_of_row(r, 2), "0.0")),
        [f"{GT} (row 4)", "is marked as no class"],
        "exactly one 1.0",
    ),
    "row marked as two classes": (
        lambda r: edit_csv(r / GT, set_cell(4, "UNK", "1.0")),
        [f"{GT} (row 6)", "is marked as 2 classes", "'UNK'"],
        "exactly one 1.0",
    ),
    "non-binary cell": (
        lambda r: edit_csv(r / GT, set_cell(0, "MEL", "yes")),
        [f"{GT} (row 2)", "column 'MEL'", "holds 'yes'"],
        "one-hot",
    ),
    "duplicate image": (
        lambda r: edit_csv(r / GT, lambda h, rows: (h, rows[:3] + [rows[1]] + rows[3:])),
        [f"{GT} (row 5)", "duplicate image", "(also on row 3)"],
        "once",
    ),
    "images absent": (
        lambda r: _remove_images(r, 7),
        ["7 of 160 images listed in ISIC_2019_Training_GroundTruth.csv are not on disk", "..."],
        "_downsampled",
    ),
    "ground truth id without metadata": (
        lambda r: edit_csv(r / MD, lambda h, rows: (h, rows[1:])),
        [f"{MD}: 1 image(s) listed in {GT} have no row in {MD}"],
        "same ISIC 2019",
    ),
    "metadata id without ground truth": (
        lambda r: edit_csv(r / MD, lambda h, rows: (h, rows + [["ISIC_9999999", "40", "", "", "male"]])),
        [f"{GT}: 1 image(s) listed in {MD} have no row in {GT}", "ISIC_9999999"],
        "same ISIC 2019",
    ),
    "wrong cell count": (
        lambda r: edit_csv(r / MD, lambda h, rows: (h, rows[:1] + [rows[1][:3]] + rows[2:])),
        [f"{MD} (row 3)", "has 3 cells but the header has 5"],
        "comma",
    ),
    "no image folder": (lambda r: shutil.rmtree(r / IMAGE_FOLDER), [f"no {IMAGE_FOLDER} folder"], "unzip"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_clear_error_and_check_exit(mini, cli, name):
    breaker, texts, hint = BAD_INPUTS[name]
    breaker(mini)
    assert_unreadable(cli, DATASET, mini, texts, hint=hint)


def test_excluded_ham10000_images_need_not_be_on_disk(mini):
    for f in (mini / IMAGE_FOLDER).glob("*.jpg"):
        if in_ham10000(f.stem):
            f.unlink()
    with pytest.raises(DatasetError, match="not on disk"):
        SOURCE.read(mini)
    kept = SOURCE.read(mini, exclude_ham10000=True)
    assert set(kept.column("meta_in_ham10000").to_pylist()) == {"false"} and kept.num_rows > 50


def test_unknown_option(synth_root):
    with pytest.raises(DatasetError, match=r"unknown option\(s\) \['exclude_ham'\]") as err:
        SOURCE.read(synth_root, exclude_ham=True)
    assert "exclude_ham10000" in err.value.hint
