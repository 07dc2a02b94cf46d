"""Per-sample test outputs of a task, kept over the test epoch and gathered from every DDP rank.

They are what a reviewer needs to recompute any statistic on the same predictions: the runner turns
them into ``test_predictions.csv`` and grouped bootstrap intervals (``dermfuse_models.runner.bootstrap``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist


class TestPredictionLog:
    """Per-sample arrays (``sample_id`` plus named columns) accumulated batch by batch.

    :meth:`add` takes the batch's ``sample_id`` list and ``(B, ...)`` tensors; :meth:`gather` returns
    ``{"sample_id": (N,) str, <column>: (N, ...) array}`` over all ranks, each sample once (Lightning's
    distributed sampler repeats a few samples to even out the ranks), or ``None`` when a batch had no
    ``sample_id`` (samples cannot then be matched to their groups).
    """

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything recorded."""
        self._ids: list[str] = []
        self._columns: dict[str, list[np.ndarray]] = defaultdict(list)
        self._complete = True

    def add(self, sample_ids: Sequence[str] | None, **columns: torch.Tensor) -> None:
        """Record one batch: its sample ids and a ``(B, ...)`` tensor per column."""
        if sample_ids is None:
            self._complete = False
            return
        self._ids += [str(s) for s in sample_ids]
        for name, value in columns.items():
            self._columns[name].append(value.detach().float().cpu().numpy())

    def local(self) -> dict[str, np.ndarray] | None:
        """This rank's records (``None`` when incomplete or empty)."""
        if not self._complete or not self._ids:
            return None
        return {"sample_id": np.asarray(self._ids), **{k: np.concatenate(v) for k, v in self._columns.items()}}

    def gather(self) -> dict[str, np.ndarray] | None:
        """Every rank's records, merged, each sample id once (collective under DDP: call on every rank)."""
        parts = [self.local()]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts = [None] * dist.get_world_size()
            dist.all_gather_object(parts, self.local())
        if any(p is None for p in parts):
            return None
        merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        _, first = np.unique(merged["sample_id"], return_index=True)
        keep = np.sort(first)
        return {k: v[keep] for k, v in merged.items()}
