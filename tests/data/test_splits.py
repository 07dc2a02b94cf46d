"""Splits: grouped, stratified, seeded, persisted; no group ever crosses splits."""

from __future__ import annotations

import collections
import errno
import os
import stat

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dermfuse_data import storage
from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import SPLITS, build_table
from dermfuse_data.split_file import SavedSample, read_split_file, write_split_file
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


def _split_of(table) -> dict[str, str]:
    return dict(zip(table.column("sample_id").to_pylist(), table.column("split").to_pylist()))


def test_persisted_split_is_the_source_of_truth_keyed_by_parameters_not_samples(tmp_path):
    t = _table([i % 3 for i in range(90)], [i // 3 for i in range(90)])
    _, path = load_or_make_splits(t, tmp_path, seed=3)
    saved = read_split_file(path)
    assert list(saved) == [f"s{i}" for i in range(90)] and saved["s4"].group_id == "1" and saved["s4"].label == 1
    # move group 0 (s0..s2) to val in the saved file: a reuse must read the file, not recompute
    write_split_file(
        path,
        {
            sid: SavedSample(s.group_id, s.label, "val" if sid in {"s0", "s1", "s2"} else s.split)
            for sid, s in saved.items()
        },
    )
    again, path_again = load_or_make_splits(t, tmp_path, seed=3)
    assert path_again == path
    assert again.column("split").to_pylist()[:3] == ["val"] * 3
    _, other_seed = load_or_make_splits(t, tmp_path, seed=4)
    _, other_identity = load_or_make_splits(t, tmp_path, seed=3, identity={"source_options": {"abnormality": "mass"}})
    assert len({path, other_seed, other_identity}) == 3
    subset, same_file = load_or_make_splits(t.slice(0, 60), tmp_path, seed=3)  # 30 samples removed
    assert same_file == path and _split_of(subset) == {
        k: v for k, v in _split_of(again).items() if k in _split_of(subset)
    }
    assert len(read_split_file(path)) == 90  # removed samples stay in the file: restored, they get their split back


def _edited(rows, keep, added):
    """Rows ``rows`` (label, group) with only ``keep`` kept, then ``added`` appended under fresh ids."""
    kept = [(f"s{i}", lab, g) for i, ((lab, g), k) in enumerate(zip(rows, keep)) if k]
    return kept + [(f"new{j}", lab, g) for j, (lab, g) in enumerate(added)]


def _table_of(rows, official_of_group=None):
    table = _table(
        [r[1] for r in rows],
        [r[2] for r in rows],
        None if official_of_group is None else [official_of_group[r[2]] for r in rows],
    )
    return table.set_column(0, "sample_id", pa.array([r[0] for r in rows], pa.string()))


@settings(max_examples=40, deadline=None)
@given(
    ROWS,
    st.data(),
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 60)), max_size=40),  # groups 41..60 are new
    st.integers(0, 10_000),
    st.sampled_from(["grouped", "official", "official+val"]),
)
def test_adding_and_removing_rows_never_moves_a_remaining_sample(tmp_path_factory, rows, data, added, seed, kind):
    """The property of the issue: edit the dataset (drop rows, add rows of old and new groups), reload:
    every remaining sample keeps its split, new samples join their group's split, nothing leaks."""
    directory = tmp_path_factory.mktemp("splits")
    official = None
    if kind != "grouped":
        splits = ("train", "val", "test") if kind == "official+val" else ("train", "test")
        official = data.draw(st.lists(st.sampled_from(splits), min_size=61, max_size=61))
    first_rows = _edited(rows, [True] * len(rows), [])
    first, path = load_or_make_splits(_table_of(first_rows, official), directory, seed=seed)
    before = _split_of(first)
    keep = data.draw(st.lists(st.booleans(), min_size=len(rows), max_size=len(rows)))
    if official is not None:  # a publisher defining val or not is the publisher's split itself: that edit may move
        publisher_val = ["val" in {official[g] for _, _, g in r} for r in (first_rows, _edited(rows, keep, added))]
        assume(publisher_val[0] == publisher_val[1])
    edited, same = load_or_make_splits(_table_of(_edited(rows, keep, added), official), directory, seed=seed)
    after = _split_of(edited)
    assert same == path
    assert all(after[sid] == before[sid] for sid in after if sid in before)  # no remaining sample moved
    assert crossing_groups(edited) == {}
    group_split = {g: s for (sid, _, g) in first_rows for s in [before[sid]]}
    for sid, _, g in _edited(rows, keep, added):
        if sid.startswith("new") and g in group_split and (official is None or official[g] == "train"):
            assert after[sid] == group_split[g]  # joined its group
        if (
            official is not None
            and official[g] in ("test", "val")
            and (official[g] == "test" or kind == "official+val")
        ):
            assert after[sid] == official[g]  # the publisher's split is kept
    again, _ = load_or_make_splits(_table_of(_edited(rows, keep, added), official), directory, seed=seed)
    assert _split_of(again) == after  # and stays put
    resplit, _ = load_or_make_splits(
        _table_of(_edited(rows, keep, added), official), directory, seed=seed, resplit=True
    )
    fresh = make_splits(_table_of(_edited(rows, keep, added), official), seed=seed)
    assert _split_of(resplit) == _split_of(fresh)  # resplit = computed anew from the current samples


