"""Quantitative checks of saliency maps, which none of the five papers reported.

* Localisation against a lesion mask: the share of positive saliency inside the lesion (the
  energy-based pointing game of Score-CAM, Wang et al. 2020) and the pointing-game hit (Zhang et al.
  2018: is the map's maximum inside the lesion). For a map that knows nothing both equal the
  lesion's area fraction in expectation (:func:`mask_fraction`, the chance level).
* Faithfulness: the deletion curve (Petsiuk et al. 2018, RISE): the target score while the most
  salient pixels are replaced first, against the same with a random order; a faithful map makes
  the score fall faster (lower area under the curve).
* Agreement between two maps (model-randomisation test, Adebayo et al. 2018): Spearman rank
  correlation of the pixel values.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torchvision.transforms.v2.functional import gaussian_blur


def _maps(saliency: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` float view of ``(H, W)``, ``(B, H, W)`` or ``(B, 1, H, W)`` maps."""
    s = torch.as_tensor(saliency).float()
    if s.ndim == 2:
        s = s[None]
    if s.ndim == 4 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim != 3:
        raise ValueError(f"saliency must be (H, W), (B, H, W) or (B, 1, H, W), got {tuple(s.shape)}.")
    return s


def _masks(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    m = _maps(mask).to(like.device)
    if m.shape[-2:] != like.shape[-2:]:
        m = F.interpolate(m[:, None], size=like.shape[-2:], mode="nearest")[:, 0]
    if m.shape[0] != like.shape[0]:
        raise ValueError(f"{m.shape[0]} masks for {like.shape[0]} saliency maps.")
    return (m > 0.5).float()


def mask_fraction(mask: torch.Tensor) -> torch.Tensor:
    """``(B,)`` lesion area fraction: the chance level of :func:`energy_in_mask` and :func:`pointing_hit`."""
    m = _maps(mask)
    return (m > 0.5).float().flatten(1).mean(1)


def energy_in_mask(saliency: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B,)`` share of the positive saliency that lies inside the lesion mask (energy pointing game).

    ``sum(relu(s) * m) / sum(relu(s))``; NaN for a map with no positive value or an empty mask.
    """
    s = _maps(saliency).clamp(min=0)
    m = _masks(mask, s)
    total = s.flatten(1).sum(1)
    inside = (s * m).flatten(1).sum(1)
    share = inside / total.clamp_min(torch.finfo(s.dtype).tiny)
    invalid = (total <= 0) | (m.flatten(1).sum(1) == 0)
    return torch.where(invalid, torch.full_like(share, float("nan")), share)


def pointing_hit(saliency: torch.Tensor, mask: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """``(B,)`` 1.0 if the map's maximum lies inside the mask (dilated by ``tolerance`` pixels), else 0.0.

    Ties: the hit counts if *any* maximal pixel is inside. NaN for an empty mask and for a constant
    map (e.g. an all-zero Grad-CAM: it points nowhere, and counting every tie would score it a hit).
    """
    s = _maps(saliency)
    m = _masks(mask, s)
    if tolerance > 0:
        m = F.max_pool2d(m[:, None], 2 * tolerance + 1, stride=1, padding=tolerance)[:, 0]
    flat = s.flatten(1)
    peak = s == flat.amax(1)[:, None, None]
    hit = (peak & (m > 0)).flatten(1).any(1).float()
    invalid = (m.flatten(1).sum(1) == 0) | (flat.amax(1) == flat.amin(1))
    return torch.where(invalid, torch.full_like(hit, float("nan")), hit)


def deletion_order(saliency: torch.Tensor, order: str = "saliency", seed: int = 0) -> torch.Tensor:
    """``(H*W,)`` pixel indices, most salient first (ties in random order) or all random (``order="random"``)."""
    s = _maps(saliency)
    if s.shape[0] != 1:
        raise ValueError("deletion_order takes one map.")
    flat = s[0].flatten().cpu().numpy()
    rng = np.random.default_rng(seed)
    jitter = rng.random(flat.size)
    if order == "random":
        return torch.from_numpy(np.argsort(jitter, kind="stable"))
    if order != "saliency":
        raise ValueError(f"order must be 'saliency' or 'random', got {order!r}.")
    return torch.from_numpy(np.lexsort((jitter, -flat)))


def deletion_curve(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    saliency: torch.Tensor,
    steps: int = 20,
    order: str = "saliency",
    fill: str | float = "mean",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Score of one image while pixels are removed in ``order``; returns ``(fractions, scores)``.

    Args:
        score_fn: ``(N, 3, H, W) -> (N,)`` the score to track, e.g. the softmax probability of
            the originally predicted class (with that image's metadata held fixed).
        image: ``(3, H, W)`` normalised image. saliency: ``(H, W)`` map.
        steps: the curve has ``steps + 1`` points at removed fractions ``0, 1/steps, ..., 1``.
        order: ``"saliency"`` (most salient first) or ``"random"``.
        fill: what replaces removed pixels: ``"mean"`` (0 in normalised space, the normalisation
            mean colour), ``"blur"`` (a Gaussian-blurred copy, sigma = side/16) or a constant.
        seed: random tie-breaking / random order.
    """
    if image.ndim != 3:
        raise ValueError(f"image must be (3, H, W), got {tuple(image.shape)}.")
    _, h, w = image.shape
    idx = deletion_order(saliency, order, seed).to(image.device)
    if fill == "mean":
        filler = torch.zeros_like(image)
    elif fill == "blur":
        sigma = max(h, w) / 16
        k = int(2 * round(3 * sigma) + 1)
        filler = gaussian_blur(image[None], [k, k], [sigma, sigma])[0]
    else:
        filler = torch.full_like(image, float(fill))
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.rint(fractions * h * w).astype(int)
    rank = torch.empty(h * w, dtype=torch.long, device=image.device)
    rank[idx] = torch.arange(h * w, device=image.device)
    removed = rank[None] < torch.as_tensor(counts, device=image.device)[:, None]  # (S+1, H*W)
    removed = removed.reshape(-1, 1, h, w).to(image.dtype)
    batch = image[None] * (1 - removed) + filler[None] * removed
    with torch.no_grad():
        scores = score_fn(batch).detach().float().cpu().numpy()
    return fractions, scores


def curve_auc(fractions: np.ndarray, scores: np.ndarray) -> float:
    """Area under a deletion curve (trapezoid rule over the removed fraction in [0, 1])."""
    return float(np.trapezoid(scores, fractions))


def deletion_scores(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    saliency: torch.Tensor,
    steps: int = 20,
    fill: str | float = "mean",
    seed: int = 0,
    random_auc: float | None = None,
) -> dict[str, float]:
    """Deletion AUC for the saliency order and a random order, and their difference.

    Returns ``{"deletion_auc": salient-first AUC (lower = more faithful), "deletion_auc_random":
    random-order AUC, "deletion_auc_gain": random - salient (> 0 = the map beats a random ranking)}``.
    The random order depends only on the image size and ``seed``, so every map of one image shares it:
    pass its AUC as ``random_auc`` to skip recomputing that curve.
    """
    f, salient = deletion_curve(score_fn, image, saliency, steps, "saliency", fill, seed)
    a_s = curve_auc(f, salient)
    if random_auc is None:
        _, rand = deletion_curve(score_fn, image, saliency, steps, "random", fill, seed)
        random_auc = curve_auc(f, rand)
    return {"deletion_auc": a_s, "deletion_auc_random": random_auc, "deletion_auc_gain": random_auc - a_s}


def spearman(map_a: torch.Tensor, map_b: torch.Tensor) -> torch.Tensor:
    """``(B,)`` Spearman rank correlation between paired maps (scipy); NaN where a map is constant."""
    a, b = _maps(map_a).flatten(1).cpu().numpy(), _maps(map_b).flatten(1).cpu().numpy()
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {a.shape} vs {b.shape}.")
    out = []
    for x, y in zip(a, b, strict=True):
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            out.append(float("nan"))
        else:
            out.append(float(spearmanr(x, y).statistic))
    return torch.tensor(out)
