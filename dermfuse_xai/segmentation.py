"""Seg-Grad-CAM (Vinogradova, Dibrov & Myers 2020) for dermfuse's segmentation nets.

EAM-Net (arXiv 2512.07275) and DualNet's stage-1 Deep-UNet (arXiv 2510.17773) output one lesion
logit per pixel, ``{"logits": (B, 1, H, W)}``, not class scores. Seg-Grad-CAM explains a *region*
of that output: the scalar target is the sum of the lesion logits over a set of pixels ``R``,

    ``y = sum_{(u, v) in R} logit[u, v]``,

and the map is Grad-CAM of ``y`` at a convolutional layer ``A``: ``ReLU(sum_c alpha_c A_c)`` with
``alpha_c`` the spatial mean of ``dy / dA_c`` (captum ``LayerGradCam``), upsampled bilinearly to the
image. ``R`` is the net's own predicted lesion (``sigmoid(logit) >= threshold``; all pixels when the
prediction is empty) or, with ``target="label"``, the ground-truth mask.

Layers: the net's ``seg_cam_layers() -> {name: module}`` (:func:`seg_cam_layers_of`), ``bottleneck``
(the deepest encoder features, as in the paper) and ``decoder`` (the last decoder stage, the finest
features before the output head); EAM-Net and Deep-UNet declare theirs. EAM-Net's CMAM attention maps
are channel-token attention (``(B, heads, C/h, C/h)``), not spatial: they are not shown as heatmaps.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from captum.attr import LayerAttribution, LayerGradCam
from monai.metrics import compute_dice

from dermfuse_models.protocol import is_segmentation_net  # noqa: F401  (re-exported: the protocol's rule)
from dermfuse_xai.model_io import LogitsModel, unwrap_net


def seg_cam_layers_of(model: nn.Module) -> dict[str, nn.Module]:
    """The net's ``seg_cam_layers()`` (module doc: ``{"bottleneck": ..., "decoder": ...}``), or ``{}``."""
    net = unwrap_net(model)
    return dict(net.seg_cam_layers()) if callable(getattr(net, "seg_cam_layers", None)) else {}


def lesion_logits(output: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` lesion logits of a binary segmentation output ``(B, 1, H, W)``; clear error otherwise."""
    if output.ndim != 4 or output.shape[1] != 1:
        raise ValueError(
            f"a segmentation net must return lesion logits of shape (B, 1, H, W); got {tuple(output.shape)}. "
            "Only binary (lesion vs background) segmentation is explained."
        )
    return output[:, 0]


def predicted_region(logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """``(B, H, W)`` float region for Seg-Grad-CAM: ``sigmoid(logits) >= threshold``, all ones where that is empty.

    ``logits``: ``(B, H, W)`` or ``(B, 1, H, W)``.
    """
    if logits.ndim == 4:
        logits = lesion_logits(logits)
    region = (logits.float().sigmoid() >= threshold).float()
    empty = region.flatten(1).sum(1) == 0
    return torch.where(empty[:, None, None], torch.ones_like(region), region)


def dice(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(B,)`` Dice of binary ``(B, H, W)`` / ``(B, 1, H, W)`` masks; 1 where both are empty (MONAI ``compute_dice``)."""
    p, t = ((x.float().flatten(1) > 0.5).float().reshape(x.shape[0], 1, -1) for x in (pred, target))
    return compute_dice(p, t, include_background=True, ignore_empty=False)[:, 0]


class RegionScore(nn.Module):
    """``(image, meta?, mask?) -> (B, 1)``: sum of the lesion logits over ``region`` (the Seg-Grad-CAM target)."""

    def __init__(self, net: nn.Module, region: torch.Tensor) -> None:
        super().__init__()
        self.model = LogitsModel(net)
        self.region = region.float()

    def forward(self, image: torch.Tensor, meta: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = lesion_logits(self.model(image, meta, mask))
        region = self.region.to(logits)
        if region.shape[-2:] != logits.shape[-2:]:
            raise ValueError(f"region {tuple(region.shape)} does not match the logits {tuple(logits.shape)}.")
        return (logits * region).flatten(1).sum(1, keepdim=True)


def seg_grad_cam(net: nn.Module, image: torch.Tensor, region: torch.Tensor | None = None,
                 layer: nn.Module | str | None = None, meta: torch.Tensor | None = None,
                 mask: torch.Tensor | None = None, threshold: float = 0.5, relu: bool = True) -> torch.Tensor:
    """Seg-Grad-CAM map of the lesion logits summed over ``region`` at ``layer``, upsampled to the image.

    Args:
        net: a segmentation net (EAM-Net, Deep-UNet, ...) or a ``SegmentationTask``; in ``eval()`` mode.
        image: ``(B, 3, H, W)`` normalised images.
        region: ``(B, H, W)`` or ``(B, 1, H, W)`` pixels whose lesion logits are summed; default the
            net's predicted lesion (:func:`predicted_region`, all pixels where it is empty).
        layer: a module or a name of :func:`seg_cam_layers_of`; default ``"bottleneck"``.
        meta, mask: extra inputs (a net ignores those it does not use).
        relu: keep only positive evidence (standard); False gives the signed map.

    Returns:
        ``(B, H, W)`` float maps (not normalised; zero where no positive evidence).
    """
    model = LogitsModel(net)
    if layer is None or isinstance(layer, str):
        layers = seg_cam_layers_of(model.net)
        if not layers:
            raise ValueError(
                f"{type(model.net).__name__} declares no Seg-Grad-CAM layer: give `layer=` or implement "
                "seg_cam_layers() -> {name: module} on the net (EAM-Net and Deep-UNet are known)."
            )
        name = layer or next(iter(layers))
        if name not in layers:
            raise ValueError(f"unknown seg cam layer {name!r} for {type(model.net).__name__}; known: {sorted(layers)}")
        layer = layers[name]
    if region is None:
        with torch.no_grad():
            region = predicted_region(model(image, meta, mask), threshold)
    if region.ndim == 4:
        region = region[:, 0]
    cam = LayerGradCam(RegionScore(model.net, region.to(image.device)), layer)
    with torch.enable_grad():
        attr = cam.attribute(image, target=0, additional_forward_args=(meta, mask),
                             relu_attributions=relu, attr_dim_summation=True)
    if isinstance(attr, tuple):
        attr = attr[0]
    if attr.ndim != 4:
        raise ValueError(f"Seg-Grad-CAM layer output has shape {tuple(attr.shape)}; hook a (B, C, h, w) layer.")
    up = LayerAttribution.interpolate(attr, tuple(image.shape[-2:]), interpolate_mode="bilinear")
    return up[:, 0].detach().float()
