"""Grad-CAM (Selvaraju et al. 2017) for dermfuse's CNN nets, through captum's ``LayerGradCam``.

The papers' image explanations: dualnet (arXiv 2510.17773, "Grad-CAM visualizations confirm that the
model focuses precisely on lesion regions", one map per DenseNet201 branch) and mammo_xattn
(arXiv 2508.16000, Grad-CAM on the ResNet-50 for imaging localisation). The hooked layers come from
the net's ``cam_layers()`` (:func:`dermfuse_xai.model_io.cam_layers_of`).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from captum.attr import LayerAttribution, LayerGradCam

from dermfuse_xai.model_io import LogitsModel, cam_layers_of


def grad_cam(net: nn.Module, image: torch.Tensor, target: torch.Tensor | int, layer: nn.Module | str | None = None,
             meta: torch.Tensor | None = None, mask: torch.Tensor | None = None,
             relu: bool = True) -> torch.Tensor:
    """Grad-CAM map of ``target`` at ``layer``, upsampled bilinearly to the image size.

    ``ReLU(sum_c alpha_c A_c)`` with ``alpha_c`` the spatial mean of d logit_target / d A_c
    (captum ``LayerGradCam`` on the target *logit*), then ``LayerAttribution.interpolate`` to
    ``(H, W)``. Maps are in the image's coordinates only for layers that see the image itself (a
    branch that sees a crop would need the crop box; dualnet's lesion branch sees the masked image
    at the same size, so its map is aligned). A module run several times per forward (dualnet's
    ``share_encoders=True``) gives the map of its last run (captum keeps the last activation).

    Args:
        net: a dermfuse net (dict output, optional meta/mask inputs), a ``ClassificationTask`` or a
            timm CNN. Put it in ``eval()`` mode first.
        image: ``(B, 3, H, W)`` normalised images.
        target: class index per image ``(B,)`` or one int for all.
        layer: the module to hook, or a name of ``cam_layers_of(net)``; default its first entry.
        meta, mask: extra inputs (a net ignores those it does not use).
        relu: keep only positive evidence (standard Grad-CAM); False gives the signed map.

    Returns:
        ``(B, H, W)`` float maps (not normalised; zero where no positive evidence).
    """
    model = LogitsModel(net)
    if layer is None or isinstance(layer, str):
        layers = cam_layers_of(model.net)
        if not layers:
            raise ValueError(
                f"{type(model.net).__name__} declares no Grad-CAM layer: give `layer=` or implement "
                "cam_layers() -> {name: module} on the net (dermfuse CNN classifiers expose it)."
            )
        if layer is None:
            layer = next(iter(layers.values()))
        elif layer not in layers:
            raise ValueError(f"unknown cam layer {layer!r} for {type(model.net).__name__}; known: {sorted(layers)}")
        else:
            layer = layers[layer]
    target = _targets(target, image.shape[0], image.device)
    cam = LayerGradCam(model, layer)
    with torch.enable_grad():
        attr = cam.attribute(image, target=target, additional_forward_args=(meta, mask),
                             relu_attributions=relu, attr_dim_summation=True)
    if isinstance(attr, tuple):  # layers with tuple outputs: first element
        attr = attr[0]
    if attr.ndim != 4:
        raise ValueError(
            f"Grad-CAM layer output has shape {tuple(attr.shape)}; hook a convolutional layer whose "
            "output is (B, C, h, w)."
        )
    up = LayerAttribution.interpolate(attr, tuple(image.shape[-2:]), interpolate_mode="bilinear")
    return up[:, 0].detach().float()


def _targets(target: torch.Tensor | int, batch: int, device: torch.device) -> torch.Tensor:
    """``target`` as a ``(B,)`` long tensor on ``device``."""
    t = torch.as_tensor(target, device=device).long()
    return t.expand(batch).contiguous() if t.ndim == 0 else t
