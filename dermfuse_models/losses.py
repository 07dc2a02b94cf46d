"""Loss helpers shared by the segmentation nets: Dice + BCE (MONAI) and deep supervision."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.losses import DiceCELoss


def dice_bce_loss(dice_weight: float = 1.0, bce_weight: float = 1.0) -> DiceCELoss:
    """``dice_weight * soft Dice + bce_weight * BCE-with-logits`` on ``(B, 1, H, W)`` logits.

    MONAI's ``DiceCELoss(sigmoid=True)``: with one channel its CE term is binary cross-entropy
    on logits; the soft Dice is computed per image (``batch=False``) with MONAI's smoothing
    (1e-5 in numerator and denominator), so an empty target predicted empty costs ~0.
    """
    if dice_weight < 0 or bce_weight < 0 or dice_weight + bce_weight == 0:
        raise ValueError(f"dice_weight={dice_weight} and bce_weight={bce_weight} must be >= 0 and not both 0.")
    return DiceCELoss(sigmoid=True, lambda_dice=dice_weight, lambda_ce=bce_weight)


def halving_weights(n: int) -> list[float]:
    """Default deep-supervision weights for ``n`` outputs ordered coarse to fine.

    The finest deep output gets 0.5 and each coarser level half of the next finer one:
    ``[0.5**n, ..., 0.25, 0.5]`` (the main output has weight 1).
    """
    return [0.5 ** (n - i) for i in range(n)]


def resize_logits(logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinearly resize logits to ``size`` (no-op when already that size)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


class DeepSupervisionLoss(nn.Module):
    """``base(logits, y) + sum_i w_i * base(resize(deep_i), y)`` for multi-scale supervision.

    Every deep output is bilinearly upsampled to the mask's size (the mask itself is never
    resampled, so each level is scored against the exact full-resolution target), then scored
    with the same base loss. Weights are per deep output, coarse to fine, as the net returns
    them; ``None`` means :func:`halving_weights`.

    Args:
        base: loss on ``(logits, target)`` (e.g. :func:`dice_bce_loss`).
        weights: one weight per deep output, or None for halving weights.
    """

    def __init__(self, base: nn.Module, weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.base = base
        self.weights = None if weights is None else [float(w) for w in weights]

    def weights_for(self, n: int) -> list[float]:
        """The weights applied to ``n`` deep outputs; a clear error if configured for another count."""
        if self.weights is None:
            return halving_weights(n)
        if len(self.weights) != n:
            raise ValueError(
                f"deep_supervision_weights has {len(self.weights)} values but the net returned {n} "
                f"deep_logits; give one weight per deep output (coarse to fine) or null for halving weights."
            )
        return self.weights

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, deep_logits: Sequence[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return ``(total, {"main": ..., "deep": weighted deep sum})`` (``deep`` only if given)."""
        size = target.shape[-2:]
        main = self.base(resize_logits(logits, size), target)
        terms = {"main": main}
        if deep_logits:
            weights = self.weights_for(len(deep_logits))
            deep = sum(w * self.base(resize_logits(d, size), target) for w, d in zip(weights, deep_logits, strict=True))
            terms["deep"] = deep
            return main + deep, terms
        return main, terms
