"""Clinical metadata -> float vector, fitted on the training split only (DESIGN data flow step 3).

Every feature becomes a contiguous block of columns ending in an explicit ``<name>=missing``
indicator: categorical -> one-hot over the categories seen in training, compound values
(``OVAL-LYMPH_NODE``) -> multi-hot, numeric -> standardised value (0 where missing). Values never
seen in training count as missing. The blocks' widths (:attr:`TabularEncoder.group_widths`) let a
model make one token per clinical feature. Columns that leak the label are refused unless asked for.

``soft_one_hot=eps`` (> 0) writes the zeros of every categorical / multi-hot block (its missing
indicator included) as ``eps`` instead: a "soft" one-hot. ViTAtt's summary names a "Soft one-hot
encoding" of the raw metadata without defining it; this is the reading of Cai et al. (Visual
Computer 2022, "soft label encoder": the zeros of a one-hot vector replaced by a small value), offered
as an option, default off. Numeric blocks are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import META_PREFIX
from dermfuse_data.sources.base import DatasetSource, MetaFeature


def select_features(
    source: DatasetSource, names: Sequence[str] | str | None = "all", allow_leaky: bool = False
) -> list[MetaFeature]:
    """The features to encode: ``"all"`` (every non-leaking one), ``None``/``[]`` (none) or names.

    Naming a label-leaking feature (e.g. CBIS-DDSM ``assessment``) without ``allow_leaky`` raises
    with the reason, because a model fed it learns the radiologist's call, not the image.
    """
    if names is None or (not isinstance(names, str) and len(names) == 0):
        return []
    if isinstance(names, str):
        if names != "all":
            names = [names]
        else:
            return [f for f in source.features if allow_leaky or not f.leaks_label]
    chosen = []
    for name in names:
        try:
            feature = source.feature(name)
        except KeyError as err:
            raise DatasetError(
                str(err.args[0]), path=f"{source.name} metadata", hint="fix the meta_features list in your config"
            ) from None
        if feature.leaks_label and not allow_leaky:
            raise DatasetError(
                f"metadata feature {name!r} leaks the label: {feature.why_leaks or 'it encodes the diagnosis'}",
                path=f"{source.name} metadata",
                hint="drop it from meta_features, or set allow_leaky_metadata=true to study the leak",
            )
        chosen.append(feature)
    return chosen


@dataclass
class FeatureBlock:
    """A fitted feature: its columns (``name=value`` ..., ``name=missing``) and numeric stats."""

    name: str
    column: str
    kind: str
    categories: list[str]
    mean: float = 0.0
    std: float = 1.0
    missing_tokens: tuple[str, ...] = ()
    separator: str = "-"

    @property
    def width(self) -> int:
        return (1 if self.kind == "numeric" else len(self.categories)) + 1

    @property
    def column_names(self) -> list[str]:
        values = [self.name] if self.kind == "numeric" else [f"{self.name}={c}" for c in self.categories]
        return values + [f"{self.name}=missing"]


def parse_numbers(cells: list[str | None]) -> tuple[np.ndarray, list[int]]:
    """Cells as floats (NaN where ``None``) and the indices of the cells that are not numbers."""
    out, bad = np.full(len(cells), np.nan), []
    for i, v in enumerate(cells):
        if v is None:
            continue
        try:
            out[i] = float(v)
        except ValueError:
            bad.append(i)
    return out, bad


class TabularEncoder:
    """Encodes ``meta_*`` columns of the common table into a float32 matrix (see module doc).

    Args:
        features: the features to encode, in column order.
        soft_one_hot: value of the "off" cells of categorical / multi-hot blocks (0 = plain one-hot).
    """

    def __init__(self, features: Sequence[MetaFeature], soft_one_hot: float = 0.0):
        if not 0.0 <= soft_one_hot < 1.0:
            raise ValueError(
                f"soft_one_hot must be in [0, 1) (the value of a one-hot block's zeros), got {soft_one_hot}"
            )
        self.features = list(features)
        self.soft_one_hot = float(soft_one_hot)
        self.blocks: list[FeatureBlock] = []

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _cells(table: pa.Table, feature: MetaFeature) -> list[str | None]:
        name = META_PREFIX + feature.column
        if name not in table.column_names:
            raise DatasetError(
                f"metadata column {feature.column!r} (feature {feature.name!r}) is absent",
                path="sample table",
                hint="check the dataset's metadata file headers",
            )
        missing = set(feature.missing)
        return [None if v is None or v.strip() in missing else v.strip() for v in table.column(name).to_pylist()]

    @staticmethod
    def _numbers(cells: list[str | None], feature: MetaFeature) -> np.ndarray:
        out, bad = parse_numbers(cells)
        if bad:
            raise DatasetError(
                f"column {feature.column!r} holds {cells[bad[0]]!r}, not a number",
                row=bad[0] + 1,
                path="metadata",
                hint="fix the cell or mark it missing",
            )
        return out

    @classmethod
    def non_numbers(cls, table: pa.Table, feature: MetaFeature) -> list[tuple[int, str]]:
        """``(row, cell)`` of every cell of numeric ``feature`` that is neither missing nor a number."""
        cells = cls._cells(table, feature)
        return [(i, cells[i]) for i in parse_numbers(cells)[1]]

    @staticmethod
    def _tokens(value: str | None, feature: MetaFeature) -> list[str]:
        if value is None:
            return []
        if feature.kind == "multi":
            return [t for t in value.split(feature.separator) if t]
        return [value]

    # -- API -----------------------------------------------------------------------------------
    def fit(self, table: pa.Table) -> TabularEncoder:
        """Learn categories and numeric mean/std from ``table`` (pass the training split only)."""
        self.blocks = []
        for f in self.features:
            cells = self._cells(table, f)
            block = FeatureBlock(f.name, f.column, f.kind, [], missing_tokens=tuple(f.missing), separator=f.separator)
            if f.kind == "numeric":
                x = self._numbers(cells, f)
                if np.isfinite(x).any():
                    block.mean = float(np.nanmean(x))
                    block.std = float(np.nanstd(x)) or 1.0
            else:
                block.categories = sorted({t for v in cells for t in self._tokens(v, f)})
            self.blocks.append(block)
        return self

    def transform(self, table: pa.Table) -> np.ndarray:
        """The (rows, :attr:`width`) float32 matrix; unseen categories count as missing."""
        if len(self.blocks) != len(self.features):
            raise RuntimeError("TabularEncoder.transform called before fit")
        parts = []
        for f, block in zip(self.features, self.blocks):
            cells = self._cells(table, f)
            out = np.zeros((len(cells), block.width), dtype=np.float32)
            if f.kind == "numeric":
                x = self._numbers(cells, f)
                ok = np.isfinite(x)
                out[ok, 0] = (x[ok] - block.mean) / block.std
                out[~ok, 1] = 1.0
            else:
                out[:] = self.soft_one_hot
                index = {c: j for j, c in enumerate(block.categories)}
                for i, v in enumerate(cells):
                    hits = [index[t] for t in self._tokens(v, f) if t in index]
                    if hits:
                        out[i, hits] = 1.0
                    else:
                        out[i, -1] = 1.0
            parts.append(out)
        if not parts:
            return np.zeros((len(table), 0), dtype=np.float32)
        return np.concatenate(parts, axis=1)

    def fit_transform(self, table: pa.Table) -> np.ndarray:
        """:meth:`fit` then :meth:`transform` on the same table."""
        return self.fit(table).transform(table)

    @property
    def group_widths(self) -> list[int]:
        """Width of each feature's block, in order (one model token per entry)."""
        return [b.width for b in self.blocks]

    @property
    def off_values(self) -> list[float]:
        """Per block, the value of a cell that is not set: ``soft_one_hot`` for one-hot blocks, 0 for numeric ones."""
        return [0.0 if b.kind == "numeric" else self.soft_one_hot for b in self.blocks]

    @property
    def feature_names(self) -> list[str]:
        """Clinical feature names, one per block."""
        return [b.name for b in self.blocks]

    @property
    def column_names(self) -> list[str]:
        """Name of every encoded column (``age``, ``sex=female``, ``sex=missing`` ...)."""
        return [c for b in self.blocks for c in b.column_names]

    @property
    def width(self) -> int:
        """Total number of encoded columns."""
        return sum(self.group_widths)

    def state_dict(self) -> dict:
        """JSON-serialisable fitted state (saved in checkpoints by the DataModule)."""
        return {"blocks": [asdict(b) for b in self.blocks]}

    def load_state_dict(self, state: dict) -> None:
        """Restore a fitted state from :meth:`state_dict`."""
        self.blocks = [FeatureBlock(**{**b, "missing_tokens": tuple(b["missing_tokens"])}) for b in state["blocks"]]
