"""Leak-free train/val/test partitions (``../shared/DESIGN.md``, data flow step 2).

The publisher's split is used where one exists (validation carved from its training part, grouped);
otherwise a seeded stratified grouped split (scikit-learn ``StratifiedKFold`` over groups). In both cases no
``group_id`` (lesion or patient) ever appears in two splits. :func:`load_or_make_splits` writes the
partition as a small CSV next to the image cache (:mod:`dermfuse_data.split_file`); from then on that
file is the source of truth: every paper and every rerun reuses it, samples added later are placed by
group (:func:`extend_splits`) and no saved sample ever changes split unless a resplit is asked for.
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
from sklearn.model_selection import KFold, StratifiedKFold

from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import SPLITS
from dermfuse_data.split_file import (
    SavedSample,
    SplitChanges,
    read_split_file,
    split_changes,
    table_samples,
    write_split_file,
)


def _group_strata(labels: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row group index and per-group stratum (the group's globally rarest label)."""
    _, group_index = np.unique(groups, return_inverse=True)
    frequency = np.bincount(labels)
    # rarest label first: a group holding a rare class is stratified as that class
    order = np.lexsort((labels, frequency[labels]))
    strata = np.full(group_index.max() + 1, -1)
    for row in order[::-1]:
        strata[group_index[row]] = labels[row]
    return group_index, strata


