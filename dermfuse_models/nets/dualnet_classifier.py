"""DualNet stage 2: two DenseNet201 encoders fused by cross-attention, plus metadata (arXiv 2510.17773)."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import masks_to_boxes, roi_align

from dermfuse_models.blocks.cross_attention import CrossAttentionFusion
from dermfuse_models.blocks.metadata import MetadataTokenizer, metadata_tokenizer
from dermfuse_models.encoders import create_encoder
from dermfuse_models.protocol import AttentionMap, NetOutput

FUSIONS = ("cross_attention", "concat")
SEGMENTED_INPUTS = ("masked", "masked_crop")


class DualNetClassifier(nn.Module):
    """Image + segmented-lesion DenseNets, multi-head cross-attention, metadata transformer.

    Classification stage of the DualNet paper (arXiv 2510.17773; paper: "93.47% and 88.56% test
    accuracy" on HAM10000 and ISIC 2019):
        * paper: "two DenseNet201 encoders—one on the original image and one on the segmented lesion" (timm,
          headless); the segmented lesion is here the image multiplied by the lesion mask (``image *
          mask``) that stage 1 (:class:`~dermfuse_models.nets.dualnet_unet.DeepUNet`, via ``predict_masks``) or
          the ground truth provides in the batch key ``mask``.
        * Each encoder's last feature map ``(B, 1920, h, w)`` (7x7 at 224 px) becomes ``h*w``
          spatial tokens, linearly projected to ``embed_dim`` (one projection per stream).
        * Multi-head cross-attention exactly as the paper states, paper: "the original image
          provides query and value vectors while the segmented lesion provides key vectors", i.e. per head
          ``softmax(Q_orig K_seg^T / sqrt(d)) V_orig`` (:class:`CrossAttentionFusion` with
          ``value_source="query"``): the lesion decides where the model looks in the original
          image. The weights ``(B, heads, h*w, h*w)`` are kept in ``self.attention_maps["cross"]``
          (an ``AttentionMap`` whose keys are the ``image_grid`` of segmented-lesion positions).
        * paper: "clinical metadata (age, sex, anatomical site) processed through a transformer-based encoder":
          one token per clinical feature (:class:`MetadataTokenizer`) -> ``torch.nn.TransformerEncoder``.
        * paper: "additive fusion module and classifier head": mean-pooled image-fusion vector +
          mean-pooled metadata vector (both ``embed_dim``), then the classifier head.

    Choices where the paper is silent:
        * Segmented input = ``image * mask`` on the normalised image, so the background becomes 0,
          i.e. the ImageNet mean colour rather than black; masks that are not at the image size
          are resized (nearest). ``segmented_input="masked_crop"`` additionally crops the masked
          image to the mask's bounding box and resizes it to the input size (``roi_align``;
          an empty mask keeps the whole image) for the "lesion crop" reading of the paper; the
          key positions of ``attention_maps["cross"]`` are then in crop, not image, coordinates.
        * No position embedding on the spatial tokens (both streams share the image geometry and
          the fused tokens are mean-pooled); the cross-attention is a pre-norm transformer layer
          with residual and a GELU MLP (``mlp_ratio`` 4) around ``torch.nn.MultiheadAttention``.
        * ``embed_dim=512``, ``num_heads=8`` (1 / 4 / 8 are suggested: "different head configurations
          (1, 4, 8 heads)"), ``meta_layers=2``
          pre-norm layers with ``meta_heads=4`` and feed-forward width ``4 * embed_dim``;
          ``attention_dropout`` inside both attentions.
        * Each pooled vector goes through a LayerNorm before the addition so neither stream
          dominates by scale; head = Dropout -> Linear(D, D/2) -> GELU -> Dropout -> Linear(D/2, K).
        * ``share_encoders=True`` uses one DenseNet for both streams (Siamese; half the encoder
          parameters); the paper uses paper: "two DenseNet201 encoders".

    Ablation switches: ``use_segmentation=False`` (one DenseNet on the image, no second encoder,
    no cross-attention: pooled projected tokens), ``fusion="concat"`` (both encoders, no
    cross-attention: concatenated global-average-pooled features, projected to ``embed_dim``),
    ``use_metadata=False`` (image vector only), ``num_heads`` in {1, 4, 8}.

    Args:
        num_classes: number of classes.
        meta_groups: encoded column width of each clinical feature (``dermfuse_data.tabular``).
        meta_names: one name per feature (for explanations); default ``meta_<i>``.
        encoder: timm backbone name (``densenet201`` in the paper; any timm CNN whose
            ``forward_features`` returns ``(B, C, h, w)`` works).
        pretrained: ImageNet weights (see ``create_encoder``). weights_path: local weights file.
        use_segmentation: add the segmented-lesion encoder (needs ``mask`` in forward).
        fusion: ``"cross_attention"`` (paper) or ``"concat"``.
        use_metadata: add the metadata transformer (needs ``meta`` in forward).
        num_heads: cross-attention heads (must divide ``embed_dim``).
        embed_dim: token / fusion width.
        meta_layers: transformer layers over the metadata tokens.
        dropout: classifier-head dropout.
        share_encoders: one encoder for both streams.
        segmented_input: ``"masked"`` (paper) or ``"masked_crop"``.
        meta_heads: heads of the metadata transformer (must divide ``embed_dim``).
        attention_dropout: dropout inside the cross-attention and metadata transformer.
        encoder_kwargs: extra ``timm.create_model`` arguments (``drop_rate``, ...).

    Forward:
        ``forward(image (B,3,H,W), meta (B, sum(meta_groups)) | None, mask (B,1,H,W) | None)
        -> {"logits": (B, num_classes)}`` (``meta`` / ``mask`` ignored by the ablations without them).

    Explainability:
        ``cam_layers()`` -> ``{"image": ..., "segmented": ...}`` (DenseNet ``features.norm5`` of
        each branch); ``attention_maps["cross"]``, an ``AttentionMap`` of weights
        ``(B, heads, h*w, h*w)`` after each cross-attention forward, queries = image positions and
        keys = segmented-lesion positions (``keys="image_grid"``, ``grid=(h, w)``), both row-major
        over the ``h x w`` feature grid (``{}`` without cross-attention; set
        ``cross_attention.keep_attention_grad = True`` to keep it differentiable).
    """

    def __init__(
        self,
        num_classes: int,
        meta_groups: list[int] | None = None,
        meta_names: list[str] | None = None,
        encoder: str = "densenet201",
        pretrained: bool = False,
        weights_path: str | None = None,
        use_segmentation: bool = True,
        fusion: Literal["cross_attention", "concat"] = "cross_attention",
        use_metadata: bool = True,
        num_heads: int = 8,
        embed_dim: int = 512,
        meta_layers: int = 2,
        dropout: float = 0.3,
        share_encoders: bool = False,
        segmented_input: Literal["masked", "masked_crop"] = "masked",
        meta_heads: int = 4,
        attention_dropout: float = 0.1,
        encoder_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"DualNetClassifier fusion must be one of {FUSIONS}, got {fusion!r}.")
        if segmented_input not in SEGMENTED_INPUTS:
            raise ValueError(
                f"DualNetClassifier segmented_input must be one of {SEGMENTED_INPUTS}, got {segmented_input!r}."
            )
        for name, heads in (("num_heads", num_heads), ("meta_heads", meta_heads)):
            if heads < 1 or embed_dim % heads != 0:
                raise ValueError(f"DualNetClassifier {name}={heads} must be >= 1 and divide embed_dim={embed_dim}.")
        self.num_classes = int(num_classes)
        self.embed_dim = int(embed_dim)
        self.use_segmentation = bool(use_segmentation)
        self.fusion = fusion if self.use_segmentation else None
        self.segmented_input = segmented_input
        self.share_encoders = bool(share_encoders) and self.use_segmentation

        def build_encoder() -> nn.Module:
            return create_encoder(
                encoder,
                pretrained=pretrained,
                weights_path=weights_path,
                num_classes=0,
                global_pool="",
                **(encoder_kwargs or {}),
            )

        self.image_encoder = build_encoder()
        if not hasattr(self.image_encoder, "forward_features"):
            raise TypeError(f"DualNetClassifier needs a timm CNN with forward_features; {encoder!r} has none.")
        feature_dim = int(self.image_encoder.num_features)
        self.feature_dim = feature_dim
        if self.use_segmentation:
            self.segmented_encoder = self.image_encoder if self.share_encoders else build_encoder()
        else:
            self.segmented_encoder = None

        # Image streams -> one embed_dim vector.
        self.image_projection: nn.Module | None = None
        self.segmented_projection: nn.Module | None = None
        self.cross_attention: CrossAttentionFusion | None = None
        self.concat_projection: nn.Module | None = None
        if self.fusion == "concat":
            self.concat_projection = nn.Linear(2 * feature_dim, embed_dim)
        else:
            self.image_projection = nn.Linear(feature_dim, embed_dim)
            if self.fusion == "cross_attention":
                self.segmented_projection = nn.Linear(feature_dim, embed_dim)
                self.cross_attention = CrossAttentionFusion(
                    embed_dim, num_heads, dropout=attention_dropout, value_source="query"
                )
        self.image_norm = nn.LayerNorm(embed_dim)

        # Metadata transformer.
        self.meta_tokenizer: MetadataTokenizer | None
        self.meta_tokenizer, self.meta_names = metadata_tokenizer(
            "DualNetClassifier", meta_groups, meta_names, embed_dim, enabled=use_metadata
        )
        self.use_metadata = self.meta_tokenizer is not None
        self.meta_encoder: nn.Module | None = None
        if self.use_metadata:
            layer = nn.TransformerEncoderLayer(
                embed_dim,
                meta_heads,
                dim_feedforward=4 * embed_dim,
                dropout=attention_dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            self.meta_encoder = nn.TransformerEncoder(
                layer, num_layers=meta_layers, norm=nn.LayerNorm(embed_dim), enable_nested_tensor=False
            )

        hidden = max(embed_dim // 2, 1)
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(embed_dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        self.attention_maps: dict[str, AttentionMap] = {}

    # ------------------------------------------------------------------ inputs
    def segmented_image(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The segmented-lesion input: ``image * mask`` (optionally cropped to the lesion box)."""
        if mask.ndim == 3:
            mask = mask.unsqueeze(1)
        if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] != image.shape[0]:
            raise ValueError(
                f"DualNetClassifier mask must be (B, 1, H, W) with B={image.shape[0]}, got {tuple(mask.shape)}."
            )
        mask = mask.to(dtype=image.dtype)
        if mask.shape[-2:] != image.shape[-2:]:
            mask = F.interpolate(mask, size=image.shape[-2:], mode="nearest")
        lesion = image * mask
        if self.segmented_input == "masked_crop":
            lesion = _crop_to_mask(lesion, mask)
        return lesion

    # ------------------------------------------------------------------ forward
    def forward(
        self, image: torch.Tensor, meta: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> NetOutput:
        """``{"logits": (B, num_classes)}``; ``mask`` needed with segmentation, ``meta`` with metadata."""
        self.attention_maps = {}
        image_features = self.image_encoder.forward_features(image)  # (B, C, h, w)
        if self.use_segmentation:
            if mask is None:
                raise ValueError(
                    "DualNetClassifier(use_segmentation=True) needs lesion masks for its segmented-image "
                    "branch but forward got mask=None. Serve masks in the batch: masks predicted by the "
                    "stage-1 DeepUNet (`python -m dermfuse_models.runner two-stage fit --config ...` runs "
                    "dermfuse_models.nets.dualnet_unet.predict_masks and sets data.predicted_masks), or "
                    "ground-truth masks (data.use_masks=true, datasets that ship masks); or build the "
                    "model with use_segmentation=False."
                )
            segmented_features = self.segmented_encoder.forward_features(self.segmented_image(image, mask))
            if self.fusion == "cross_attention":
                fused = self.cross_attention(
                    self.image_projection(_tokens(image_features)),
                    self.segmented_projection(_tokens(segmented_features)),
                )
                self.attention_maps["cross"] = AttentionMap(
                    self.cross_attention.last_attention,
                    keys="image_grid",
                    grid=(int(segmented_features.shape[-2]), int(segmented_features.shape[-1])),
                )
                image_vector = fused.mean(dim=1)
            else:
                pooled = torch.cat([image_features.mean(dim=(2, 3)), segmented_features.mean(dim=(2, 3))], dim=1)
                image_vector = self.concat_projection(pooled)
        else:
            image_vector = self.image_projection(_tokens(image_features)).mean(dim=1)
        fused_vector = self.image_norm(image_vector)

        if self.meta_tokenizer is not None and self.meta_encoder is not None:
            meta = meta if meta is None else meta.to(dtype=fused_vector.dtype)
            meta_tokens = self.meta_encoder(self.meta_tokenizer(meta))
            fused_vector = fused_vector + meta_tokens.mean(dim=1)
        return {"logits": self.head(fused_vector)}

    # ------------------------------------------------------------------ explainability
    def cam_layers(self) -> dict[str, nn.Module]:
        """Grad-CAM layers: each branch's last feature layer (DenseNet ``features.norm5``).

        Keys ``"image"`` and, with segmentation, ``"segmented"``. With ``share_encoders=True``
        both names are the same module, whose hooks then fire once per stream.
        """
        layers = {"image": _last_feature_layer(self.image_encoder)}
        if self.segmented_encoder is not None:
            layers["segmented"] = _last_feature_layer(self.segmented_encoder)
        return layers


def _tokens(features: torch.Tensor) -> torch.Tensor:
    """``(B, C, h, w)`` feature map -> ``(B, h*w, C)`` spatial tokens (row-major)."""
    return features.flatten(2).transpose(1, 2)


def _last_feature_layer(encoder: nn.Module) -> nn.Module:
    """The module producing a timm encoder's last feature map (``features.norm5`` for DenseNet)."""
    info = getattr(encoder, "feature_info", None)
    if info:
        last = info[-1]
        name = last["module"] if isinstance(last, dict) else info.module_name(-1)
        return encoder.get_submodule(name)
    raise NotImplementedError(f"{type(encoder).__name__} has no timm feature_info to locate its last feature layer.")


def _crop_to_mask(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Crop each image to its mask's bounding box and resize it back to the image size."""
    b, _, h, w = image.shape
    full = torch.tensor([0.0, 0.0, w - 1.0, h - 1.0], device=image.device, dtype=image.dtype)
    boxes = full.repeat(b, 1)
    binary = mask[:, 0] > 0.5
    has_lesion = binary.flatten(1).any(dim=1)
    if has_lesion.any():
        boxes[has_lesion] = masks_to_boxes(binary[has_lesion]).to(image.dtype)
    # Boxes in pixel-index coordinates; +1 on the far edge covers the last pixel (aligned=True
    # samples pixel centres, so the full box reproduces the image exactly).
    boxes[:, 2:] += 1.0
    rois = torch.cat([torch.arange(b, device=image.device, dtype=image.dtype)[:, None], boxes], dim=1)
    return roi_align(image, rois, output_size=(h, w), spatial_scale=1.0, sampling_ratio=1, aligned=True)
