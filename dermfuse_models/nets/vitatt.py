"""ViTAtt: single-stage image + metadata fusion inside a ViT's self-attention (arXiv 2304.14505)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from dermfuse_models.blocks.metadata import MetadataTokenizer
from dermfuse_models.encoders import create_encoder

_REQUIRED_VIT_PARTS = ("patch_embed", "_pos_embed", "blocks", "norm", "cls_token", "embed_dim")


class ViTAtt(nn.Module):
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
        * The backbone is built with ``dynamic_img_size=True`` and ``img_size``: the position
          embedding is sized for ``img_size`` (pretrained/local weights are resampled by timm)
          and other input sizes are interpolated at run time.
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
        img_size: image size the position embedding is built for.
        use_metadata: add metadata tokens (False = image-only ViT).
        drop_rate: dropout before the classifier.

    Forward:
        ``forward(image (B,3,H,W), meta (B, sum(meta_groups)) | None) -> {"logits": (B, K)}``.

    Explainability:
        ``set_attention_capture(True)`` switches every block to the non-fused attention path and
        stores each block's post-softmax attention ``(B, heads, T, T)`` in ``self.attentions``
        (reset at each forward). ``self.token_layout`` = ``dict(cls=0, patches=slice,
        meta=slice)`` describes the token order of the last forward.
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
        self.vit = create_encoder(
            backbone,
            pretrained=pretrained,
            weights_path=weights_path,
            num_classes=0,
            img_size=img_size,
            dynamic_img_size=True,
        )
        missing = [part for part in _REQUIRED_VIT_PARTS if not hasattr(self.vit, part)]
        if missing or self.vit.cls_token is None:
            raise TypeError(
                f"ViTAtt needs a timm VisionTransformer with a class token; backbone {backbone!r} "
                f"lacks {missing or ['cls_token']}. Use e.g. 'vit_base_patch16_224'."
            )
        embed_dim = int(self.vit.embed_dim)

        groups = [int(w) for w in (meta_groups or [])]
        self.use_metadata = bool(use_metadata) and len(groups) > 0
        if self.use_metadata:
            names = list(meta_names) if meta_names is not None else [f"meta_{i}" for i in range(len(groups))]
            if len(names) != len(groups):
                raise ValueError(
                    f"ViTAtt got {len(names)} meta_names for {len(groups)} meta_groups; give one name per feature."
                )
            self.meta_tokenizer: MetadataTokenizer | None = MetadataTokenizer(groups, embed_dim)
            self.meta_names: list[str] = names
        else:
            self.meta_tokenizer = None
            self.meta_names = []

        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes)
        self.num_classes = num_classes

        self.attentions: list[torch.Tensor] = []
        self.token_layout: dict[str, Any] = {}
        self._attn_hooks: list[Any] = []
        self._fused_backup: list[bool] = []
        self._keep_attention_grad = False

    @property
    def num_meta_tokens(self) -> int:
        """Number of metadata tokens appended to the sequence (0 for the image-only model)."""
        return self.meta_tokenizer.num_features if self.meta_tokenizer is not None else 0

    def forward_tokens(self, image: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        """Run the fused token sequence through the ViT; returns normed tokens ``(B, T, D)``."""
        if self._attn_hooks:
            self.attentions = []
        x = self.vit.patch_embed(image)
        x = self.vit._pos_embed(x)  # prepends [CLS] (+ register tokens), adds position embedding
        x = self.vit.patch_drop(x)
        n_prefix_and_patches = x.shape[1]
        first_patch = int(self.vit.num_prefix_tokens)
        if self.meta_tokenizer is not None:
            if meta is None:
                raise ValueError(
                    "ViTAtt was built with metadata (use_metadata=True, meta_groups="
                    f"{self.meta_tokenizer.group_widths}) but forward got meta=None; pass the "
                    "batch's 'meta' tensor or build the model with use_metadata=False."
                )
            meta_tokens = self.meta_tokenizer(meta.to(dtype=x.dtype))
            x = torch.cat([x, meta_tokens], dim=1)
        self.token_layout = {
            "cls": 0,
            "patches": slice(first_patch, n_prefix_and_patches),
            "meta": slice(n_prefix_and_patches, n_prefix_and_patches + self.num_meta_tokens),
        }
        x = self.vit.norm_pre(x)
        x = self.vit.blocks(x)
        return self.vit.norm(x)

    def forward(self, image: torch.Tensor, meta: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Classify from the class token: ``{"logits": (B, num_classes)}``; ``meta`` ignored if unused."""
        tokens = self.forward_tokens(image, meta)
        cls = self.head_drop(tokens[:, 0])
        return {"logits": self.head(cls)}

    def set_attention_capture(self, enabled: bool = True, keep_grad: bool = False) -> None:
        """Record post-softmax attention of every block in ``self.attentions`` during forward.

        Enabling sets ``block.attn.fused_attn = False`` (fused SDPA returns no attention map) and
        hooks ``block.attn.attn_drop``, whose input is the softmax output. Disabling removes the
        hooks and restores the previous ``fused_attn`` flags; logits are identical either way.

        Args:
            enabled: turn capture on or off.
            keep_grad: keep the stored maps in the autograd graph and ``retain_grad()`` them, so
                that ``attn.grad`` is available after ``backward()`` (attention x gradient
                relevancy such as TMME, paper Sec. 3.3). Otherwise maps are detached.
        """
        blocks = list(self.vit.blocks)
        if enabled:
            self._keep_attention_grad = keep_grad
            if self._attn_hooks:
                return
            for i, block in enumerate(blocks):
                attn = getattr(block, "attn", None)
                if attn is None or not hasattr(attn, "attn_drop") or not hasattr(attn, "fused_attn"):
                    raise NotImplementedError(
                        f"Attention capture needs timm's Attention (with attn_drop and fused_attn) in "
                        f"every block; block {i} has {type(attn).__name__}."
                    )
            self._fused_backup = [block.attn.fused_attn for block in blocks]
            for block in blocks:
                block.attn.fused_attn = False
                self._attn_hooks.append(block.attn.attn_drop.register_forward_hook(self._store_attention))
        else:
            for handle in self._attn_hooks:
                handle.remove()
            self._attn_hooks = []
            for block, fused in zip(blocks, self._fused_backup, strict=False):
                block.attn.fused_attn = fused
            self._fused_backup = []
            self.attentions = []

    def _store_attention(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        """Forward hook on ``attn.attn_drop``: keep its input, the softmax probabilities."""
        attn = inputs[0]
        if self._keep_attention_grad and attn.requires_grad:
            attn.retain_grad()
        else:
            attn = attn.detach()
        self.attentions.append(attn)
