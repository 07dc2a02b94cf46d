"""Metadata the model was not trained on: every gap encoded exactly as a missing value, and reported."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from dermfuse_data.foreign_metadata import encode_like_training
from dermfuse_data.sources.base import MetaFeature
from dermfuse_data.tabular import TabularEncoder

FEATURES = [
    MetaFeature("age", "age", "numeric"),
    MetaFeature("sex", "sex", "categorical"),
    MetaFeature("site", "site", "categorical"),
]


def _table(**columns) -> pa.Table:
    return pa.table({f"meta_{k}": pa.array(v, pa.string()) for k, v in columns.items()})


def test_gaps_are_encoded_as_missing_and_reported():
    encoder = TabularEncoder(FEATURES).fit(
        _table(age=["30", "50", None], sex=["male", "female", "male"], site=["back", "face", "UNK"])
    )
    foreign = _table(age=["40", "forty", None], sex=["female", "other", "unknown"], colour=["red", "blue", "red"])
    encoded, report = encode_like_training(encoder, foreign)
    # the same as the strict encoder on the cells that can be read, None for the rest
    expected = encoder.transform(_table(age=["40", None, None], sex=["female", None, None], site=[None, None, None]))
    np.testing.assert_array_equal(encoded, expected)
    assert encoded[:, encoder.column_names.index("site=missing")].tolist() == [1.0, 1.0, 1.0]
    assert encoded[1, encoder.column_names.index("age=missing")] == 1.0
    assert report.absent == ["site"]
    assert report.not_numbers == {"age": {"forty": 1}} and report.unseen_values == {"sex": {"other": 1}}
    assert report.unused_columns == ["colour"]  # 'unknown' is a missing token, not an unseen value
    lines = "\n".join(report.lines())
    assert "['site']" in lines and "'forty' x1" in lines and "'other' x1" in lines and "['colour']" in lines


def test_nothing_to_report_when_the_table_is_the_training_kind():
    table = _table(age=["30", "50"], sex=["male", "female"], site=["back", "face"])
    encoder = TabularEncoder(FEATURES).fit(table)
    encoded, report = encode_like_training(encoder, table)
    np.testing.assert_array_equal(encoded, encoder.transform(table))
    assert report.lines() == []
