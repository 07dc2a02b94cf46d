"""ViTAtt: single-stage image + metadata fusion inside a ViT's self-attention (arXiv 2304.14505)."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
from timm.models.vision_transformer import Block

from dermfuse_models.blocks.metadata import MetadataTokenizer, metadata_tokenizer
from dermfuse_models.blocks.vit import create_vit, patch_tokens
from dermfuse_models.blocks.vit_attention import AttentionRecorder, CapturesViTAttention
from dermfuse_models.protocol import NetOutput, TokenLayout

FUSIONS = ("tokens", "late")


class ViTAtt(CapturesViTAttention, nn.Module):
    """Vision Transformer whose self-attention fuses image patches and clinical metadata.

    Token sequence (``fusion="tokens"``, our reading of paper: "single-stage multi-modal data fusion via
    the attention mechanism"): ``[CLS] + image patch tokens (+ position embedding) + one token per
    metadata feature``. All tokens pass *together* through every transformer block of the timm ViT, so
    metadata and image regions interact in each multi-head self-attention layer (no separate fusion
    stage); the classifier reads the class token after the final norm (paper: "Fused representation
    passes through a classification head"). paper: "The metadata is first embedded using fully
    connected layers with batch normalization", here one token per feature (``MetadataTokenizer``), so
    attention maps and the paper's paper: "TMME method" can be read per clinical feature via
    ``token_layout`` and ``meta_names``.

    Choices where the paper is silent:
        * Metadata token width = the ViT's ``embed_dim`` (required to share the sequence).
        * Metadata tokens get a learned per-feature type embedding instead of a position
          embedding (see ``MetadataTokenizer``); they are appended after the patch tokens, i.e.
          after timm's ``_pos_embed`` and ``patch_drop``, and before ``norm_pre``.
        * The position embedding is sized for ``img_size`` (pretrained/local weights are
          resampled by timm); ``input_size = img_size``, which the CLI links to
          ``data.image_size`` and ``protocol.call_net`` checks against every batch.
        * ``drop_rate`` is dropout on the class token before the linear classifier.
        * ``use_metadata=False`` or empty ``meta_groups`` gives the image-only ViT (the first arm
          of the metadata ablation) through the same code path, with no metadata parameters.
        * ``fusion``: where the metadata tokens meet the image. The summary reads both ways: "a
          multi-head self-attention fusion layer" after "a Vision Transformer encoder to extract
          patch embeddings", and "single-stage multi-modal fusion via the attention mechanism".
          ``"tokens"`` (default): the metadata tokens join the sequence before the first block
          and take part in every block. ``"late"``: the ViT runs on the image alone (its final
          norm included), then one fusion block (a timm ``Block`` of the ViT's width and heads:
          self-attention + MLP, pre-norm, residual) runs over ``[ViT tokens + metadata tokens]``,
          followed by its own LayerNorm; the class token after it is classified.

    Args:
        num_classes: number of output classes.
        meta_groups: encoded column width of each metadata feature, in column order
            (from ``dermfuse_data.tabular``); one token per entry.
        meta_names: feature names, one per group (for explanations); default ``meta_<i>``.
        backbone: timm ViT name with a class token (chosen: ``vit_base_patch16_224``; the summary names no size).
        pretrained: load hub weights (see ``create_encoder``; default False works offline).
        weights_path: local weights file for the backbone (implies pretrained).
        img_size: image size the position embedding is built for (the CLI sets it from ``data.image_size``).
        use_metadata: add metadata tokens (False = image-only ViT).
        drop_rate: dropout before the classifier.
        fusion: ``"tokens"`` (metadata in every block) or ``"late"`` (one fusion block after the ViT).

    Forward:
        ``forward(image (B,3,H,W), meta (B, sum(meta_groups)) | None, mask=None) -> {"logits": (B, K)}``
        (``mask`` is ignored).

    Explainability:
        ``set_attention_capture(True)`` (:class:`CapturesViTAttention`) switches every block to the
        non-fused attention path and stores each block's post-softmax attention ``(B, heads, T, T)``
        in ``self.attentions`` (reset at each forward). ``self.token_layout`` (a ``TokenLayout``:
        ``cls=0``, ``patches``, ``grid``, ``meta`` slice or ``None`` for the image-only model)
        describes the token order of the last forward (``late``: the ViT's blocks see only the
        class and patch tokens, the fusion block all of them). ``token_cam_layers()`` names the
        layer of ViT Grad-CAM: the ``norm1`` of the last block the class token attends in.
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
        fusion: str = "tokens",
    ) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"ViTAtt fusion={fusion!r} is not one of {FUSIONS}.")
        self.vit = create_vit("ViTAtt", backbone, img_size, pretrained=pretrained, weights_path=weights_path)
        self.input_size = int(img_size)
        embed_dim = int(self.vit.embed_dim)

        self.meta_tokenizer: MetadataTokenizer | None
        self.meta_tokenizer, self.meta_names = metadata_tokenizer(
            "ViTAtt", meta_groups, meta_names, embed_dim, enabled=use_metadata
        )
        self.use_metadata = self.meta_tokenizer is not None
        self.fusion = fusion
        self.fusion_block: Block | None = None
        self.fusion_norm: nn.Module | None = None
        if self.use_metadata and fusion == "late":
            heads = int(self.vit.blocks[-1].attn.num_heads)
            norm = partial(nn.LayerNorm, eps=1e-6)
            self.fusion_block = Block(embed_dim, heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=norm)
            self.fusion_norm = norm(embed_dim)

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
        meta_slice, meta_tokens = None, None
        if self.meta_tokenizer is not None:
            meta_tokens = self.meta_tokenizer(meta if meta is None else meta.to(dtype=x.dtype))
            meta_slice = slice(n_prefix_and_patches, n_prefix_and_patches + self.num_meta_tokens)
            if self.fusion_block is None:  # "tokens": metadata in every block
                x = torch.cat([x, meta_tokens], dim=1)
        self.token_layout = TokenLayout(
            cls=0, patches=slice(int(self.vit.num_prefix_tokens), n_prefix_and_patches), grid=grid, meta=meta_slice
        )
        x = self.vit.norm_pre(x)
        x = self.vit.blocks(x)
        x = self.vit.norm(x)
        if self.fusion_block is None:
            return x
        x = self.fusion_block(torch.cat([x, meta_tokens.to(dtype=x.dtype)], dim=1))  # "late": one fusion block
        return self.fusion_norm(x)

    def attention_modules(self) -> list[nn.Module]:
        """The ViT's attention modules, then the late-fusion block's (attention capture covers every block)."""
        blocks = super().attention_modules()
        return blocks + [self.fusion_block.attn] if self.fusion_block is not None else blocks

    def token_cam_layers(self) -> dict[str, nn.Module]:
        """ViT Grad-CAM layer: the ``norm1`` of the last block whose attention the class token reads
        (the late-fusion block, else the ViT's last block)."""
        last = self.fusion_block if self.fusion_block is not None else self.vit.blocks[-1]
        return {"last_block": last.norm1}

    def forward(
        self, image: torch.Tensor, meta: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> NetOutput:
        """Classify from the class token: ``{"logits": (B, num_classes)}``; ``mask`` is ignored, and ``meta``
        too for the image-only model."""
        tokens = self.forward_tokens(image, meta)
        cls = self.head_drop(tokens[:, 0])
        return {"logits": self.head(cls)}
