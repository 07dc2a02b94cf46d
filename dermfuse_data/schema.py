"""The common sample table every dataset source returns (``../shared/DESIGN.md``, data flow step 1).

One ``pyarrow.Table`` per dataset with the columns below; raw metadata stays raw (strings as the
publisher wrote them, prefixed ``meta_``) and is encoded later by :mod:`dermfuse_data.tabular`.

=================  ==========  =====================================================================
column             type        meaning
=================  ==========  =====================================================================
sample_id          string      publisher's image id, unique within the dataset
image_path         string      absolute path of the image file (JPEG/PNG/BMP/DICOM)
mask_path          string      absolute path of the lesion mask, null where the dataset has none
label              int64       class index into the source's ``CLASSES``
label_name         string      class name as the publisher writes it
group_id           string      unit that must never cross splits (lesion or patient)
official_split     string      ``train``/``val``/``test`` where the publisher defines one, else null
meta_<column>      string      raw metadata cell, null where the publisher left it missing
=================  ==========  =====================================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from dermfuse_data.errors import DatasetError

CORE_FIELDS: list[pa.Field] = [
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("image_path", pa.string(), nullable=False),
    pa.field("mask_path", pa.string()),
    pa.field("label", pa.int64(), nullable=False),
    pa.field("label_name", pa.string(), nullable=False),
    pa.field("group_id", pa.string(), nullable=False),
    pa.field("official_split", pa.string()),
]
CORE_COLUMNS = [f.name for f in CORE_FIELDS]
META_PREFIX = "meta_"
SPLITS = ("train", "val", "test")


def sample_row(
    sample_id: str,
    image_path: Any,
    label: int,
    classes: Sequence[str],
    group_id: str | None = None,
    mask_path: Any = None,
    official_split: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> dict:
    """One row of the common table: ``label_name`` from ``classes``, ``group_id`` defaulting to the sample itself.

    ``meta``: raw metadata cells, keyed ``meta_<column>`` or ``<column>`` (:func:`build_table` takes either).
    """
    return {
        "sample_id": sample_id,
        "image_path": str(image_path),
        "label": int(label),
        "label_name": classes[label],
        "group_id": sample_id if group_id is None else group_id,
        "mask_path": None if mask_path is None else str(mask_path),
        "official_split": official_split,
        **(meta or {}),
    }


def build_table(rows: Iterable[Mapping[str, Any]], meta_columns: Iterable[str] = ()) -> pa.Table:
    """Build the common table from row dicts; ``meta_columns`` are raw names (prefix added here).

    Missing core keys default to null (``mask_path``, ``official_split``); metadata values are kept
    as strings (``None`` for missing).
    """
    meta_columns = list(meta_columns)
    rows = list(rows)
    columns: dict[str, list] = {name: [] for name in CORE_COLUMNS}
    for name in meta_columns:
        columns[META_PREFIX + name] = []
    for row in rows:
        for name in CORE_COLUMNS:
            columns[name].append(row.get(name))
        for name in meta_columns:
            value = row.get(META_PREFIX + name, row.get(name))
            columns[META_PREFIX + name].append(None if value is None else str(value))
    fields = CORE_FIELDS + [pa.field(META_PREFIX + n, pa.string()) for n in meta_columns]
    return pa.table(columns, schema=pa.schema(fields))


def validate_table(table: pa.Table, source: str = "table") -> None:
    """Raise :class:`DatasetError` if ``table`` lacks a core column or has duplicate sample ids."""
    missing = [c for c in CORE_COLUMNS if c not in table.column_names]
    if missing:
        raise DatasetError(f"sample table lacks columns {missing}", path=source)
    ids = table.column("sample_id").to_pylist()
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dupes = sorted({i for i in ids if i in seen or seen.add(i)})
        raise DatasetError(
            f"duplicate sample ids {dupes[:5]}{'...' if len(dupes) > 5 else ''}",
            path=source,
            hint="each image must be listed once; remove the repeated rows",
        )


def meta_columns(table: pa.Table) -> list[str]:
    """Raw metadata column names (without the ``meta_`` prefix) present in ``table``."""
    return [c[len(META_PREFIX) :] for c in table.column_names if c.startswith(META_PREFIX)]
