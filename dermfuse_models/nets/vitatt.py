"""ViTAtt: single-stage image + metadata fusion inside a ViT's self-attention (arXiv 2304.14505)."""

from __future__ import annotations

import torch
import torch.nn as nn

from dermfuse_models.blocks.metadata import MetadataTokenizer, metadata_tokenizer
from dermfuse_models.blocks.vit import create_vit, patch_tokens
from dermfuse_models.blocks.vit_attention import AttentionRecorder, CapturesViTAttention
from dermfuse_models.protocol import NetOutput, TokenLayout


class ViTAtt(CapturesViTAttention, nn.Module):
    """Vision Transformer whose self-attention fuses image patches and clinical metadata.

    Token sequence (paper Sec. 3, "single-stage multi-modal fusion via the attention
    mechanism"): ``[CLS] + image patch tokens (+ position embedding) + one token per metadata
    feature``. All tokens pass *together* through every transformer block of the timm ViT, so
    metadata and image regions interact in each multi-head self-attention layer (no separate
    fusion stage); the classifier reads the class token after the final norm (Sec. 3, standard
    ViT head). Metadata is embedded by FC + BatchNorm (Sec. 3), one token per feature
    (``MetadataTokenizer``), so attention maps and TMME relevancy (Sec. 3.3) can be read per
    clinical feature via ``token_layout`` and ``meta_names``.

    Choices where the paper is silent:
        * Metadata token width = the ViT's ``embed_dim`` (required to share the sequence).
        * Metadata tokens get a learned per-feature type embedding instead of a position
          embedding (see ``MetadataTokenizer``); they are appended after the patch tokens, i.e.
          after timm's ``_pos_embed`` and ``patch_drop``, and before ``norm_pre``.
        * The position embedding is sized for ``img_size`` (pretrained/local weights are
          resampled by timm); ``input_size = img_size``, which the CLI links to
          ``data.image_size`` and ``protocol.call_net`` checks against every batch.
        * ``drop_rate`` is dropout on the class token before the linear classifier.
        * ``use_metadata=False`` or empty ``meta_groups`` gives the image-only ViT baseline
          (paper's ablation) through the same code path, with no metadata parameters.

    Args:
        num_classes: number of output classes.
        meta_groups: encoded column width of each metadata feature, in column order
            (from ``dermfuse_data.tabular``); one token per entry.
        meta_names: feature names, one per group (for explanations); default ``meta_<i>``.
        backbone: timm ViT name with a class token (``vit_base_patch16_224`` in the paper).
        pretrained: load hub weights (see ``create_encoder``; default False works offline).
        weights_path: local weights file for the backbone (implies pretrained).
        img_size: image size the position embedding is built for (the CLI sets it from ``data.image_size``).
        use_metadata: add metadata tokens (False = image-only ViT).
        drop_rate: dropout before the classifier.

    Forward:
        ``forward(image (B,3,H,W), meta (B, sum(meta_groups)) | None, mask=None) -> {"logits": (B, K)}``
        (``mask`` is ignored).

    Explainability:
        ``set_attention_capture(True)`` (:class:`CapturesViTAttention`) switches every block to the
        non-fused attention path and stores each block's post-softmax attention ``(B, heads, T, T)``
        in ``self.attentions`` (reset at each forward). ``self.token_layout`` (a ``TokenLayout``:
        ``cls=0``, ``patches``, ``grid``, ``meta`` slice or ``None`` for the image-only model)
        describes the token order of the last forward.
    """

    def __init__(
        self,
        num_classes: int,
        meta_groups: list[int] | None = None,
        meta_names: list[str] | None = None,
        backbone: str = "vit_base_patch16_224",
        pretrained: bool = False,
        weights_path: str | None = None,
        img_size: int = 224,
        use_metadata: bool = True,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.vit = create_vit("ViTAtt", backbone, img_size, pretrained=pretrained, weights_path=weights_path)
        self.input_size = int(img_size)
        embed_dim = int(self.vit.embed_dim)

        self.meta_tokenizer: MetadataTokenizer | None
        self.meta_tokenizer, self.meta_names = metadata_tokenizer(
            "ViTAtt", meta_groups, meta_names, embed_dim, enabled=use_metadata
        )
        self.use_metadata = self.meta_tokenizer is not None

        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes)
        self.num_classes = num_classes

        self.attention_recorder = AttentionRecorder()
        self.token_layout: TokenLayout | None = None

    @property
    def num_meta_tokens(self) -> int:
        """Number of metadata tokens appended to the sequence (0 for the image-only model)."""
        return self.meta_tokenizer.num_features if self.meta_tokenizer is not None else 0

    def forward_tokens(self, image: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        """Run the fused token sequence through the ViT; returns normed tokens ``(B, T, D)``."""
        self.attention_recorder.new_forward()
        x, grid = patch_tokens(self.vit, image)
        n_prefix_and_patches = x.shape[1]
        meta_slice = None
        if self.meta_tokenizer is not None:
            meta_tokens = self.meta_tokenizer(meta if meta is None else meta.to(dtype=x.dtype))
            x = torch.cat([x, meta_tokens], dim=1)
            meta_slice = slice(n_prefix_and_patches, n_prefix_and_patches + self.num_meta_tokens)
        self.token_layout = TokenLayout(
            cls=0, patches=slice(int(self.vit.num_prefix_tokens), n_prefix_and_patches), grid=grid, meta=meta_slice
        )
        x = self.vit.norm_pre(x)
        x = self.vit.blocks(x)
        return self.vit.norm(x)

    def forward(
        self, image: torch.Tensor, meta: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> NetOutput:
        """Classify from the class token: ``{"logits": (B, num_classes)}``; ``mask`` is ignored, and ``meta``
        too for the image-only model."""
        tokens = self.forward_tokens(image, meta)
        cls = self.head_drop(tokens[:, 0])
        return {"logits": self.head(cls)}
