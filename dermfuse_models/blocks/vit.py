"""The timm ViT backbone of dermfuse's ViT nets (ViTAtt, MSViT): built once, patch tokens with their grid."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from dermfuse_models.encoders import create_encoder

_REQUIRED_VIT_PARTS = (
    "patch_embed",
    "_pos_embed",
    "patch_drop",
    "norm_pre",
    "blocks",
    "norm",
    "cls_token",
    "embed_dim",
)


def create_vit(
    owner: str,
    backbone: str,
    img_size: int,
    pretrained: bool = False,
    weights_path: str | None = None,
    **timm_kwargs: Any,
) -> nn.Module:
    """A headless timm VisionTransformer with a class token, its position embedding sized for ``img_size``.

    Built with ``dynamic_img_size=True`` (other sizes interpolate the position embedding when the net
    is called directly; :func:`dermfuse_models.protocol.call_net` refuses a size other than the net's
    ``input_size``). Pretrained or local weights are resampled to ``img_size`` by timm.

    Raises:
        TypeError: ``backbone`` is not a timm ViT with a class token (``owner`` names the net).
    """
    vit = create_encoder(
        backbone,
        pretrained=pretrained,
        weights_path=weights_path,
        num_classes=0,
        img_size=img_size,
        dynamic_img_size=True,
        **timm_kwargs,
    )
    missing = [part for part in _REQUIRED_VIT_PARTS if not hasattr(vit, part)]
    if missing or vit.cls_token is None:
        raise TypeError(
            f"{owner} needs a timm VisionTransformer with a class token; backbone {backbone!r} "
            f"lacks {missing or ['cls_token']}. Use e.g. 'vit_base_patch16_224'."
        )
    return vit


def patch_tokens(vit: nn.Module, image: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """``image (B, 3, H, W)`` -> ``([CLS] (+ registers) + position-embedded patch tokens (B, T, D), grid)``.

    ``grid`` is the ``(rows, cols)`` patch grid of this image (patch tokens are row-major over it).
    """
    x = vit.patch_embed(image)
    if x.ndim == 4:  # dynamic_img_size: (B, rows, cols, D)
        grid = (int(x.shape[1]), int(x.shape[2]))
    else:
        grid = (int(vit.patch_embed.grid_size[0]), int(vit.patch_embed.grid_size[1]))
    x = vit._pos_embed(x)  # prepends [CLS] (+ register tokens), adds the position embedding
    return vit.patch_drop(x), grid
