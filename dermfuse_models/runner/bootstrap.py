"""Grouped bootstrap confidence intervals of test metrics (``scipy.stats.bootstrap`` over group indices).

The unit resampled is the dataset's group (``group_id``: patient for PAD-UFES-20 and CBIS-DDSM, lesion
for HAM10000 / ISIC 2019, the image where a dataset has no grouping): images of one patient or lesion
are not independent, so drawing images one by one would make intervals too narrow. ``scipy.stats.bootstrap``
draws group indices (``n_resamples`` resamples, seeded); the statistic turns each resample into a weight
per sample (how often its group was drawn) and recomputes every metric on it at once
(:mod:`dermfuse_models.runner.weighted_metrics`). Intervals are percentile intervals by default (``BCa``
on request), over the resamples where a metric is defined (a per-class recall needs the class present).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import DegenerateDataWarning, bootstrap

from dermfuse_models.runner.weighted_metrics import Evaluate

N_RESAMPLES = 1000
CONFIDENCE = 0.95
METHOD = "percentile"
SEED = 0
#: resamples per vectorised call (memory ~ batch x samples x 8 bytes per array)
BATCH = 250


@dataclass
class Intervals:
    """Bootstrap intervals of several metrics over the same resamples."""

    intervals: dict[str, tuple[float, float]]
    n_groups: int
    n_samples: int
    n_resamples: int
    confidence: float
    method: str
    seed: int

    def describe(self) -> dict:
        """How the intervals were made, for ``metrics.json`` (``ci_method``)."""
        return {
            "method": self.method,
            "confidence": self.confidence,
            "resamples": self.n_resamples,
            "seed": self.seed,
            "unit": "group_id",
            "groups": self.n_groups,
            "samples": self.n_samples,
        }


def resample_weights(group_draws: np.ndarray, sample_group: np.ndarray, n_groups: int) -> np.ndarray:
    """``(B, G)`` drawn group indices -> ``(B, N)`` weight per sample: how often its group was drawn."""
    draws = np.atleast_2d(group_draws).astype(np.int64)
    offsets = np.arange(draws.shape[0])[:, None] * n_groups
    counts = np.bincount((draws + offsets).ravel(), minlength=draws.shape[0] * n_groups)
    return counts.reshape(draws.shape[0], n_groups)[:, sample_group].astype(np.float64)


def grouped_bootstrap(
    evaluate: Evaluate,
    groups: Sequence,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    method: str = METHOD,
    seed: int = SEED,
    batch: int = BATCH,
) -> Intervals:
    """Intervals of every metric ``evaluate`` returns, resampling whole ``groups`` (one id per sample).

    ``evaluate(weights (B, N)) -> {key: (B,)}`` (``weighted_metrics``); ``groups`` in the samples' order.
    A metric undefined on some resamples (NaN) gets the interval of the others; one never defined gets
    ``(nan, nan)``.
    """
    group_ids = np.asarray(groups)
    _, sample_group = np.unique(group_ids, return_inverse=True)
    sample_group = sample_group.ravel()
    n_groups = int(sample_group.max()) + 1 if sample_group.size else 0
    if n_groups < 2:
        raise ValueError(f"a bootstrap needs at least 2 groups, got {n_groups} (samples: {group_ids.size})")
    keys = list(evaluate(np.ones((1, group_ids.size))))

    def statistic(draws: np.ndarray, axis: int = -1) -> np.ndarray:
        values = evaluate(resample_weights(draws, sample_group, n_groups))
        stacked = np.stack([values[k] for k in keys])  # (metrics, B)
        return stacked[:, 0] if np.ndim(draws) == 1 else stacked

    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)  # NaN resamples: handled below
        result = bootstrap(
            (np.arange(n_groups),),
            statistic,
            n_resamples=n_resamples,
            confidence_level=confidence,
            method=method,
            vectorized=True,
            batch=batch,
            rng=np.random.default_rng(seed),
        )
    low, high = np.atleast_1d(result.confidence_interval.low), np.atleast_1d(result.confidence_interval.high)
    distribution = np.atleast_2d(result.bootstrap_distribution)
    alpha = (1 - confidence) / 2
    intervals = {}
    for i, key in enumerate(keys):
        lo, hi = float(low[i]), float(high[i])
        if np.isnan(lo) or np.isnan(hi):
            defined = distribution[i][~np.isnan(distribution[i])]
            if defined.size:
                lo, hi = (float(q) for q in np.quantile(defined, [alpha, 1 - alpha]))
        intervals[key] = (lo, hi)
    return Intervals(intervals, n_groups, int(group_ids.size), n_resamples, confidence, method, seed)


def mean_of(evaluators: Sequence[Evaluate]) -> Evaluate:
    """The evaluator of the metric averaged over several runs (seeds) scored on the same resample.

    Every evaluator must describe the same samples in the same order (the test split shared by the
    seeds of one comparison), so one drawn resample weighs each run's predictions alike.
    """

    def evaluate(weights: np.ndarray) -> dict[str, np.ndarray]:
        values = [e(weights) for e in evaluators]
        return {k: np.mean([v[k] for v in values], axis=0) for k in values[0] if all(k in v for v in values)}

    return evaluate
