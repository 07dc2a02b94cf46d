"""Test-time augmentation: the net's probabilities averaged over flips and 90-degree turns of each image.

A view is ``(k, flip)``: the image mirrored left-right when ``flip``, then turned ``k`` times by 90
degrees (``torch.rot90``); every view is exact on the square images the cache stores (no
resampling). ``flip`` averages identity, left-right, up-down and both (a half turn); ``d4`` all eight
symmetries of the square. A mask the net reads (DualNet's lesion mask) is moved with its image.
Classification averages the softmax probabilities; segmentation turns each view's mask logits back
(inverse view) and averages the per-pixel sigmoid probabilities.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from dermfuse_models.losses import resize_logits

#: mode -> views ``(quarter turns, mirrored)``
TTA_VIEWS: dict[str, tuple[tuple[int, bool], ...]] = {
    "none": ((0, False),),
    "flip": ((0, False), (0, True), (2, True), (2, False)),
    "d4": tuple((k, flip) for flip in (False, True) for k in range(4)),
}


def check_mode(mode: str) -> str:
    """``mode`` if it is a TTA mode, else a ``ValueError`` listing them."""
    if mode not in TTA_VIEWS:
        raise ValueError(f"unknown test-time augmentation {mode!r}; choose one of {list(TTA_VIEWS)}")
    return mode


def view(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """``x`` (..., H, W) mirrored left-right if ``flip``, then turned ``k`` quarter turns."""
    if flip:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k, dims=(-2, -1)) if k % 4 else x


def unview(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """The inverse of :func:`view`: ``unview(view(x, k, flip), k, flip) == x``."""
    x = torch.rot90(x, -k, dims=(-2, -1)) if k % 4 else x
    return torch.flip(x, dims=(-1,)) if flip else x


def _viewed_batch(batch: Mapping[str, Any], k: int, flip: bool) -> dict[str, Any]:
    out = dict(batch)
    for key in ("image", "mask"):
        if isinstance(batch.get(key), torch.Tensor):
            out[key] = view(batch[key], k, flip)
    return out


def tta_probabilities(task, batch: Mapping[str, Any], mode: str = "none", size: tuple[int, int] | None = None):
    """The task's probabilities for ``batch``, averaged over the views of ``mode``.

    ``task``: a dermfuse task (its ``forward`` runs the net, ``probabilities`` maps logits).
    Classification: ``(B, K)``. Segmentation (4-D logits): ``(B, 1, H, W)`` at ``size`` (default
    the image's), each view's logits turned back and resized before the sigmoid.
    """
    total = None
    views = TTA_VIEWS[check_mode(mode)]
    for k, flip in views:
        logits = task(_viewed_batch(batch, k, flip) if (k, flip) != (0, False) else batch)["logits"].float()
        if logits.ndim == 4:
            logits = resize_logits(unview(logits, k, flip), size or tuple(batch["image"].shape[-2:]))
        probs = task.probabilities(logits)
        total = probs if total is None else total + probs
    return total / len(views)
