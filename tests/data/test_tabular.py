"""Tabular encoder: fitted on train only, missing indicators, multi-hot, leak refusal."""

from __future__ import annotations

import numpy as np
import pytest

from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import build_table
from dermfuse_data.sources.base import DatasetSource, MetaFeature
from dermfuse_data.tabular import TabularEncoder, select_features

FEATURES = (
    MetaFeature("age", "age", "numeric"),
    MetaFeature("sex", "sex"),
    MetaFeature("shape", "shape", "multi"),
    MetaFeature("assessment", "assessment", "numeric", leaks_label=True, why_leaks="BI-RADS call"),
)
SOURCE = DatasetSource("toy", "Toy", ("a", "b"), read=None, features=FEATURES)


def _table(rows):
    return build_table(
        [
            dict(
                sample_id=str(i),
                image_path="x",
                label=0,
                label_name="a",
                group_id=str(i),
                **{f"meta_{k}": v for k, v in r.items()},
            )
            for i, r in enumerate(rows)
        ],
        meta_columns=["age", "sex", "shape", "assessment"],
    )


TRAIN = _table(
    [
        dict(age="40", sex="male", shape="OVAL", assessment="4"),
        dict(age="60.0", sex="female", shape="OVAL-LOBULATED", assessment="2"),
        dict(age="", sex="UNK", shape="NA", assessment="3"),
    ]
)


def test_layout_widths_and_names():
    enc = TabularEncoder(select_features(SOURCE, "all")).fit(TRAIN)
    assert enc.feature_names == ["age", "sex", "shape"]  # leaking feature left out of "all"
    assert enc.group_widths == [2, 3, 3]
    assert enc.column_names == [
        "age",
        "age=missing",
        "sex=female",
        "sex=male",
        "sex=missing",
        "shape=LOBULATED",
        "shape=OVAL",
        "shape=missing",
    ]


def test_values_missing_and_multi_hot():
    enc = TabularEncoder(select_features(SOURCE, "all")).fit(TRAIN)
    x = enc.transform(TRAIN)
    assert x.dtype == np.float32 and x.shape == (3, 8)
    np.testing.assert_allclose(x[:2, 0], [-1.0, 1.0])  # standardised on train (mean 50, std 10)
    np.testing.assert_array_equal(x[2], [0, 1, 0, 0, 1, 0, 0, 1])  # empty, UNK and NA are all missing
    np.testing.assert_array_equal(x[1, 5:], [1, 1, 0])  # OVAL-LOBULATED -> two hot


def test_fitted_on_train_only_unseen_category_is_missing():
    enc = TabularEncoder(select_features(SOURCE, ["sex"])).fit(TRAIN)
    test = _table([dict(age="1", sex="other", shape="OVAL", assessment="1")])
    np.testing.assert_array_equal(enc.transform(test), [[0, 0, 1]])


def test_state_round_trip():
    enc = TabularEncoder(select_features(SOURCE, "all")).fit(TRAIN)
    again = TabularEncoder(select_features(SOURCE, "all"))
    again.load_state_dict(enc.state_dict())
    np.testing.assert_array_equal(again.transform(TRAIN), enc.transform(TRAIN))


def test_leaking_feature_refused_with_reason_unless_allowed():
    with pytest.raises(DatasetError, match="(?s)leaks the label: BI-RADS call.*allow_leaky_metadata"):
        select_features(SOURCE, ["age", "assessment"])
    assert [f.name for f in select_features(SOURCE, ["assessment"], allow_leaky=True)] == ["assessment"]


def test_unknown_feature_and_bad_number_are_clear():
    with pytest.raises(DatasetError, match="no metadata feature 'weight'"):
        select_features(SOURCE, ["weight"])
    bad = _table([dict(age="forty", sex="male", shape="OVAL", assessment="1")])
    with pytest.raises(DatasetError, match=r"row 1.*'age' holds 'forty'"):
        TabularEncoder(select_features(SOURCE, ["age"])).fit(bad)


def test_no_features_gives_empty_matrix():
    enc = TabularEncoder(select_features(SOURCE, None)).fit(TRAIN)
    assert enc.transform(TRAIN).shape == (3, 0) and enc.group_widths == []
