"""A comparison's numbers: mean +- s.d. over its seeds and a 95% CI of that mean.

The CI resamples the test groups once per bootstrap draw and scores every seed's predictions
(``test_predictions.csv``) on the same draw, averaging over seeds (:func:`~dermfuse_models.runner.bootstrap.mean_of`):
the interval of the seed-averaged metric under test-set sampling. The s.d. over seeds is the spread due
to training randomness (initialisation, augmentation, batch order). With one seed the CI is the run's own
``ci95`` from ``metrics.json`` when its predictions file is missing.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dermfuse_models.runner.bootstrap import grouped_bootstrap, mean_of
from dermfuse_models.runner.report_runs import Comparison
from dermfuse_models.runner.test_predictions import PREDICTIONS_CSV, read_test_predictions
from dermfuse_models.runner.weighted_metrics import evaluator_for


@dataclass
class MetricStats:
    """One metric of one comparison."""

    values: list[float]
    ci: tuple[float, float] | None
    ci_note: str = ""

    @property
    def n(self) -> int:
        """How many seeds have the metric."""
        return len(self.values)

    @property
    def mean(self) -> float:
        """Mean over seeds."""
        return statistics.fmean(self.values)

    @property
    def sd(self) -> float | None:
        """Sample standard deviation over seeds (``None`` for one seed)."""
        return statistics.stdev(self.values) if self.n > 1 else None


def _ece_bins(config: dict) -> int:
    return int(((config.get("model") or {}).get("init_args") or {}).get("ece_bins", 15))


def seed_mean_intervals(comparison: Comparison) -> tuple[dict[str, tuple[float, float]], str]:
    """Bootstrap CIs of the seed mean of every metric, and a note ('' when fine) saying why there are none."""
    missing = [r.name for r in comparison.runs if not (r.folder / PREDICTIONS_CSV).is_file()]
    if missing:
        return {}, f"no {PREDICTIONS_CSV} in {missing[0]}"
    loaded = [read_test_predictions(r.folder / PREDICTIONS_CSV) for r in comparison.runs]
    first_ids, first_groups = loaded[0][0]["sample_id"], loaded[0][1]
    order = {sid: i for i, sid in enumerate(first_ids)}
    evaluators = []
    for run, (predictions, _, class_names) in zip(comparison.runs, loaded, strict=True):
        if set(predictions["sample_id"]) != set(order):
            return {}, f"{run.name} was tested on other samples than {comparison.runs[0].name}"
        position = np.argsort([order[s] for s in predictions["sample_id"]])
        aligned = {k: v[position] for k, v in predictions.items()}
        evaluators.append(evaluator_for(aligned, class_names, _ece_bins(run.config)))
    result = grouped_bootstrap(mean_of(evaluators), first_groups)
    return {f"test/{k}": v for k, v in result.intervals.items()}, ""


def comparison_stats(comparison: Comparison, keys: Sequence[str]) -> dict[str, MetricStats]:
    """:class:`MetricStats` of each of ``keys`` some run of the comparison logged."""
    intervals, note = seed_mean_intervals(comparison)
    out = {}
    for key in keys:
        values = [float(r.summary["test"][key]) for r in comparison.runs if key in (r.summary.get("test") or {})]
        if not values:
            continue
        ci = intervals.get(key)
        if ci is None and len(comparison.runs) == 1:
            own = (comparison.runs[0].summary.get("ci95") or {}).get(key)
            ci = tuple(own) if own else None
        if ci is not None and not np.isfinite(ci).all():
            ci = None
        out[key] = MetricStats(values, ci, "" if ci else (note or "no interval"))
    return out
