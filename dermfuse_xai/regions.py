"""Lesion regions of a binary segmentation output ``(B, 1, H, W)``: the logits, the predicted lesion, Dice.

EAM-Net and DualNet's Deep-UNet (``output_kind = "mask_logits"``) output one lesion logit per pixel.
Seg-Grad-CAM explains a *region* of that output (:func:`predicted_region`, or :func:`mask_region` for
``target="label"``); the report scores the prediction with :func:`dice`.
"""

from __future__ import annotations

import torch
from monai.metrics import compute_dice


def lesion_logits(output: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` lesion logits of a binary segmentation output ``(B, 1, H, W)``; clear error otherwise."""
    if output.ndim != 4 or output.shape[1] != 1:
        raise ValueError(
            f"a segmentation net must return lesion logits of shape (B, 1, H, W); got {tuple(output.shape)}. "
            "Only binary (lesion vs background) segmentation is explained."
        )
    return output[:, 0]


def _all_pixels_where_empty(region: torch.Tensor) -> torch.Tensor:
    empty = region.flatten(1).sum(1) == 0
    return torch.where(empty[:, None, None], torch.ones_like(region), region)


def predicted_region(logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """``(B, H, W)`` float region for Seg-Grad-CAM: ``sigmoid(logits) >= threshold``, all ones where that is empty.

    ``logits``: ``(B, H, W)`` or ``(B, 1, H, W)``.
    """
    if logits.ndim == 4:
        logits = lesion_logits(logits)
    return _all_pixels_where_empty((logits.float().sigmoid() >= threshold).float())


def mask_region(mask: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` float region of ground-truth masks ``(B, 1, H, W)`` (``> 0.5``), all ones where a mask is empty."""
    return _all_pixels_where_empty((mask[:, 0] > 0.5).float())


def dice(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(B,)`` Dice of binary ``(B, H, W)`` / ``(B, 1, H, W)`` masks; 1 where both are empty (MONAI compute_dice)."""
    p, t = ((x.float().flatten(1) > 0.5).float().reshape(x.shape[0], 1, -1) for x in (pred, target))
    return compute_dice(p, t, include_background=True, ignore_empty=False)[:, 0]
