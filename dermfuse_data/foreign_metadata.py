"""Encode metadata a model was not trained on (another dataset, a user's CSV) with the training encoder.

The fitted :class:`~dermfuse_data.tabular.TabularEncoder` of a run is strict about its own dataset
(an absent column or a non-number is an error there). Here every such gap is encoded exactly as a
missing value (the feature's block zero, its missing indicator set) and reported, so the user sees
what the model did not get: features whose column is absent, values never seen in training,
numeric cells that are not numbers, and columns no feature reads.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from dermfuse_data.schema import META_PREFIX
from dermfuse_data.tabular import TabularEncoder, parse_numbers


@dataclass
class MetadataReport:
    """What :func:`encode_like_training` could not use, per feature (all of it encoded as missing)."""

    absent: list[str] = field(default_factory=list)
    unseen_values: dict[str, dict[str, int]] = field(default_factory=dict)
    not_numbers: dict[str, dict[str, int]] = field(default_factory=dict)
    unused_columns: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report as lines for the terminal (empty when everything was used)."""
        out = []
        if self.absent:
            out.append(f"features the model reads but the data lacks (encoded as missing): {self.absent}")
        for what, table in (("values not seen in training", self.unseen_values), ("not numbers", self.not_numbers)):
            for name, counts in table.items():
                shown = ", ".join(f"{v!r} x{n}" for v, n in list(counts.items())[:8])
                out.append(f"{name}: {what} (encoded as missing): {shown}{' ...' if len(counts) > 8 else ''}")
        if self.unused_columns:
            out.append(f"columns the model does not read: {self.unused_columns}")
        return out

    def as_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "absent_features": self.absent,
            "unseen_values": self.unseen_values,
            "not_numbers": self.not_numbers,
            "unused_columns": self.unused_columns,
        }


def encode_like_training(encoder: TabularEncoder, table: pa.Table) -> tuple[np.ndarray, MetadataReport]:
    """``encoder.transform`` of ``table`` (raw ``meta_*`` columns) with every gap encoded as missing.

    Returns the ``(rows, encoder.width)`` matrix and the :class:`MetadataReport`.
    """
    report = MetadataReport()
    read = {META_PREFIX + f.column for f in encoder.features}
    report.unused_columns = [
        c[len(META_PREFIX) :] for c in table.column_names if c.startswith(META_PREFIX) and c not in read
    ]
    for feature, block in zip(encoder.features, encoder.blocks):
        name = META_PREFIX + feature.column
        if name not in table.column_names:
            report.absent.append(feature.name)
            table = table.append_column(name, pa.array([None] * len(table), pa.string()))
            continue
        cells = TabularEncoder._cells(table, feature)
        if feature.kind == "numeric":
            bad = parse_numbers(cells)[1]
            if bad:
                report.not_numbers[feature.name] = dict(Counter(cells[i] for i in bad))
                keep = set(bad)
                column = [None if i in keep else v for i, v in enumerate(table.column(name).to_pylist())]
                table = table.set_column(table.column_names.index(name), name, pa.array(column, pa.string()))
            continue
        known = set(block.categories)
        tokens = [t for v in cells if v is not None for t in TabularEncoder._tokens(v, feature)]
        unseen = Counter(t for t in tokens if t not in known)
        if unseen:
            report.unseen_values[feature.name] = dict(unseen.most_common())
    return encoder.transform(table), report
