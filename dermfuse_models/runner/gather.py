"""Per-sample records of ``Trainer.predict`` from every rank, in the dataset's order, each sample exactly once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch


def per_sample(outputs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict per sample from the per-batch outputs (tensors -> numpy rows)."""
    records = []
    for out in outputs:
        for i, sample_id in enumerate(out["sample_id"]):
            record = {"sample_id": sample_id}
            for key, value in out.items():
                if key == "sample_id":
                    continue
                item = value[i]
                record[key] = item.numpy() if isinstance(item, torch.Tensor) else item
            records.append(record)
    return records


def gathered_records(trainer: pl.Trainer, outputs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every rank's per-sample records (:func:`per_sample` of its batch outputs), on every rank."""
    records = per_sample(outputs)
    if trainer.world_size <= 1 or not torch.distributed.is_initialized():
        return records
    parts: list[Any] = [None] * trainer.world_size
    torch.distributed.all_gather_object(parts, records)
    return [r for part in parts for r in part]


def in_dataset_order(records: list[dict[str, Any]], sample_ids: Sequence[str]) -> list[dict[str, Any]]:
    """``records`` ordered as ``sample_ids``; a sample predicted twice, never, or unknown is a ``RuntimeError``."""
    counts = Counter(r["sample_id"] for r in records)
    twice = sorted(s for s, n in counts.items() if n > 1)
    never = [s for s in sample_ids if s not in counts]
    unknown = sorted(set(counts) - set(sample_ids))
    if twice or never or unknown:
        raise RuntimeError(
            f"predictions do not cover each sample exactly once: {len(twice)} twice (e.g. {twice[:3]}), "
            f"{len(never)} missing (e.g. {never[:3]}), {len(unknown)} unknown; a distributed sampler padded "
            "or dropped samples (use Lightning's UnrepeatedDistributedSampler for evaluation)"
        )
    by_id = {r["sample_id"]: r for r in records}
    return [by_id[s] for s in sample_ids]


def stacked(records: Sequence[dict[str, Any]], key: str) -> np.ndarray:
    """``records[i][key]`` stacked into one array."""
    return np.stack([np.asarray(r[key]) for r in records]) if records else np.zeros((0,))
