"""Read the fusion blocks' cross-attention weights (``net.attention_maps``) as heatmaps or feature scores.

dualnet (arXiv 2510.17773: original-image queries attend to segmented-lesion keys) and mammo_xattn
(arXiv 2508.16000: image query attends to clinical-feature keys; co-attention in both directions)
keep their last attention weights in ``net.attention_maps[name]``, each a
``dermfuse_models.protocol.AttentionMap`` (weights ``(B, heads, Q, K)`` and what the keys are). Each
map is summarised by its *keys*, averaged over heads and queries (the attention every key receives;
rows sum to 1, so a mean over keys would be constant):

* ``keys="feature_tokens"``: ``feature_scores (B, F)`` named by the map's ``names`` (mammo_xattn
  ``image_to_clinical``);
* ``keys="image_grid"`` with more than one key: ``image_map (B, H, W)``, the map's ``grid``
  upsampled bilinearly, in the coordinates of the feature map the keys come from (dualnet ``cross``:
  segmented-lesion locations; mammo_xattn ``clinical_to_image``: layer-4 locations); a single key
  (whose weight is always 1) is skipped;
* ``keys="channels"`` (EAM-Net's CMAM, ``decoder<i>/spatial_to_channel`` and
  ``channel_to_spatial``, whose queries and keys are channel tokens): not spatial, skipped;
  :func:`has_cross_attention` is False for segmentation nets (EAM-Net), whose maps are all such.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from dermfuse_models.protocol import AttentionMap, is_segmentation_net
from dermfuse_xai.methods.base import ExplanationMethod, FeatureScores, MethodContext, MethodInputs, MethodResult
from dermfuse_xai.model_io import LogitsModel


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
    inner = LogitsModel(net).net
    return isinstance(getattr(inner, "attention_maps", None), dict) and not is_segmentation_net(inner)


@torch.no_grad()
def cross_attention_maps(
    net: nn.Module, image: torch.Tensor, meta: torch.Tensor | None = None, mask: torch.Tensor | None = None
) -> dict[str, AttentionSummary]:
    """Run the net once and summarise every entry of its ``attention_maps`` (module doc)."""
    model = LogitsModel(net)
    model(image, meta, mask)
    maps = getattr(model.net, "attention_maps", None) or {}
    hw = tuple(int(s) for s in image.shape[-2:])
    out: dict[str, AttentionSummary] = {}
    for key, attn in maps.items():
        summary = summarise_attention(key, attn, hw)
        if summary is not None:
            out[key] = summary
    return out


def summarise_attention(name: str, attn: AttentionMap, image_hw: tuple[int, int]) -> AttentionSummary | None:
    """Summarise one :class:`~dermfuse_models.protocol.AttentionMap` by its key kind (module doc); ``None``
    for channel attention and for a single image key."""
    received = attn.weights.float().mean(dim=(1, 2))  # (B, K)
    if attn.keys == "feature_tokens":
        return AttentionSummary(name=name, kind="features", feature_scores=received.cpu(), names=list(attn.names))
    if attn.keys == "image_grid" and received.shape[1] > 1:
        image_map = F.interpolate(
            received.reshape(-1, 1, *attn.grid), size=image_hw, mode="bilinear", align_corners=False
        )
        return AttentionSummary(name=name, kind="image", image_map=image_map[:, 0].cpu())
    return None


def _run_cross_attention(net: nn.Module, inputs: MethodInputs) -> MethodResult:
    """Image summaries as maps ``cross_attention/<name>``, feature summaries as feature scores of the same name."""
    result = MethodResult()
    for name, summary in cross_attention_maps(net, inputs.image, meta=inputs.meta, mask=inputs.mask).items():
        if summary.kind == "image":
            result.maps[f"cross_attention/{name}"] = summary.image_map.to(inputs.image.device)
        else:
            result.features[f"cross_attention/{name}"] = FeatureScores(summary.names, summary.feature_scores, {})
    return result


def _keeps_attention_maps(net: nn.Module, context: MethodContext) -> str | None:
    if has_cross_attention(net):
        return None
    if is_segmentation_net(net) and hasattr(LogitsModel(net).net, "attention_maps"):
        return "its attention_maps are channel attention (CMAM), not spatial maps"
    return "the net keeps no spatial or feature attention_maps"


CROSS_ATTENTION = ExplanationMethod(
    name="cross_attention",
    task="classification",
    run=_run_cross_attention,
    applies=_keeps_attention_maps,
    convention="fusion attention weights averaged over heads and queries = attention received per key",
)