def _hold_out(labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of a grouped, label-stratified hold-out of about ``fraction`` of the rows.

    Stratification runs on groups (scikit-learn ``StratifiedKFold`` over one stratum per group),
    then maps back to rows: exactly grouped, and linear in the number of groups (scikit-learn's
    ``StratifiedGroupKFold`` took ~26 s per call on ISIC 2019's 13931 lesions).
    """
    if len(labels) == 0:  # e.g. a publisher split with no training rows
        return np.zeros(0, dtype=bool)
    group_index, strata = _group_strata(labels, groups)
    n_groups = len(strata)
    if fraction <= 0 or n_groups < 2:
        return np.zeros(len(labels), dtype=bool)
    n_splits = int(min(max(2, round(1.0 / fraction)), n_groups))
    if np.bincount(strata).max() >= n_splits:
        with warnings.catch_warnings():  # rare classes are expected; they land where they can
            warnings.filterwarnings("ignore", message="The least populated class")
            folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
            _, held = next(folds.split(strata, strata))
    else:  # too few groups to stratify: grouped only
        _, held = next(KFold(n_splits=n_splits, shuffle=True, random_state=seed).split(strata))
    held_groups = np.zeros(n_groups, dtype=bool)
    held_groups[held] = True
    return held_groups[group_index]


def make_splits(
    table: pa.Table, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0, use_official: bool = True
) -> pa.Table:
    """Return ``table`` with a ``split`` column (``train``/``val``/``test``), grouped by ``group_id``.

    With ``use_official`` and an ``official_split`` column filled for every row, the publisher's
    split is kept; rows officially in ``train`` give up a grouped ``val`` part only when the
    publisher defines no ``val``. Otherwise test and then val are held out with
    :func:`_hold_out` (one fold of ``round(1/fraction)``), seeded.
    """
    labels = np.asarray(table.column("label").to_pylist())
    groups = np.asarray(table.column("group_id").to_pylist(), dtype=object)
    split = np.full(len(labels), "train", dtype=object)
    if uses_official(table, use_official):
        official = table.column("official_split").to_pylist()
        split[:] = official
        if "val" not in set(official):
            train = np.flatnonzero(split == "train")
            held = _hold_out(labels[train], groups[train], val_fraction, seed)
            split[train[held]] = "val"
    else:
        test = _hold_out(labels, groups, test_fraction, seed)
        split[test] = "test"
        rest = np.flatnonzero(~test)
        val_share = val_fraction / max(1e-9, 1.0 - test_fraction)
        held = _hold_out(labels[rest], groups[rest], val_share, seed + 1)
        split[rest[held]] = "val"
    return _with_split(table, split.tolist())


def crossing_groups(table: pa.Table) -> dict[str, set[str]]:
    """Groups found in more than one split: ``{group_id: {splits}}`` (empty when leak-free)."""
    seen: dict[str, set[str]] = {}
    for g, s in zip(table.column("group_id").to_pylist(), table.column("split").to_pylist()):
        seen.setdefault(g, set()).add(s)
    return {g: s for g, s in seen.items() if len(s) > 1}


def assert_no_leak(table: pa.Table, source: str = "split") -> None:
    """Raise :class:`DatasetError` if any ``group_id`` appears in two splits."""
    crossing = crossing_groups(table)
    if crossing:
        some = ", ".join(f"{g}: {sorted(s)}" for g, s in list(crossing.items())[:5])
        raise DatasetError(
            f"{len(crossing)} groups cross splits ({some})",
            path=source,
            hint="a saved sample changed group: regenerate the split (data.resplit=true, or python -m "
            "dermfuse_data split --resplit); a publisher's split: use_official_split=False",
        )


def _check_leaks(table: pa.Table, official: bool, source: str) -> None:
    """Our own splits must be leak-free (raise); a publisher's split that leaks is reported (warn)."""
    if not official:
        assert_no_leak(table, source)
        return
    crossing = crossing_groups(table)
    if crossing:
        warnings.warn(
            f"{source}: the publisher's split puts {len(crossing)} groups in more than one "
            "split; pass use_official_split=False for a grouped resplit",
            stacklevel=3,
        )


def uses_official(table: pa.Table, use_official: bool = True) -> bool:
    """Whether :func:`make_splits` keeps the publisher's split for ``table``."""
    return bool(
        use_official
        and "official_split" in table.column_names
        and table.column("official_split").null_count == 0
        and len(table) > 0
    )


def split_path(
    directory: str | Path,
    identity: dict | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    use_official: bool = True,
) -> Path:
    """The dataset's split file: ``<directory>/splits-<key>.csv``.

    The key covers ``identity`` (what names the data: e.g. source options, or which synthetic
    miniature) and the split parameters, not the samples: adding or removing images keeps the file,
    which is then extended (:func:`load_or_make_splits`).
    """
    params = dict(identity=identity or {}, val=val_fraction, test=test_fraction, seed=seed, official=use_official)
    key = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Path(directory) / f"splits-{key}.csv"


def split_identity(source_options: dict | None = None, synthetic: str | None = None) -> dict:
    """What names a dataset's data for :func:`split_path`: its source options and, for generated data,
    which synthetic miniature (``None`` for real data). Not the root folder: a real dataset copied
    elsewhere (scratch space, another mount) keeps its split."""
    return {"source_options": dict(source_options or {}), "synthetic": synthetic}


def group_draw(group_id: str, seed: int) -> float:
    """A number in [0, 1) fixed by ``(seed, group_id)``: where a group new to a saved split lands."""
    digest = hashlib.sha256(f"{seed}\x1f{group_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def extend_splits(
    table: pa.Table,
    saved: dict[str, SavedSample],
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    use_official: bool = True,
) -> list[str]:
    """The split of every row of ``table`` given the ``saved`` partition; no saved sample changes split.

    A sample in ``saved`` keeps its split (with an official split: as long as the publisher's split
    allows it, e.g. a saved ``val`` carved from official ``train``). A new sample joins its group's saved
    split; a new group lands by :func:`group_draw` against the fractions (``test`` below
    ``test_fraction``, then ``val``, else ``train``; with an official split only official ``train``
    rows are placed, in ``val`` below ``val_fraction``). The publisher's split itself always wins: a
    sample the publisher moved, or a ``val`` the publisher now defines, overrides the saved split.
    """
    ids = table.column("sample_id").to_pylist()
    groups = table.column("group_id").to_pylist()
    official = uses_official(table, use_official)
    publisher = table.column("official_split").to_pylist() if official else [None] * len(ids)
    publisher_val = official and "val" in set(publisher)
    placeable = {"train", "val"} if official else set(SPLITS)
    group_split: dict[str, str] = {}
    for s in saved.values():
        if s.split in placeable:
            group_split.setdefault(s.group_id, s.split)
    out = []
    for sid, group, pub in zip(ids, groups, publisher):
        before = saved.get(sid)
        if official and (pub != "train" or publisher_val):
            out.append(pub)
        elif before is not None and (not official or before.split in placeable):
            out.append(before.split)
        elif group in group_split:
            out.append(group_split[group])
        else:
            u = group_draw(group, seed)
            if official:
                out.append("val" if u < val_fraction else "train")
            else:
                out.append("test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train")
            group_split[group] = out[-1]
    return out


def _with_split(table: pa.Table, split: list[str]) -> pa.Table:
    column = pa.array(split, pa.string())
    if "split" in table.column_names:
        return table.set_column(table.column_names.index("split"), "split", column)
    return table.append_column("split", column)


def load_or_make_splits(
    table: pa.Table,
    directory: str | Path,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    use_official: bool = True,
    *,
    identity: dict | None = None,
    resplit: bool = False,
) -> tuple[pa.Table, Path]:
    """``table`` with its split from the dataset's split file (:func:`split_path`), made once and kept.

    No file yet (or ``resplit``): :func:`make_splits`, written to the file. A file: the source of truth;
    samples it lacks are placed by :func:`extend_splits` and added to it, samples it has keep their
    split, samples the table no longer has stay in the file (so a restored image gets its split back)
    but not in the table. A change to the file is announced on stderr. Our own split that puts a group
    in two splits (a saved sample whose group changed) is a :class:`DatasetError` asking for a resplit.
    """
    path = split_path(directory, identity, val_fraction, test_fraction, seed, use_official)
    official = uses_official(table, use_official)
    saved = {} if resplit or not path.exists() else read_split_file(path)
    if saved:
        out = _with_split(table, extend_splits(table, saved, val_fraction, test_fraction, seed, use_official))
    else:
        out = make_splits(table, val_fraction, test_fraction, seed, use_official)
    _check_leaks(out, official, str(path))
    current = table_samples(out)
    registry = {**saved, **current}
    if registry != saved:
        before = _previous(path) if resplit else saved
        write_split_file(path, registry)
        _announce(path, split_changes(before, current) if before else None, resplit)
    return out, path


def _previous(path: Path) -> dict[str, SavedSample]:
    """The split file a resplit replaces ({} if none or unreadable: a resplit is how to repair it)."""
    try:
        return read_split_file(path) if path.exists() else {}
    except DatasetError:
        return {}


def _announce(path: Path, changes: SplitChanges | None, resplit: bool) -> None:
    if changes is None:
        what = "written"
    elif resplit:
        what = f"regenerated (resplit): {changes.summary() or 'no sample moved'}"
    else:
        what = f"updated: {changes.summary()}; no saved sample changed split"
    print(f"split file {path} {what}", file=sys.stderr, flush=True)
