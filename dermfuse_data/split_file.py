"""The split CSV (``sample_id,group_id,label,split``): the dataset's saved partition and each run's copy.

One format for both: the dataset's split file next to the cache (:func:`~dermfuse_data.splits.load_or_make_splits`,
the source of truth once written) and ``<run>/split.csv``, the partition a run trained on. :func:`split_changes`
compares a saved split with a table's, so a resumed run can refuse data that changed under it.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import SPLITS
from dermfuse_data.storage import atomic_write_text

COLUMNS = ("sample_id", "group_id", "label", "split")


@dataclass(frozen=True)
class SavedSample:
    """One row of a split file."""

    group_id: str
    label: int
    split: str


def read_split_file(path: str | Path) -> dict[str, SavedSample]:
    """``{sample_id: SavedSample}`` from a split CSV; a file of another shape is a :class:`DatasetError`."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"cannot read the split file ({err})", path=path, hint=_REDO_HINT) from None
    out: dict[str, SavedSample] = {}
    for i, row in enumerate(rows, start=2):
        split, sid, group = row.get("split"), row.get("sample_id"), row.get("group_id")
        if sid is None or group is None or split not in SPLITS:
            raise DatasetError(
                f"expected columns {','.join(COLUMNS)} with split one of {SPLITS}, got {row}",
                path=path,
                row=i,
                hint=_REDO_HINT,
            )
        try:
            label = int(row["label"])
        except (TypeError, ValueError):
            raise DatasetError(f"label {row['label']!r} is not an integer", path=path, row=i, hint=_REDO_HINT) from None
        out[sid] = SavedSample(group, label, split)
    return out


_REDO_HINT = "restore the file, or regenerate the split (data.resplit=true, or python -m dermfuse_data split --resplit)"


def table_samples(table: pa.Table) -> dict[str, SavedSample]:
    """``{sample_id: SavedSample}`` of a table with a ``split`` column."""
    columns = [table.column(c).to_pylist() for c in COLUMNS]
    return {sid: SavedSample(str(g), int(lab), s) for sid, g, lab, s in zip(*columns)}


def write_split_file(path: str | Path, samples: dict[str, SavedSample]) -> Path:
    """Write ``samples`` as a split CSV at ``path`` (atomic, group-readable; see :mod:`dermfuse_data.storage`)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    for sid, s in samples.items():
        writer.writerow((sid, s.group_id, s.label, s.split))
    return atomic_write_text(path, text.getvalue())


@dataclass
class SplitChanges:
    """How a table's samples differ from a saved split (sample ids per kind of change)."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    relabelled: list[str] = field(default_factory=list)
    regrouped: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any((self.added, self.removed, self.moved, self.relabelled, self.regrouped))

    def summary(self, examples: int = 3) -> str:
        """``2 added (ISIC_1, ISIC_2), 1 moved split (ISIC_7)``; empty when nothing changed."""
        parts = []
        for name, ids in (
            ("added", self.added),
            ("removed", self.removed),
            ("moved to another split", self.moved),
            ("relabelled", self.relabelled),
            ("moved to another group", self.regrouped),
        ):
            if ids:
                shown = ", ".join(ids[:examples]) + (", ..." if len(ids) > examples else "")
                parts.append(f"{len(ids)} {name} ({shown})")
        return "; ".join(parts)


def split_changes(saved: dict[str, SavedSample], current: dict[str, SavedSample]) -> SplitChanges:
    """What changed from ``saved`` to ``current`` (both ``{sample_id: SavedSample}``)."""
    changes = SplitChanges(added=[s for s in current if s not in saved], removed=[s for s in saved if s not in current])
    for sid, now in current.items():
        before = saved.get(sid)
        if before is None:
            continue
        if before.split != now.split:
            changes.moved.append(sid)
        if before.label != now.label:
            changes.relabelled.append(sid)
        if before.group_id != now.group_id:
            changes.regrouped.append(sid)
    return changes
