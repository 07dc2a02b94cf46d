"""What every registered dataset source and its synthetic miniature promise, checked for each dataset.

Reader and writer registered under one name; the miniature is deterministic per seed, in the common
table schema, every class present, groups never crossing splits, masks binary at image size, ``check``
clean on it; a missing root, an absent image, a damaged image or mask and an unknown option are
reported naming the file, without a traceback. Dataset-specific facts live in ``test_<dataset>.py``.
"""

from __future__ import annotations

import importlib
import inspect
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from dermfuse_data.errors import DatasetError
from dermfuse_data.images import load_image
from dermfuse_data.schema import CORE_FIELDS, META_PREFIX, SPLITS, validate_table
from dermfuse_data.sources import SOURCE_MODULES, get_source
from dermfuse_data.splits import crossing_groups, make_splits
from dermfuse_data.synthetic import write_synthetic, writer
from tests.data._damage import DAMAGES, assert_one_mask_size_problem, halve_width
from tests.data._support import assert_unreadable, check_json, digest

DATASETS = sorted(SOURCE_MODULES)
MASKED = [name for name in DATASETS if get_source(name).has_masks]
#: a word each dataset's download hint must hold (where to get the real data); a source not listed (a
#: newly added one) must show its whole ``DOWNLOAD_HINT`` instead (:func:`download_word`)
DOWNLOAD_WORDS = {
    "pad_ufes_20": "Mendeley",
    "ham10000": "Dataverse",
    "isic2017": "ISIC 2017",
    "isic2018_task1": "ISIC 2018",
    "isic2019": "ISIC_2019_Training_Input.zip",
    "ph2": "PH2Dataset",
    "cbis_ddsm": "TCIA",
    "csv": "samples.yaml",
}
#: classes the publisher's training data has no sample of
CLASSES_WITHOUT_SAMPLES = {"isic2019": ["UNK"]}
#: (lowest, highest) lesion share of a miniature's masks, exclusive; a masked source not listed gets
#: ``ANY_MASK_SHARE``: every mask holds some lesion and some background
MASK_SHARE = {"isic2017": (0.03, 0.6), "isic2018_task1": (0.03, 0.6), "ph2": (0.03, 0.6), "cbis_ddsm": (0.0, 0.1)}
ANY_MASK_SHARE = (0.0, 1.0)
#: files that may be the same whatever the seed: the release's licence texts, ISIC 2017's superpixel grids,
#: the csv source's spec (its column declarations)
SEED_INDEPENDENT = ("LICENSE.txt", "ATTRIBUTION.txt", "_superpixels.png", "samples.yaml")
#: metadata files (the rest of a miniature is images, masks and crops)
LISTING_SUFFIXES = (".csv", ".xlsx", ".txt")
UNREADABLE_HINT = "-> the file is truncated or not an image: re-download it, or remove its row"

every_dataset = pytest.mark.parametrize("dataset", DATASETS)
masked_dataset = pytest.mark.parametrize("dataset", MASKED)


def download_word(dataset: str) -> str:
    """What the dataset's download hint must hold: its ``DOWNLOAD_WORDS`` entry, else its reader's whole
    ``DOWNLOAD_HINT`` (a reader without one breaks the contract)."""
    reader = importlib.import_module(f"dermfuse_data.sources.{SOURCE_MODULES[dataset]}")
    return DOWNLOAD_WORDS.get(dataset, reader.DOWNLOAD_HINT)


def _table(miniature, dataset: str) -> pa.Table:
    return get_source(dataset).read(miniature(dataset))


def _declared(miniature, dataset: str):
    """The source as declared for its miniature (the csv source's classes and features come from its spec)."""
    return get_source(dataset).for_data(miniature(dataset))


def _copy(miniature, dataset: str, tmp_path: Path) -> Path:
    root = miniature(dataset)
    return Path(shutil.copytree(root, tmp_path / root.name))


def _unshared_rows(table: pa.Table) -> list[int]:
    """Rows whose image file no other row uses (CBIS-DDSM rows share a mammogram)."""
    uses = Counter(table.column("image_path").to_pylist())
    return [i for i, path in enumerate(table.column("image_path").to_pylist()) if uses[path] == 1]


def _in_copy(path: str, root: Path, copy: Path) -> Path:
    return copy / Path(path).relative_to(root.resolve())


# ------------------------------------------------------------------ registration
@every_dataset
def test_reader_and_writer_registered_under_the_dataset_name(dataset, miniature):
    reader = importlib.import_module(f"dermfuse_data.sources.{SOURCE_MODULES[dataset]}")
    source = get_source(dataset)
    assert source is reader.SOURCE and source.name == dataset and source.read is reader.read
    assert not hasattr(source, "synthesize")  # readers do not know their writers
    assert source.title and source.notes and reader.__doc__ and reader.read.__doc__
    source = _declared(miniature, dataset)
    assert source.name == dataset and source.read is reader.read and source.for_data(miniature(dataset)) == source
    assert source.classes and len(set(source.classes)) == len(source.classes)
    assert len({f.name for f in source.features}) == len(source.features)
    assert all(f.why_leaks for f in source.features if f.leaks_label)
    assert all(help_text for help_text in source.options.values())
    assert reader.DOWNLOAD_HINT.strip() and download_word(dataset) in reader.DOWNLOAD_HINT
    module = writer(dataset)
    assert module.__doc__ and module.write_miniature.__doc__
    assert list(inspect.signature(module.write_miniature).parameters)[:2] == ["out", "seed"]


