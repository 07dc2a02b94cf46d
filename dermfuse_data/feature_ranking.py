"""Rank clinical features by their correlation with the diagnosis, on the training split only.

ViTAtt (arXiv 2304.14505) selects metadata features by correlation with the diagnostic label,
paper: "Using the correlation coefficient computed on the training set between all metadata labels
and the diagnostic label"; the 5-feature arm is suggested: "train with HC-5 metadata subset". This
module is that ranking; the DataModule uses it for ``meta_features: top<K>`` (e.g. ``top5``).

Definition (the paper does not give one for a multi-class label; this is the standard reading):
each feature is encoded with a :class:`~dermfuse_data.tabular.TabularEncoder` fitted on the
training rows (one-hot / multi-hot categories, standardised numbers); its score is the largest
absolute Pearson correlation between any of its value columns and any one-vs-rest class
indicator. The explicit missing-value indicator column is left out (a feature is ranked by its
values; a row where it is missing has 0 in every value column, as the encoder writes it). Constant
columns score 0. Ties keep the source's feature order (stable sort): the ranking is deterministic,
so every DDP rank and every rerun on the same split picks the same features.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from dermfuse_data.sources.base import MetaFeature
from dermfuse_data.tabular import TabularEncoder

_TOP_K = re.compile(r"^top(\d+)$")


def parse_top_k(meta_features: object) -> int | None:
    """``K`` if ``meta_features`` is the string ``"top<K>"`` (K >= 1), else ``None``."""
    if not isinstance(meta_features, str):
        return None
    found = _TOP_K.match(meta_features.strip().lower())
    if not found:
        return None
    k = int(found.group(1))
    if k < 1:
        raise ValueError(f"meta_features={meta_features!r}: K in top<K> must be at least 1")
    return k


def _abs_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """|Pearson r| between every column of ``x`` (N, A) and every column of ``y`` (N, B) -> (A, B)."""
    xc = x - x.mean(axis=0, keepdims=True)
    yc = y - y.mean(axis=0, keepdims=True)
    xs = np.sqrt((xc**2).sum(axis=0))
    ys = np.sqrt((yc**2).sum(axis=0))
    denom = np.outer(xs, ys)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom > 0, (xc.T @ yc) / np.where(denom > 0, denom, 1.0), 0.0)
    return np.abs(r)


def rank_features_by_label_correlation(
    train_table: pa.Table, features: Sequence[MetaFeature], num_classes: int | None = None
) -> list[tuple[str, float]]:
    """``[(feature name, score), ...]`` best first, computed on ``train_table`` only (see module doc).

    Args:
        train_table: rows of the TRAINING split in the common schema (``label`` + ``meta_*``).
            Passing validation or test rows here would leak them into feature selection.
        features: candidate features (e.g. every non-leaking feature of the source).
        num_classes: number of classes (default ``max(label) + 1``).
    """
    if len(train_table) == 0:
        raise ValueError("rank_features_by_label_correlation needs at least one training row")
    labels = np.asarray(train_table.column("label").to_pylist(), dtype=np.int64)
    k = int(num_classes if num_classes is not None else labels.max() + 1)
    onehot = np.eye(k, dtype=np.float64)[labels]
    encoder = TabularEncoder(features).fit(train_table)
    encoded = encoder.transform(train_table).astype(np.float64)
    scores, start = [], 0
    for feature, block in zip(features, encoder.blocks, strict=True):
        values = encoded[:, start : start + block.width - 1]  # drop the missing indicator
        start += block.width
        score = float(_abs_pearson(values, onehot).max()) if values.shape[1] else 0.0
        scores.append((feature.name, score))
    order = sorted(range(len(scores)), key=lambda i: -scores[i][1])
    return [scores[i] for i in order]
