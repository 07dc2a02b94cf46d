"""Splits: grouped, stratified, seeded, persisted; no group ever crosses splits."""

from __future__ import annotations

import collections

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import SPLITS, build_table
from dermfuse_data.splits import assert_no_leak, crossing_groups, load_or_make_splits, make_splits


def _table(labels, groups, official=None):
    rows = [
        dict(
            sample_id=f"s{i}",
            image_path=f"/x/{i}.png",
            label=int(lab),
            label_name=str(lab),
            group_id=str(g),
            official_split=None if official is None else official[i],
        )
        for i, (lab, g) in enumerate(zip(labels, groups))
    ]
    return build_table(rows)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40)), min_size=4, max_size=300), st.integers(0, 10_000))
def test_no_group_crosses_splits_under_generated_tables(rows, seed):
    labels = [r[0] for r in rows]
    groups = [r[1] for r in rows]
    out = make_splits(_table(labels, groups), seed=seed)
    assert crossing_groups(out) == {}
    assert set(out.column("split").to_pylist()) <= {"train", "val", "test"}
    assert len(out) == len(rows)


ROWS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40)), min_size=4, max_size=300)


@settings(max_examples=60, deadline=None)
@given(ROWS, st.lists(st.sampled_from(SPLITS), min_size=41, max_size=41), st.booleans(), st.integers(0, 10_000))
def test_official_split_kept_val_carved_from_train_no_leak_under_generated_tables(
    rows, split_of_group, publisher_has_val, seed
):
    """A grouped publisher split (with or without val): kept, val only from train, never leaky."""
    labels = [r[0] for r in rows]
    groups = [r[1] for r in rows]
    official = [split_of_group[g] if publisher_has_val or split_of_group[g] != "val" else "train" for g in groups]
    split = make_splits(_table(labels, groups, official), seed=seed)
    assert crossing_groups(split) == {}
    split = split.column("split").to_pylist()
    if "val" in official:
        assert split == official  # the publisher's val is kept
        return
    assert [s for s, o in zip(split, official) if o == "test"] == [o for o in official if o == "test"]
    assert {s for s, o in zip(split, official) if o == "train"} <= {"train", "val"}
    train_groups = {g for g, o in zip(groups, official) if o == "train"}
    if len(train_groups) >= 2:  # val carved, train left
        assert "val" in split and "train" in split


@settings(max_examples=60, deadline=None)
@given(ROWS, st.data(), st.integers(0, 10_000))
def test_resplit_ignores_any_official_split_and_never_leaks(rows, data, seed):
    """``use_official=False`` regroups even a publisher split that puts one group in two splits."""
    labels = [r[0] for r in rows]
    groups = [r[1] for r in rows]
    official = data.draw(st.lists(st.sampled_from(SPLITS), min_size=len(rows), max_size=len(rows)))
    table = _table(labels, groups, official)
    out = make_splits(table, seed=seed, use_official=False)
    assert crossing_groups(out) == {} and len(out) == len(rows)
    assert set(out.column("split").to_pylist()) <= set(SPLITS)
    if len(set(groups)) >= 3:  # test and val both held out
        assert set(out.column("split").to_pylist()) == set(SPLITS)


def test_fractions_stratification_and_seed():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(600), 2)
    labels = np.repeat(rng.choice(4, 600, p=[0.5, 0.3, 0.15, 0.05]), 2)
    t = _table(labels, groups)
    out = make_splits(t, 0.15, 0.15, seed=1)
    split = np.array(out.column("split").to_pylist())
    share = {s: np.mean(split == s) for s in ("train", "val", "test")}
    assert abs(share["test"] - 0.143) < 0.03 and abs(share["val"] - 0.143) < 0.04
    for s in ("val", "test"):  # every class present in every held-out split, similar prevalence
        counts = collections.Counter(labels[split == s])
        assert set(counts) == {0, 1, 2, 3}
    again = make_splits(t, 0.15, 0.15, seed=1).column("split").to_pylist()
    other = make_splits(t, 0.15, 0.15, seed=2).column("split").to_pylist()
    assert again == split.tolist() and other != split.tolist()


def test_official_split_kept_and_val_carved_from_train_grouped():
    official = ["train"] * 80 + ["test"] * 20
    groups = [i // 2 for i in range(100)]
    out = make_splits(_table([i % 2 for i in range(100)], groups, official), seed=0)
    split = out.column("split").to_pylist()
    assert split[80:] == ["test"] * 20
    assert 0 < split.count("val") < 40
    assert crossing_groups(out) == {}


def test_official_split_with_val_is_untouched():
    official = ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    out = make_splits(_table([0, 1] * 5, range(10), official))
    assert out.column("split").to_pylist() == official


def test_official_split_without_train_rows_is_kept():
    """E.g. ISIC 2017 read with ``splits=test``: nothing to carve val from, no crash."""
    out = make_splits(_table([0, 1, 0, 1], range(4), ["test"] * 4))
    assert out.column("split").to_pylist() == ["test"] * 4


def test_leaking_official_split_warns_and_resplit_fixes(tmp_path):
    official = ["train", "test"] * 20
    t = _table([0, 1] * 20, [i // 2 for i in range(40)], official)  # each group in both splits
    with pytest.warns(UserWarning, match="use_official_split=False"):
        load_or_make_splits(t, tmp_path)
    out, _ = load_or_make_splits(t, tmp_path, use_official=False)
    assert crossing_groups(out) == {}


def test_assert_no_leak_names_groups():
    t = _table([0, 1], ["g", "g"]).append_column("split", pa.array(["train", "test"]))
    with pytest.raises(DatasetError, match="g"):
        assert_no_leak(t)


def test_persisted_split_is_reused_and_keyed_by_content(tmp_path):
    t = _table([i % 3 for i in range(90)], [i // 3 for i in range(90)])
    _, path = load_or_make_splits(t, tmp_path, seed=3)
    # move group 0 (s0..s2) to val in the saved file: a reuse must read the file, not recompute
    lines = [f"s{i},val" if i < 3 else line for i, line in enumerate(path.read_text().splitlines()[1:])]
    path.write_text("sample_id,split\n" + "\n".join(lines) + "\n")
    again, path_again = load_or_make_splits(t, tmp_path, seed=3)
    assert path_again == path
    assert again.column("split").to_pylist()[:3] == ["val"] * 3
    _, other_seed = load_or_make_splits(t, tmp_path, seed=4)
    _, other_data = load_or_make_splits(t.slice(0, 60), tmp_path, seed=3)
    assert len({path, other_seed, other_data}) == 3