# ------------------------------------------------------------------ the miniature
@every_dataset
def test_miniature_is_in_the_common_table_schema(dataset, miniature):
    source, table = _declared(miniature, dataset), _table(miniature, dataset)
    validate_table(table)
    core = [f.name for f in CORE_FIELDS]
    assert table.column_names[: len(core)] == core
    for field in CORE_FIELDS:
        assert table.schema.field(field.name).type == field.type, field.name
        if not field.nullable:
            assert table.column(field.name).null_count == 0, field.name
    meta = table.column_names[len(core) :]
    assert all(c.startswith(META_PREFIX) and table.schema.field(c).type == pa.string() for c in meta)
    assert {META_PREFIX + f.column for f in source.features} <= set(meta)
    rows = table.to_pylist()
    assert all(r["label_name"] == source.classes[r["label"]] for r in rows)
    assert {r["official_split"] for r in rows} <= set(SPLITS) | {None}
    assert all(Path(r["image_path"]).is_file() and Path(r["image_path"]).is_absolute() for r in rows)
    assert table.column("mask_path").null_count == (0 if source.has_masks else table.num_rows)


@every_dataset
def test_miniature_has_every_class(dataset, miniature):
    source, table = _declared(miniature, dataset), _table(miniature, dataset)
    present = set(table.column("label_name").to_pylist())
    assert present == set(source.classes) - set(CLASSES_WITHOUT_SAMPLES.get(dataset, []))


@every_dataset
def test_miniature_is_deterministic_per_seed(dataset, miniature, tmp_path):
    first = digest(miniature(dataset))
    assert digest(write_synthetic(dataset, tmp_path / "again", 0)) == first
    other = digest(write_synthetic(dataset, tmp_path / "other", 1))
    varying = [k for k in other if not k.endswith(SEED_INDEPENDENT)]
    drawn = [k for k in varying if Path(k).suffix not in LISTING_SUFFIXES]
    assert drawn and set(first.values()).isdisjoint(other[k] for k in drawn)  # other images, masks, crops
    assert all(other[k] != first.get(k) for k in varying if Path(k).suffix in LISTING_SUFFIXES)  # other metadata


@every_dataset
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_miniature_groups_never_cross_splits(dataset, miniature, seed):
    table = _table(miniature, dataset)
    grouped = make_splits(table, seed=seed, use_official=False)
    assert crossing_groups(grouped) == {}
    assert set(grouped.column("split").to_pylist()) == set(SPLITS)
    official = table.column("official_split").to_pylist()
    if any(s is not None for s in official) and dataset != "cbis_ddsm":  # CBIS-DDSM's official split leaks
        assert crossing_groups(make_splits(table, seed=seed)) == {}


@every_dataset
def test_check_on_the_miniature_finds_no_problem(dataset, miniature, cli):
    source, table = _declared(miniature, dataset), _table(miniature, dataset)
    rc, report = check_json(cli, dataset, miniature(dataset))
    assert rc == 0 and report["readable"] and report["problems"] == [], report["problems"]
    assert report["rows"] == table.num_rows and report["dataset"] == dataset
    counts = Counter(table.column("label_name").to_pylist())
    assert report["classes"] == {name: counts.get(name, 0) for name in source.classes}
    assert report["images_verified"] == table.num_rows + table.num_rows - table.column("mask_path").null_count
    empty = CLASSES_WITHOUT_SAMPLES.get(dataset)
    expected = [f"classes without samples: {empty}"] if empty else []
    assert [w for w in report["warnings"] if "more than one official split" not in w] == expected
    rc, out, err = cli("check", "--dataset", dataset, "--root", miniature(dataset))
    assert rc == 0 and "no problems" in out and source.title.split(" ")[0] in out and "Traceback" not in out + err


@masked_dataset
def test_masks_are_binary_at_image_size(dataset, miniature):
    low, high = MASK_SHARE.get(dataset, ANY_MASK_SHARE)
    for row in _table(miniature, dataset).to_pylist():
        image, size = load_image(row["image_path"])
        mask, _ = load_image(row["mask_path"], mask=True, expect_size=size)
        assert mask.shape == image.shape[:2] and set(np.unique(mask).tolist()) == {0, 1}, row["sample_id"]
        assert low < mask.mean() < high, (row["sample_id"], mask.mean())


# ------------------------------------------------------------------ clear errors
@every_dataset
def test_missing_root_exits_2_naming_it(dataset, tmp_path, cli):
    with pytest.raises(DatasetError, match="dataset folder does not exist") as err:
        get_source(dataset).read(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value) and download_word(dataset) in err.value.hint
    rc, out, errout = cli("check", "--dataset", dataset, "--root", tmp_path / "nowhere")
    assert rc == 2 and "does not exist" in errout and str(tmp_path / "nowhere") in errout
    assert download_word(dataset) in errout and "Traceback" not in out + errout
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(DatasetError, match="is a file, not the dataset folder"):
        get_source(dataset).read(tmp_path / "a_file")


