"""``python -m dermfuse_data split --dataset NAME [--root DIR] [--out FILE.csv]``: a dataset's partition as a CSV.

The split is the one training uses: the DataModule's (:meth:`DermDataModule.table
<dermfuse_data.datamodule.DermDataModule.table>`), read from or written to the split file next to the
cache, so the exported file is the partition every paper and rerun with these settings trains on.
Columns: ``sample_id, group, label, label_name, split``, one row per sample in the source's order.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pyarrow as pa

from dermfuse_data.storage import atomic_write_text

#: the exported columns and the table column each comes from
EXPORT_COLUMNS = {"sample_id": "sample_id", "group": "group_id", "label": "label", "label_name": "label_name"}


def write_split_csv(table: pa.Table, path: str | Path) -> Path:
    """Write ``table``'s partition (it has a ``split`` column) to ``path`` atomically; returns the path."""
    columns = [table.column(c).to_pylist() for c in [*EXPORT_COLUMNS.values(), "split"]]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow([*EXPORT_COLUMNS, "split"])
    writer.writerows(zip(*columns))
    return atomic_write_text(path, text.getvalue())


def export_split(
    dataset: str,
    out: str | Path | None,
    root: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    use_official_split: bool = True,
    options: dict | None = None,
    resplit: bool = False,
    cache_dir: str | None = None,
) -> tuple[Path | None, pa.Table, Path]:
    """The partition the DataModule with these settings trains on, written to ``out`` unless ``None``;
    ``(out, table, split file)``.

    ``root=None`` is the synthetic miniature (its banner says so). The arguments mean what the
    DataModule's do (``data.seed``, ``data.val_fraction``, ``data.resplit``, ...): pass a run's values to
    get its split.
    """
    from dermfuse_data.datamodule import DermDataModule

    dm = DermDataModule(
        dataset,
        root=root,
        meta_features=None,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        use_official_split=use_official_split,
        source_options=options or None,
        resplit=resplit,
        cache_dir=cache_dir,
    )
    table = dm.table
    return (write_split_csv(table, out) if out else None), table, dm.split_file
