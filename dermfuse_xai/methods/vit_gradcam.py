"""Grad-CAM for ViTs (Selvaraju et al. 2017 on transformer tokens): the patch tokens of a layer read as a feature map.

MSViT's paper (arXiv 2502.06243) explains its predictions with Grad-CAM (paper: "interpretable Grad-CAM
visualizations that align with actual lesion areas"). A ViT has no convolutional feature map, so the
net names a token-sequence layer (``token_cam_layers()``, ``dermfuse_models.protocol.TokenGradCamLayers``;
the last block's ``norm1``, whose tokens the class token attends to last) and its patch tokens
``A (B, N, D)`` (``token_layout.patches``, row-major over ``token_layout.grid``) take the place of the
channels x positions of a CNN map:

    alpha_c = mean_patches dy / dA_c,   map = ReLU(sum_c alpha_c A_c)   reshaped to (rows, cols), upsampled bilinearly

with ``y`` the target logit. Activations and gradients come from captum (``LayerActivation`` and
``LayerGradientXActivation(multiply_by_inputs=False)``, i.e. the layer gradient), the upsampling from
``LayerAttribution.interpolate``, as for the CNN Grad-CAM in :mod:`dermfuse_xai.methods.gradcam`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from captum.attr import LayerActivation, LayerGradientXActivation

from dermfuse_xai.methods.base import ExplanationMethod, MethodContext, MethodInputs, MethodResult
from dermfuse_xai.methods.gradcam import LayerHook, per_image_targets, upsample
from dermfuse_xai.model_io import LogitsModel, token_cam_layers_of

_TOKEN_CAM = LayerHook("ViT Grad-CAM", "token_cam_layers", "MSViT and ViTAtt declare it")


def vit_grad_cam(
    net: nn.Module,
    image: torch.Tensor,
    target: torch.Tensor | int,
    layer: nn.Module | str | None = None,
    meta: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    relu: bool = True,
) -> torch.Tensor:
    """Grad-CAM of ``target`` on the patch tokens of ``layer`` (see module doc), upsampled to the image size.

    Arguments and result as :func:`~dermfuse_xai.methods.gradcam.grad_cam`, except that ``net`` is a ViT
    declaring ``token_cam_layers()`` (``MSViT``, ``ViTAtt``) or a task wrapping one, and ``layer`` a module or
    a name of ``token_cam_layers()`` (default its first entry).
    """
    model = LogitsModel(net)
    if layer is None or isinstance(layer, str):
        layer = _TOKEN_CAM.pick(model.net, token_cam_layers_of(model.net), layer)
    target = per_image_targets(target, image)
    args = (meta, mask)
    with torch.enable_grad():
        grads = LayerGradientXActivation(model, layer, multiply_by_inputs=False).attribute(
            image, target=target, additional_forward_args=args
        )
    with torch.no_grad():
        acts = LayerActivation(model, layer).attribute(image, additional_forward_args=args)
    layout = model.net.token_layout
    if grads.ndim != 3 or layout is None:
        raise ValueError(
            f"ViT Grad-CAM layer output has shape {tuple(grads.shape)}; hook a layer whose output is the "
            "(B, T, D) token sequence of token_layout."
        )
    patches_grad, patches = grads[:, layout.patches].float(), acts[:, layout.patches].float()
    alpha = patches_grad.mean(dim=1, keepdim=True)  # (B, 1, D): one weight per channel
    cam = (alpha * patches).sum(dim=-1)
    cam = cam.clamp(min=0) if relu else cam
    cam = cam.reshape(cam.shape[0], 1, *layout.grid)
    return upsample(cam, image).detach()


def _run_vit_grad_cam(net: nn.Module, inputs: MethodInputs) -> MethodResult:
    """One map per ``token_cam_layers()`` entry, ``vit_gradcam/<name>``."""
    return MethodResult(
        maps={
            f"vit_gradcam/{name}": vit_grad_cam(net, inputs.image, inputs.target, layer, inputs.meta, inputs.mask)
            for name, layer in token_cam_layers_of(net).items()
        }
    )


def _declares_token_cam_layers(net: nn.Module, context: MethodContext) -> str | None:
    return None if token_cam_layers_of(net) else "the net is not a ViT declaring token_cam_layers()"


VIT_GRAD_CAM = ExplanationMethod(
    name="vit_gradcam",
    task="classification",
    run=_run_vit_grad_cam,
    applies=_declares_token_cam_layers,
    convention="Grad-CAM on a ViT's patch tokens at each token_cam_layers() layer: alpha = mean over patches "
    "of dlogit/dtoken, ReLU(sum_c alpha_c token_c) on the patch grid, bilinear upsampling",
)
