"""A plain timm image classifier as a dermfuse net: the CNN baselines the papers compare against."""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn as nn

from dermfuse_models.encoders import create_encoder
from dermfuse_models.protocol import ImageOnlyNet, NetOutput

log = logging.getLogger(__name__)


class TimmClassifier(nn.Module):
    """``timm.create_model(backbone, num_classes=K)``, image only, following ``dermfuse_models.protocol``.

    The baseline row of a comparison, e.g. MSViT's (arXiv 2502.06243) paper: "Significantly
    outperforms ResNet50, VGG19, ResNext, and standard Vision Transformer baselines" (the ResNet-50
    baseline is ``backbone="resnet50"``; a plain ViT is ``MSViT(scales=[1], attn_reg_weight=0)``,
    which keeps MSViT's position embedding and head). The net keeps timm's own classifier head and
    pooling; nothing is added.

    Args:
        num_classes: output classes (the CLI links it from the data).
        backbone: any timm classifier name (``resnet50``, ``vgg19``, ``resnext50_32x4d``, ...).
        pretrained / weights_path: ImageNet weights from the hub / a local file (``create_encoder``).
        drop_rate: dropout before timm's classifier.
        meta_groups / meta_names / img_size: accepted so the CLI's data->net links work; the
            baseline is image-only (a warning is logged when clinical features are given).
        timm_kwargs: extra ``timm.create_model`` arguments.

    Forward:
        ``forward(image (B, 3, H, W), meta=None, mask=None) -> {"logits": (B, K)}``; ``meta`` and ``mask``
        are ignored.

    Explainability: ``cam_layers()`` is the deepest feature stage of the timm CNN (Grad-CAM), as
    ``protocol.ImageOnlyNet`` declares it.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet50",
        pretrained: bool = False,
        weights_path: str | None = None,
        drop_rate: float = 0.0,
        meta_groups: list[int] | None = None,
        meta_names: list[str] | None = None,
        img_size: int | None = None,
        timm_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if meta_groups:
            log.warning("TimmClassifier is image-only; ignoring %d metadata features.", len(meta_groups))
        self.backbone_name = backbone
        self.model = create_encoder(
            backbone,
            pretrained=pretrained,
            weights_path=weights_path,
            num_classes=num_classes,
            drop_rate=drop_rate,
            **(timm_kwargs or {}),
        )
        self.num_classes = num_classes

    def forward(
        self, image: torch.Tensor, meta: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> NetOutput:
        """``{"logits": model(image)}``; ``meta`` and ``mask`` are ignored."""
        return {"logits": self.model(image)}

    def cam_layers(self) -> dict[str, nn.Module]:
        """``{"features": the deepest feature stage}`` of the timm CNN (``{}`` for models without ``feature_info``)."""
        return ImageOnlyNet(self.model).cam_layers()
