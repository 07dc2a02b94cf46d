"""Read the fusion blocks' cross-attention weights (``net.attention_maps``) as heatmaps or feature scores.

dualnet (arXiv 2510.17773: original-image queries attend to segmented-lesion keys) and mammo_xattn
(arXiv 2508.16000: image query attends to clinical-feature keys; co-attention in both directions)
keep their last attention weights ``(B, heads, Q, K)`` in ``net.attention_maps[name]``. Each map is
summarised by what its *keys* are, averaged over heads and queries (the attention every key
receives; rows sum to 1, so a mean over keys would be constant):

* keys = clinical features (the part of the name after the last ``_to_`` says ``clinical``,
  ``meta`` or ``feature`` and ``K == len(net.meta_names)``): ``feature_scores (B, F)`` named by
  ``meta_names`` (mammo_xattn ``image_to_clinical``);
* else keys = a spatial grid (``K > 1`` fits the image's aspect ratio): ``image_map (B, H, W)``, the
  grid upsampled bilinearly, in the coordinates of the feature map the keys come from (dualnet
  ``cross``: segmented-lesion locations; mammo_xattn ``clinical_to_image``: layer-4 locations);
* else ``K == len(net.meta_names)``: feature scores; anything else (e.g. a single key, whose
  weight is always 1) is skipped.

Channel attention is not spatial: maps whose name mentions ``channel`` (EAM-Net's CMAM,
``decoder<i>/spatial_to_channel`` and ``channel_to_spatial``, whose queries and keys are both
channel tokens, ``(B, heads, C/h, C/h)``) are skipped even when ``K`` happens to fit a grid, and
:func:`has_cross_attention` is False for segmentation nets (EAM-Net), whose maps are all such.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from dermfuse_xai.model_io import LogitsModel, meta_names_of

_FEATURE_KEY_WORDS = ("clinical", "meta", "feature")
_CHANNEL_WORDS = ("channel",)


def is_channel_attention(name: str) -> bool:
    """Whether an ``attention_maps`` entry attends over channels (queries/keys are channel tokens)."""
    return any(word in name.lower() for word in _CHANNEL_WORDS)


@dataclass
class AttentionSummary:
    """One cross-attention map, summarised.

    Attributes:
        name: key in ``net.attention_maps``.
        kind: ``"image"`` (``image_map`` set) or ``"features"`` (``feature_scores`` set).
        image_map: ``(B, H, W)`` attention received per key location, upsampled.
        feature_scores: ``(B, F)`` attention received per clinical feature (rows sum to 1).
        names: the feature names for ``feature_scores``.
    """

    name: str
    kind: str
    image_map: torch.Tensor | None = None
    feature_scores: torch.Tensor | None = None
    names: list[str] = field(default_factory=list)


def has_cross_attention(net: nn.Module) -> bool:
    """Whether the net keeps fusion attention weights in ``attention_maps``: a classifier's; a
    segmentation net's maps (EAM-Net's CMAM) are channel attention, with no spatial map to show."""
    from dermfuse_xai.segmentation import is_segmentation_net

    inner = LogitsModel(net).net
    return isinstance(getattr(inner, "attention_maps", None), dict) and not is_segmentation_net(inner)


@torch.no_grad()
def cross_attention_maps(net: nn.Module, image: torch.Tensor, meta: torch.Tensor | None = None,
                         mask: torch.Tensor | None = None) -> dict[str, AttentionSummary]:
    """Run the net once and summarise every entry of its ``attention_maps`` (module doc)."""
    model = LogitsModel(net)
    model(image, meta, mask)
    maps = getattr(model.net, "attention_maps", None) or {}
    names = meta_names_of(model.net)
    hw = tuple(int(s) for s in image.shape[-2:])
    out: dict[str, AttentionSummary] = {}
    for key, attn in maps.items():
        summary = summarise_attention(key, attn, names, hw)
        if summary is not None:
            out[key] = summary
    return out


def summarise_attention(name: str, attn: torch.Tensor, meta_names: list[str],
                        image_hw: tuple[int, int]) -> AttentionSummary | None:
    """Summarise one ``(B, heads, Q, K)`` (or ``(B, Q, K)``) map; ``None`` if its keys are neither kind
    (or it is channel attention, :func:`is_channel_attention`)."""
    if is_channel_attention(name):
        return None
    if attn.ndim == 3:
        attn = attn[:, None]
    if attn.ndim != 4:
        raise ValueError(f"attention map {name!r} must be (B, heads, Q, K), got {tuple(attn.shape)}.")
    received = attn.float().mean(dim=(1, 2))  # (B, K)
    k = received.shape[1]
    key_part = name.lower().rsplit("_to_", 1)[-1]
    is_features = bool(meta_names) and k == len(meta_names)
    if is_features and any(word in key_part for word in _FEATURE_KEY_WORDS):
        return AttentionSummary(name=name, kind="features", feature_scores=received.cpu(), names=list(meta_names))
    grid = _grid(k, image_hw)
    if grid is not None and k > 1:
        image_map = F.interpolate(received.reshape(-1, 1, *grid), size=image_hw, mode="bilinear", align_corners=False)
        return AttentionSummary(name=name, kind="image", image_map=image_map[:, 0].cpu())
    if is_features:
        return AttentionSummary(name=name, kind="features", feature_scores=received.cpu(), names=list(meta_names))
    return None


def _grid(n: int, image_hw: tuple[int, int]) -> tuple[int, int] | None:
    h, w = image_hw
    side = math.sqrt(h * w / n)
    rows, cols = max(1, round(h / side)), max(1, round(w / side))
    return (rows, cols) if rows * cols == n else None
