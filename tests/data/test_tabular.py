"""Tabular encoder: fitted on train only, missing indicators, multi-hot, leak refusal."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
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


def test_soft_one_hot_writes_the_zeros_of_one_hot_blocks_as_eps():
    """soft_one_hot=eps: unset cells of categorical/multi-hot blocks read eps; set cells, numeric blocks unchanged."""
    table = TRAIN
    plain = TabularEncoder(FEATURES).fit(table)
    soft = TabularEncoder(FEATURES, soft_one_hot=0.01).fit(table)
    x, y = plain.transform(table), soft.transform(table)
    assert x.shape == y.shape
    start = 0
    for block in plain.blocks:
        a, b = x[:, start : start + block.width], y[:, start : start + block.width]
        if block.kind == "numeric":
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_array_equal(b[a == 1.0], 1.0)
            np.testing.assert_allclose(b[a == 0.0], 0.01)
        start += block.width
    assert soft.off_values == [0.0 if b.kind == "numeric" else 0.01 for b in soft.blocks]
    with pytest.raises(ValueError, match="soft_one_hot"):
        TabularEncoder(FEATURES, soft_one_hot=1.0)


def test_blanked_test_features_read_as_the_encoder_writes_a_missing_value():
    """blank_features with the encoder's off values gives exactly the encoding of a missing cell."""
    table = TRAIN
    from dermfuse_data.datamodule import blank_features

    encoder = TabularEncoder(FEATURES, soft_one_hot=0.01).fit(table)
    encoded = encoder.transform(table)
    blanked = blank_features(encoded, encoder.group_widths, 1.0, seed=0, off_values=encoder.off_values)
    missing = {f"meta_{f.column}": pa.array([None] * table.num_rows, pa.string()) for f in FEATURES}
    all_missing = table
    for name, column in missing.items():
        all_missing = all_missing.set_column(all_missing.column_names.index(name), name, column)
    np.testing.assert_allclose(blanked, encoder.transform(all_missing))
