"""Mammography + clinical cross-attention fusion classifier (arXiv 2508.16000)."""

from __future__ import annotations

import torch
import torch.nn as nn

from dermfuse_models.blocks.cross_attention import CoAttentionFusion, CrossAttentionFusion
from dermfuse_models.blocks.fusion import ConcatFusion, ModalityDropout
from dermfuse_models.blocks.metadata import MetadataTokenizer, feature_names
from dermfuse_models.encoders import create_encoder
from dermfuse_models.protocol import AttentionMap, NetOutput

FUSIONS = ("cross", "co", "concat", "image", "clinical")


class MammoXAttn(nn.Module):
    """ResNet-50 image branch + one-hot clinical branch fused by cross-attention (arXiv 2508.16000).

    Paper pipeline: paper: "Mammogram (224x224) -> ResNet-50 (Backbone) -> GAP -> Projection Head
    (100d)" (here: global average pool (2048) -> affine + ReLU to a ``latent_dim = 100`` embedding
    ``e``); paper: "5 Categorical Features -> One-Hot Encoding (36d) -> Projection Head (100d)" (breast
    density, mass shape, mass margins, calcification type and distribution; paper: "an affine
    transformation and ReLU (Eq. 3)"); fusion; paper: "Dense Layers -> Softmax (Benign/Malignant)".
    Modality dropout (paper: "with probability p=0.3", training only) zeroes one modality's embedding
    per sample.

    ``fusion`` (the paper compares paper: "cross-attention and co-attention fusion strategies" and
    paper: "simple feature concatenation (AUC 0.98 vs 0.81)"; Table 2):
        * ``"cross"`` (paper's model): ``e`` is the query, the clinical *features* are keys/values
          (Eqs. 10-15, paper: "image embeddings as Queries ($Q$) and clinical embeddings as Keys/Values"):
          ``a = CrossAttn(e, t_1..t_F)`` (the shared :class:`CrossAttentionFusion`,
          ``torch.nn.MultiheadAttention`` without norm or residual); fused ``[e, a]`` (2d).
        * ``"co"``: both directions between two sequences: the image side is the ResNet layer-4
          grid (each location projected by the same affine + ReLU as ``e``), the clinical side
          the feature tokens. Image locations attend to clinical tokens and clinical tokens attend
          to image locations (separate projections); each stream is averaged over its tokens and
          the streams are concatenated with ``e`` and the mean clinical token:
          ``[e, mean_loc a, mean_f t_f, mean_f b_f]`` (4d).
        * ``"concat"``: ``[e, c]`` with ``c`` the paper's whole-vector clinical projection (Eq. 3).
        * ``"image"``: ``e`` only (an image-only ResNet-50 baseline; ``meta`` ignored).
        * ``"clinical"``: ``c`` only (a clinical-only baseline: no image backbone is built; ``image``
          ignored). The paper reports paper: "unimodal baselines (AUC 0.87)" without saying which.

    Choices where the paper is silent:
        * Clinical tokens for attention: one token per clinical feature, ``ReLU(W_f x_f + b_f)`` on
          the feature's one-hot block (``meta_groups`` from the data module; the shared
          ``MetadataTokenizer(post="relu", feature_embedding=False)``); attention over the
          single 36-d vector the paper describes would have one key and constant weight 1.
        * ``num_heads=4`` (100 = 4 x 25); ``attn_dropout=0``; classifier ``Linear(fused, latent_dim)
          -> ReLU -> Dropout(dropout=0.3) -> Linear(latent_dim, num_classes)``.
        * Modality dropout acts on the projected embeddings (and their token sequences) of the
          fusion modes with two modalities; image/clinical-only models have nothing to drop.
          Dropped embeddings are zeros, kept ones are not rescaled.
        * Co-attention's image side is the layer-4 grid (7x7 at 224 px) because clinical tokens
          attending to one pooled image vector would again have a single key; streams are
          concatenated, not summed.

    Args:
        num_classes: classes (2: benign vs malignant).
        meta_groups: encoded width of each clinical feature (CLI-linked from the data module);
            required unless ``fusion="image"``.
        meta_names: clinical feature names (for attention maps); default ``meta_<i>``.
        backbone: timm CNN (``resnet50`` in the paper; ``cam_layers`` expects ``layer4``).
        pretrained / weights_path: ImageNet weights (hub / local file, see ``create_encoder``).
        latent_dim: shared embedding width d (paper: "a shared 100-dimensional latent space"). fusion: see above.
        num_heads: attention heads (``latent_dim`` must be divisible). modality_dropout: p.
        dropout: dropout in the classifier. attn_dropout: dropout on attention weights.

    Forward:
        ``forward(image (B,3,H,W), meta (B, sum(meta_groups)) | None, mask=None) -> {"logits": (B, K)}``
        (``mask`` is ignored).

    Explainability: ``cam_layers() -> {"image": backbone.layer4}`` (Grad-CAM); after each forward
    ``attention_maps`` holds ``AttentionMap``s of detached ``(B, heads, Q, K)`` weights:
    ``"image_to_clinical"`` (``cross``: Q = the pooled image query; ``co``: Q = layer-4 locations,
    row-major; K = clinical features in ``meta_names`` order, ``keys="feature_tokens"``) and, for
    ``co``, ``"clinical_to_image"`` (Q = features, K = layer-4 locations, ``keys="image_grid"``).
    """

    def __init__(
        self,
        num_classes: int = 2,
        meta_groups: list[int] | None = None,
        meta_names: list[str] | None = None,
        backbone: str = "resnet50",
        pretrained: bool = False,
        weights_path: str | None = None,
        latent_dim: int = 100,
        fusion: str = "cross",
        num_heads: int = 4,
        modality_dropout: float = 0.3,
        dropout: float = 0.3,
        attn_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"MammoXAttn fusion={fusion!r} is not one of {FUSIONS}.")
        if fusion in ("cross", "co") and latent_dim % num_heads != 0:
            raise ValueError(
                f"MammoXAttn latent_dim={latent_dim} must be divisible by num_heads={num_heads} "
                "(e.g. 100 with 4 or 5 heads)."
            )
        groups = [int(w) for w in (meta_groups or [])]
        if fusion != "image" and not groups:
            raise ValueError(
                f"MammoXAttn(fusion={fusion!r}) needs the clinical features' meta_groups (set data.meta_features "
                "in the config; the CLI links data.meta_groups), or use fusion='image' for the image-only model."
            )
        self.fusion = fusion
        self.num_classes = int(num_classes)
        self.latent_dim = int(latent_dim)
        self.meta_groups = groups if fusion != "image" else []
        self.meta_names = feature_names("MammoXAttn", groups, meta_names) if fusion != "image" else []

        uses_image = fusion != "clinical"
        self.backbone: nn.Module | None = None
        self.image_proj: nn.Module | None = None
        if uses_image:
            self.backbone = create_encoder(backbone, pretrained=pretrained, weights_path=weights_path, num_classes=0)
            self.image_proj = nn.Sequential(nn.Linear(int(self.backbone.num_features), latent_dim), nn.ReLU())
        d = latent_dim
        self.clinical_proj: nn.Module | None = None
        if fusion in ("concat", "clinical"):
            self.clinical_proj = nn.Sequential(nn.Linear(sum(groups), d), nn.ReLU())
        self.clinical_tokens: MetadataTokenizer | None = None
        self.cross_attention: CrossAttentionFusion | None = None
        self.co_attention: CoAttentionFusion | None = None
        if fusion in ("cross", "co"):
            self.clinical_tokens = MetadataTokenizer(
                groups, d, post="relu", feature_embedding=False, owner="MammoXAttn"
            )
        if fusion == "cross":
            self.cross_attention = CrossAttentionFusion(d, num_heads, attn_dropout, mlp_ratio=0, residual=False)
        elif fusion == "co":
            self.co_attention = CoAttentionFusion(d, num_heads, attn_dropout)
        self.concat = ConcatFusion()
        self.modality_dropout = ModalityDropout(modality_dropout)
        fused_dim = {"image": d, "clinical": d, "concat": 2 * d, "cross": 2 * d, "co": 4 * d}[fusion]
        self.classifier = nn.Sequential(
            nn.Linear(fused_dim, d), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d, num_classes)
        )
        self.attention_maps: dict[str, AttentionMap] = {}

    def cam_layers(self) -> dict[str, nn.Module]:
        """Grad-CAM target layers: ``{"image": backbone.layer4}`` (empty for the clinical-only model)."""
        if self.backbone is None:
            return {}
        layer = getattr(self.backbone, "layer4", None)
        if layer is None:
            raise AttributeError(
                f"cam_layers expects a ResNet-style backbone with layer4; got {type(self.backbone).__name__}."
            )
        return {"image": layer}

    def _check_meta(self, meta: torch.Tensor | None) -> torch.Tensor:
        if meta is None:
            raise ValueError(
                f"MammoXAttn(fusion={self.fusion!r}) needs the batch's 'meta' clinical vector; got meta=None."
            )
        if meta.ndim != 2 or meta.shape[1] != sum(self.meta_groups):
            raise ValueError(
                f"MammoXAttn expected meta of shape (B, {sum(self.meta_groups)}) for meta_groups={self.meta_groups}, "
                f"got {tuple(meta.shape)}."
            )
        return meta

    def forward(
        self, image: torch.Tensor, meta: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> NetOutput:
        """Class logits ``{"logits": (B, num_classes)}`` (see the class docstring per fusion)."""
        self.attention_maps = {}
        image_parts: list[torch.Tensor] = []
        grid = (0, 0)
        if self.backbone is not None:
            fmap = self.backbone.forward_features(image)  # (B, C, h, w)
            grid = (int(fmap.shape[-2]), int(fmap.shape[-1]))
            image_parts.append(self.image_proj(fmap.mean(dim=(2, 3))))
            if self.fusion == "co":
                image_parts.append(self.image_proj(fmap.flatten(2).transpose(1, 2)))  # (B, h*w, d)
        clinical_parts: list[torch.Tensor] = []
        if self.fusion != "image":
            meta = self._check_meta(meta).to(dtype=next(self.classifier.parameters()).dtype)
            if self.clinical_proj is not None:
                clinical_parts.append(self.clinical_proj(meta))
            if self.clinical_tokens is not None:
                clinical_parts.append(self.clinical_tokens(meta))

        if image_parts and clinical_parts:
            image_parts, clinical_parts = self.modality_dropout([image_parts, clinical_parts])
        fused = self._fuse(image_parts, clinical_parts, grid)
        return {"logits": self.classifier(fused)}

    def _fuse(
        self, image_parts: list[torch.Tensor], clinical_parts: list[torch.Tensor], grid: tuple[int, int]
    ) -> torch.Tensor:
        """The fused vector of ``fusion``; ``grid`` is the layer-4 grid (co-attention's image keys)."""
        if self.fusion == "image":
            return image_parts[0]
        if self.fusion == "clinical":
            return clinical_parts[0]
        if self.fusion == "concat":
            return self.concat(image_parts[0], clinical_parts[0])
        e, tokens = image_parts[0], clinical_parts[0]
        if self.fusion == "cross":
            attended = self.cross_attention(e[:, None], tokens)
            self.attention_maps["image_to_clinical"] = self._clinical_keys(self.cross_attention.last_attention)
            return self.concat(e, attended[:, 0])
        image_tokens = image_parts[1]
        image_att, tokens_att, weights = self.co_attention(image_tokens, tokens)
        self.attention_maps["image_to_clinical"] = self._clinical_keys(weights["a_to_b"])
        self.attention_maps["clinical_to_image"] = AttentionMap(weights["b_to_a"].detach(), "image_grid", grid=grid)
        return self.concat(e, image_att.mean(dim=1), tokens.mean(dim=1), tokens_att.mean(dim=1))

    def _clinical_keys(self, weights: torch.Tensor) -> AttentionMap:
        """Detached attention over the clinical feature tokens, named by ``meta_names``."""
        return AttentionMap(weights.detach(), "feature_tokens", names=tuple(self.meta_names))
