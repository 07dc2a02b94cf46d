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
    "empty": "true when the map is constant (an all-zero Grad-CAM: no positive evidence for the target); its "
    "scores are NaN and 'note' / 'empty_maps' say why",
    "randomization_spearman": "Spearman rank correlation with the same method's map on the re-initialised "
    "model (Adebayo et al. 2018); near 1 = the map does not depend on the weights",
}


#: why a map is empty when its method does not say (:attr:`~dermfuse_xai.methods.base.MethodResult.notes`)
CONSTANT_MAP = "constant map: all its values are equal, it ranks no pixel above another"


def score_maps(
    maps: dict[str, torch.Tensor],
    random_maps: dict[str, torch.Tensor],
    chunk: Chunk,
    targets: BatchTargets,
    settings: ExplainSettings,
    notes: dict[str, list[dict | None]] | None = None,
) -> list[list[dict[str, Any]]]:
    """Per image of ``chunk``, one row per map: the image's row columns, ``map``, every :data:`SCORE_KEYS` score
    (NaN where it cannot be computed: no mask, no randomised map, a constant map), ``empty`` (the map is constant,
    e.g. an all-zero Grad-CAM) and ``note`` (why, from the method's ``notes``; ``""`` when not empty)."""
    per_image = []
    mask = chunk.mask
    notes = notes or {}
    for j in range(len(chunk.ids)):
        rows = []
        frac = None if mask is None else float(mask_fraction(mask[j : j + 1])[0])
        random_auc = None  # the random deletion order is the image's, not the map's: computed once per image
        for map_name, sal in maps.items():
            row = {**targets.rows[j], "map": map_name, **{k: float("nan") for k in SCORE_KEYS}}
            note = (notes.get(map_name) or [None] * len(chunk.ids))[j]
            row["empty"] = bool(sal[j].max() == sal[j].min())
            row["note"] = (note or {}).get("reason", CONSTANT_MAP) if row["empty"] else ""
            if frac is not None:
                row["mask_fraction"] = frac
            if row["empty"]:
                row["note_detail"] = note or {"reason": CONSTANT_MAP}
                rows.append(row)  # nothing to localise, delete by or correlate: the map's scores stay NaN
                continue
            if mask is not None:
                row["energy_in_mask"] = float(energy_in_mask(sal[j : j + 1], mask[j : j + 1])[0])
                row["pointing_hit"] = float(pointing_hit(sal[j : j + 1], mask[j : j + 1])[0])
            deletion = deletion_scores(
                targets.score_fns[j],
                chunk.image[j],
                sal[j],
                settings.deletion_steps,
                settings.deletion_fill,
                settings.seed + chunk.first + j,
                random_auc,
            )
            random_auc = deletion["deletion_auc_random"]
            row.update(deletion)
            if map_name in random_maps:
                row["randomization_spearman"] = float(spearman(sal[j : j + 1], random_maps[map_name][j : j + 1])[0])
            rows.append(row)
        per_image.append(rows)
    return per_image


def mean_scores(rows: list[dict[str, Any]]) -> dict[str, float]:
    """``n_images``, the NaN-ignoring mean of every score of ``rows`` (one map), and ``energy_above_chance`` (the
    mean of energy_in_mask - mask_fraction over the images with both)."""
    out: dict[str, float] = {"n_images": len(rows)}
    for key in SCORE_KEYS:
        vals = np.array([r[key] for r in rows], dtype=float)
        out[key] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
    above = [r["energy_in_mask"] - r["mask_fraction"] for r in rows if math.isfinite(r["energy_in_mask"])]
    if above:  # over the same images on both sides (an empty map has a lesion area but no energy)
        out["energy_above_chance"] = float(np.mean(above))
    return out


def caption(row: dict[str, Any]) -> str:
    """``"in-lesion 0.63 (chance 0.20)\\ndel. gain +0.12"`` under a map of a figure (:data:`SCORE_LEGEND`); for an
    empty map the first clause of its note (``"no positive evidence"``)."""
    if row.get("empty"):
        return row.get("note", CONSTANT_MAP).split(":")[0]
    parts = []
    if math.isfinite(row["energy_in_mask"]):
        parts.append(f"in-lesion {row['energy_in_mask']:.2f} (chance {row['mask_fraction']:.2f})")
    if math.isfinite(row["deletion_auc_gain"]):
        parts.append(f"del. gain {row['deletion_auc_gain']:+.2f}")
    return "\n".join(parts)


#: what the numbers under the maps mean (the figures' legend)
SCORE_LEGEND = (
    "in-lesion: share of the map's positive saliency inside the lesion mask (chance = the lesion's area); "
    "del. gain: deletion AUC of the target probability with pixels removed in random order minus in the map's "
    "order (> 0: the map ranks first the pixels the prediction needs); all zero: no positive evidence for the "
    "explained class (scores.json 'empty_maps' says why)."
)