@every_dataset
def test_unknown_option_exits_2_listing_the_known_ones(dataset, miniature, cli):
    rc, report = check_json(cli, dataset, miniature(dataset), "--option", "bogus=1")
    assert rc == 2 and report["readable"] is False
    assert report["problems"] == [
        f"{miniature(dataset)}: unknown option(s) ['bogus'] for {dataset}\n"
        f"  -> known options: {get_source(dataset).options or 'none'}"
    ]


@every_dataset
def test_read_does_not_decode_images(dataset, miniature, tmp_path):
    copy = _copy(miniature, dataset, tmp_path)
    table = _table(miniature, dataset)
    _in_copy(table.column("image_path")[0].as_py(), miniature(dataset), copy).write_bytes(b"not an image")
    assert get_source(dataset).read(copy).num_rows == table.num_rows


@every_dataset
def test_absent_images_are_counted_and_the_first_five_named(dataset, miniature, tmp_path, cli):
    copy = _copy(miniature, dataset, tmp_path)
    table = _table(miniature, dataset)
    split = table.column("official_split")[0].as_py()
    rows = [i for i in _unshared_rows(table) if table.column("official_split")[i].as_py() == split][:7]
    gone = [table.column("sample_id")[i].as_py() for i in rows]
    for i in rows:
        _in_copy(table.column("image_path")[i].as_py(), miniature(dataset), copy).unlink()
    with pytest.raises(DatasetError) as err:
        get_source(dataset).read(copy)
    message = str(err.value)
    assert "7 of " in message and ("not on disk" in message or "have no image" in message), message
    assert sum(sample_id in message for sample_id in gone) == 5 and ", ..." in message
    rc, report = check_json(cli, dataset, copy)
    assert rc == 2 and report["problems"] == [message]


@every_dataset
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_image_named_by_check(dataset, miniature, tmp_path, cli, damage):
    copy = _copy(miniature, dataset, tmp_path)
    table = _table(miniature, dataset)
    row = _unshared_rows(table)[3]
    image = _in_copy(table.column("image_path")[row].as_py(), miniature(dataset), copy)
    image.write_bytes(DAMAGES[damage](image.read_bytes()))
    assert get_source(dataset).read(copy).num_rows == table.num_rows  # read() does not decode
    rc, report = check_json(cli, dataset, copy)
    assert rc == 1 and report["readable"] and len(report["problems"]) == 1, report["problems"]
    problem = report["problems"][0]
    assert problem.startswith(f"unreadable image: {image} (") and problem.endswith(UNREADABLE_HINT), problem
    reason = (
        "not a readable DICOM file"
        if image.suffix == ".dcm"
        else "cannot identify image file"
        if damage == "not an image"
        else "truncated"
    )
    assert reason in problem.lower() or reason in problem, problem
    rc, out, err = cli("check", "--dataset", dataset, "--root", copy)
    assert rc == 1 and "1 problem(s)" in out and image.name in out and "Traceback" not in out + err
    rc, _ = check_json(cli, dataset, copy, "--no-verify-images")
    assert rc == 0  # only decoding finds it


@masked_dataset
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_mask_named_by_check(dataset, miniature, tmp_path, cli, damage):
    copy = _copy(miniature, dataset, tmp_path)
    table = _table(miniature, dataset)
    mask = _in_copy(table.column("mask_path")[5].as_py(), miniature(dataset), copy)
    mask.write_bytes(DAMAGES[damage](mask.read_bytes()))
    if dataset == "cbis_ddsm" and damage != "cut mid pixel data":  # crop and mask told apart by DICOM header
        assert_unreadable(cli, dataset, copy, ["1 DICOM header(s) cannot be read", str(mask)], hint="TCIA")
        return
    get_source(dataset).read(copy)  # read() does not decode
    rc, report = check_json(cli, dataset, copy)
    assert rc == 1 and len(report["problems"]) == 1, report["problems"]
    assert report["problems"][0].startswith(f"unreadable mask: {mask} (")
    assert report["problems"][0].endswith(UNREADABLE_HINT)


@masked_dataset
def test_mask_of_wrong_size_named_by_check(dataset, miniature, tmp_path, cli):
    copy = _copy(miniature, dataset, tmp_path)
    row = _table(miniature, dataset).to_pylist()[7]
    mask, image = (_in_copy(row[k], miniature(dataset), copy) for k in ("mask_path", "image_path"))
    old, new = halve_width(mask)
    rc, report = check_json(cli, dataset, copy)
    assert rc == 1
    assert_one_mask_size_problem(report, mask, image, old, new)
    rc, out, err = cli("check", "--dataset", dataset, "--root", copy)
    assert rc == 1 and mask.name in out and "re-export" in out and "Traceback" not in out + err