def test_one_added_image_moves_no_sample_but_resplit_does(tmp_path, capsys):
    """The reported case (2000 samples, one image added: 183 moved under the old fingerprinted file)."""
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 1500, 2000)
    labels = rng.choice(7, 2000, p=[0.6, 0.12, 0.1, 0.08, 0.05, 0.03, 0.02])
    rows = [(f"s{i}", int(lab), int(g)) for i, (lab, g) in enumerate(zip(labels, groups))]
    first, path = load_or_make_splits(_table_of(rows), tmp_path)
    grown = _table_of([*rows, ("ISIC_new", 0, 99999)])
    recomputed = _split_of(make_splits(grown))  # what a split computed from scratch does
    moved_by_recompute = sum(recomputed[k] != v for k, v in _split_of(first).items())
    assert moved_by_recompute > 50
    kept, same = load_or_make_splits(grown, tmp_path)
    assert same == path and sum(_split_of(kept)[k] != v for k, v in _split_of(first).items()) == 0
    assert "1 added (ISIC_new)" in capsys.readouterr().err
    resplit, _ = load_or_make_splits(grown, tmp_path, resplit=True)
    assert _split_of(resplit) == recomputed
    assert "regenerated (resplit)" in capsys.readouterr().err
    assert {k: s.split for k, s in read_split_file(path).items()} == recomputed


def test_saved_sample_moved_to_another_group_is_refused_with_resplit_hint(tmp_path):
    t = _table([0, 1] * 30, [i // 2 for i in range(60)])
    first, path = load_or_make_splits(t, tmp_path)
    split = first.column("split").to_pylist()
    other = next(i for i in range(60) if split[i] != split[0])  # a sample in another split than s0
    moved = t.set_column(
        t.column_names.index("group_id"), "group_id", pa.array(["0" if i == other else str(i // 2) for i in range(60)])
    )
    with pytest.raises(DatasetError, match=r"(?s)splits-.*\.csv.*groups cross splits.*data\.resplit=true"):
        load_or_make_splits(moved, tmp_path)
    resplit, _ = load_or_make_splits(moved, tmp_path, resplit=True)
    assert crossing_groups(resplit) == {}


def test_unreadable_split_file_names_the_file(tmp_path):
    t = _table([0, 1] * 10, range(20))
    _, path = load_or_make_splits(t, tmp_path)
    path.write_text("sample_id,split\ns0,train\n")  # not the format: no group, no label
    with pytest.raises(DatasetError, match=r"(?s)splits-.*\.csv \(row 2\).*sample_id,group_id,label,split.*resplit"):
        load_or_make_splits(t, tmp_path)
    out, _ = load_or_make_splits(t, tmp_path, resplit=True)
    assert len(read_split_file(path)) == 20 and len(out) == 20


def test_split_file_is_readable_by_the_group(tmp_path):
    old = os.umask(0o002)
    try:
        _, path = load_or_make_splits(_table([0, 1] * 5, range(10)), tmp_path / "shared")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o664
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_split_file_on_a_full_disk_names_the_folder_and_the_variable(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.tempfile, "mkstemp", full)
    with pytest.raises(DatasetError, match=rf"(?s){tmp_path.name}.*split.*no space left.*DERMFUSE_CACHE"):
        load_or_make_splits(_table([0, 1] * 5, range(10)), tmp_path)
