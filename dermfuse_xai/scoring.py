"""Score the heatmaps of one chunk: localisation, deletion faithfulness, model randomisation; and their means.

Per image and map (:func:`score_maps`): ``energy_in_mask``, ``pointing_hit`` and their chance level
``mask_fraction`` (images with masks; :mod:`dermfuse_xai.metrics`), ``deletion_auc`` /
``deletion_auc_random`` / ``deletion_auc_gain`` (the curve tracks the chunk's score functions), and
``randomization_spearman`` (against the same map of the re-initialised model, :mod:`dermfuse_xai.sanity`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from dermfuse_xai.metrics import deletion_scores, energy_in_mask, mask_fraction, pointing_hit, spearman
from dermfuse_xai.settings import ExplainSettings
from dermfuse_xai.targets import BatchTargets, Chunk

SCORE_KEYS = (
    "energy_in_mask",
    "pointing_hit",
    "mask_fraction",
    "deletion_auc",
    "deletion_auc_random",
    "deletion_auc_gain",
    "randomization_spearman",
)

SCORE_CONVENTIONS = {
    "energy_in_mask": "share of positive saliency inside the lesion mask; chance = mask_fraction",
    "pointing_hit": "1 if the map's maximum is inside the lesion mask; chance = mask_fraction; NaN for a "
    "constant map (no maximum to point with)",
    "deletion_auc": "AUC of the target probability while the most salient pixels are replaced first (lower = "
    "more faithful); deletion_auc_gain = random-order AUC - deletion_auc (> 0 beats random)",
    "randomization_spearman": "Spearman rank correlation with the same method's map on the re-initialised "
    "model (Adebayo et al. 2018); near 1 = the map does not depend on the weights",
}


def score_maps(
    maps: dict[str, torch.Tensor],
    random_maps: dict[str, torch.Tensor],
    chunk: Chunk,
    targets: BatchTargets,
    settings: ExplainSettings,
) -> list[list[dict[str, Any]]]:
    """Per image of ``chunk``, one row per map: the image's row columns, ``map`` and every :data:`SCORE_KEYS`
    score (NaN where it cannot be computed: no mask, no randomised map, a constant map)."""
    per_image = []
    mask = chunk.mask
    for j in range(len(chunk.ids)):
        rows = []
        for map_name, sal in maps.items():
            row = {**targets.rows[j], "map": map_name, **{k: float("nan") for k in SCORE_KEYS}}
            if mask is not None:
                row["energy_in_mask"] = float(energy_in_mask(sal[j : j + 1], mask[j : j + 1])[0])
                row["pointing_hit"] = float(pointing_hit(sal[j : j + 1], mask[j : j + 1])[0])
                row["mask_fraction"] = float(mask_fraction(mask[j : j + 1])[0])
            row.update(
                deletion_scores(
                    targets.score_fns[j],
                    chunk.image[j],
                    sal[j],
                    settings.deletion_steps,
                    settings.deletion_fill,
                    settings.seed + chunk.first + j,
                )
            )
            if map_name in random_maps:
                row["randomization_spearman"] = float(spearman(sal[j : j + 1], random_maps[map_name][j : j + 1])[0])
            rows.append(row)
        per_image.append(rows)
    return per_image


def mean_scores(rows: list[dict[str, Any]]) -> dict[str, float]:
    """``n_images``, the NaN-ignoring mean of every score of ``rows`` (one map), and ``energy_above_chance``."""
    out: dict[str, float] = {"n_images": len(rows)}
    for key in SCORE_KEYS:
        vals = np.array([r[key] for r in rows], dtype=float)
        out[key] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
    if not math.isnan(out["energy_in_mask"]):
        out["energy_above_chance"] = out["energy_in_mask"] - out["mask_fraction"]
    return out


def caption(row: dict[str, Any]) -> str:
    """``"<map>\\nin-lesion 0.63 (area 0.20), del. gain +0.12"`` for the heatmap column of a figure."""
    parts = []
    if math.isfinite(row["energy_in_mask"]):
        parts.append(f"in-lesion {row['energy_in_mask']:.2f} (area {row['mask_fraction']:.2f})")
    if math.isfinite(row["deletion_auc_gain"]):
        parts.append(f"del. gain {row['deletion_auc_gain']:+.2f}")
    return row["map"] + ("\n" + ", ".join(parts) if parts else "")
