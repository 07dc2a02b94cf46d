"""Source options that implement the papers' protocol variants (issue 11): each changes what it says.

* ISIC 2017 ``labels=melanoma``: melanoma vs rest, two classes (MSViT's binary reading);
* HAM10000 ``group_by=image``: an image-level split, for leakage studies only (warns);
* ISIC 2018 Task 1 ``splits=train`` + ``use_official_split=false``: test carved from the training release;
* CBIS-DDSM ``view=roi``: the publisher's lesion crops instead of the whole film.
"""

from __future__ import annotations

import warnings
from collections import Counter

import pyarrow as pa
import pytest

from dermfuse_data.datamodule import DermDataModule
from dermfuse_data.errors import DatasetError
from dermfuse_data.sources import get_source
from dermfuse_data.splits import crossing_groups, make_splits


def _read(source: str, root, **options) -> pa.Table:
    return get_source(source).read(root, **options)


def test_isic2017_melanoma_vs_rest_relabels_every_row(miniature):
    root = miniature("isic2017")
    three = _read("isic2017", root)
    two = _read("isic2017", root, labels="melanoma")
    source = get_source("isic2017")
    assert source.classes_with({"labels": "melanoma"}) == ("other", "melanoma")
    assert source.classes_with({}) == source.classes == ("melanoma", "seborrheic_keratosis", "nevus")
    pairs = Counter(zip(three.column("label_name").to_pylist(), two.column("label_name").to_pylist()))
    assert set(pairs) == {("melanoma", "melanoma"), ("seborrheic_keratosis", "other"), ("nevus", "other")}
    assert two.column("label").to_pylist() == [int(n == "melanoma") for n in three.column("label_name").to_pylist()]
    # everything but the labels is the same table (split, masks, metadata)
    for name in three.column_names:
        if name not in ("label", "label_name"):
            assert two.column(name).equals(three.column(name)), name


def test_isic2017_unknown_labelling_is_a_clear_error(miniature):
    with pytest.raises(DatasetError, match=r"labels='binary'.*diagnosis.*melanoma"):
        _read("isic2017", miniature("isic2017"), labels="binary")


def test_datamodule_classes_follow_the_source_options(tmp_path):
    """num_classes / class_names (linked to the net's head by the CLI) come from the relabelled source."""
    dm = DermDataModule("isic2017", source_options={"labels": "melanoma"}, cache_dir=str(tmp_path))
    assert dm.num_classes == 2 and dm.class_names == ["other", "melanoma"]
    assert DermDataModule("isic2017", cache_dir=str(tmp_path)).num_classes == 3


def test_ham10000_image_level_split_lets_lesions_cross_and_warns(miniature):
    root = miniature("ham10000")
    by_lesion = _read("ham10000", root)
    with pytest.warns(UserWarning, match="group_by=image.*optimistic"):
        by_image = _read("ham10000", root, group_by="image")
    assert by_image.column("group_id").to_pylist() == by_image.column("sample_id").to_pylist()
    assert by_lesion.column("group_id").to_pylist() != by_lesion.column("sample_id").to_pylist()
    lesion_of = dict(zip(by_lesion.column("sample_id").to_pylist(), by_lesion.column("group_id").to_pylist()))
    split = make_splits(by_image)
    as_lesions = split.set_column(
        split.column_names.index("group_id"),
        "group_id",
        pa.array([lesion_of[s] for s in split.column("sample_id").to_pylist()]),
    )
    assert crossing_groups(as_lesions), "an image-level split puts some lesion in two splits"
    assert not crossing_groups(make_splits(by_lesion)), "the default split never does"


def test_ham10000_default_is_lesion_grouped_without_warning(miniature):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = _read("ham10000", miniature("ham10000"), group_by="lesion")
    assert len(set(table.column("group_id").to_pylist())) < table.num_rows
    with pytest.raises(DatasetError, match="group_by='patient'"):
        _read("ham10000", miniature("ham10000"), group_by="patient")


def test_isic2018_task1_test_carved_from_the_training_release(miniature):
    root = miniature("isic2018_task1")
    carved = make_splits(_read("isic2018_task1", root, splits="train"), use_official=False)
    assert set(carved.column("official_split").to_pylist()) == {"train"}
    counts = Counter(carved.column("split").to_pylist())
    assert set(counts) == {"train", "val", "test"} and counts["test"] >= 0.1 * carved.num_rows
    official = make_splits(_read("isic2018_task1", root))
    official_test = {s for s, k in zip(official["sample_id"].to_pylist(), official["split"].to_pylist()) if k == "test"}
    assert not official_test & set(carved.column("sample_id").to_pylist()), "no official test image is read"


def test_cbis_ddsm_roi_view_serves_the_crops(miniature):
    root = miniature("cbis_ddsm")
    full = _read("cbis_ddsm", root, abnormality="both")
    roi = _read("cbis_ddsm", root, abnormality="both", view="roi")
    assert roi.column("sample_id").to_pylist() == full.column("sample_id").to_pylist()
    assert roi.column("label").to_pylist() == full.column("label").to_pylist()
    differs = [a != b for a, b in zip(roi["image_path"].to_pylist(), full["image_path"].to_pylist())]
    assert all(differs) and roi.column("mask_path").null_count == roi.num_rows
