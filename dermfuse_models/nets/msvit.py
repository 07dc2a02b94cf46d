"""MSViT: ViT with multi-scale self-attention and lesion-mask attention regularisation (arXiv 2502.06243)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from dermfuse_models.blocks.multiscale_attention import MultiScaleSelfAttention
from dermfuse_models.blocks.vit import create_vit, patch_tokens
from dermfuse_models.blocks.vit_attention import AttentionRecorder, CapturesViTAttention
from dermfuse_models.protocol import NetOutput, TokenLayout

log = logging.getLogger(__name__)


def attention_outside_mask_loss(
    cls_attention: torch.Tensor, mask: torch.Tensor, grid: tuple[int, int], eps: float = 1e-8
) -> torch.Tensor:
    """Share of the class token's patch attention that falls outside the lesion (the paper's ``L_attn``).

    ``cls_attention (B, rows*cols)`` (class-token row of the attention, patch columns, any
    non-negative scale) is renormalised to a distribution over patches; ``mask (B, 1, H, W)`` 0/1
    is resized to the patch grid with area interpolation (fraction of each patch covered by
    lesion). Per sample ``sum_p a_p (1 - m_p)`` lies in [0, 1]; samples whose mask is empty
    contribute 0 and the result is the mean over the whole batch.

    Renormalising over patches means attention the class token keeps on itself (or on register
    tokens) can neither lower nor raise the penalty: the only way down is to move patch attention
    onto the lesion.
    """
    if cls_attention.ndim != 2 or cls_attention.shape[1] != grid[0] * grid[1]:
        raise ValueError(
            f"cls_attention must be (B, {grid[0] * grid[1]}) for a {grid} patch grid, got {tuple(cls_attention.shape)}."
        )
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] != cls_attention.shape[0]:
        raise ValueError(f"mask must be (B, 1, H, W) with B={cls_attention.shape[0]}, got {tuple(mask.shape)}.")
    mask_patch = F.interpolate(mask.to(cls_attention.dtype), size=tuple(grid), mode="area").flatten(1)
    attn = cls_attention / cls_attention.sum(dim=1, keepdim=True).clamp_min(eps)
    outside = (attn * (1.0 - mask_patch)).sum(dim=1)
    has_lesion = (mask_patch.sum(dim=1) > 0).to(outside.dtype)
    return (outside * has_lesion).mean()


def resolve_backbone(backbone: str, patch_size: int | None) -> tuple[str, dict[str, Any]]:
    """timm name and extra kwargs that give ``backbone`` the requested ``patch_size``.

    ``None`` or the name's own patch size: unchanged. Otherwise, if timm registers the same name
    with ``patch<patch_size>`` (``vit_base_patch16_224`` -> ``vit_base_patch32_224``) that variant
    is used (it has its own pretrained weights); else ``patch_size`` is passed to timm, which
    resamples a pretrained patch embedding to the new size.
    """
    if patch_size is None:
        return backbone, {}
    found = re.search(r"patch(\d+)", backbone)
    if found and int(found.group(1)) == patch_size:
        return backbone, {}
    if found:
        variant = backbone[: found.start()] + f"patch{patch_size}" + backbone[found.end() :]
        if timm.is_model(variant):
            return variant, {}
    return backbone, {"patch_size": int(patch_size)}


class MSViT(CapturesViTAttention, nn.Module):
    """Vision Transformer with multi-scale self-attention and attention-guided regularisation.

    Architecture, paper: "Patch embedding with positional encoding → Multi-scale attention block with
    learnable scale weights → MLP head → Weighted loss calculation (L_CE + λ·L_attn)": image -> patch
    embedding + position embedding -> ``depth`` transformer blocks whose self-attention is multi-scale (every block's
    ``attn`` is a :class:`MultiScaleSelfAttention`: keys/values at patch resolution and averaged
    over ``s x s`` patch neighbourhoods for each ``s`` in ``scales``, outputs combined with learned
    softmax scale weights) -> final norm -> class token -> linear head. ``scales=(1,)`` is the
    plain ViT baseline (same function as timm's, same parameters minus one scale logit per block; the
    paper names a paper: "standard Vision Transformer" among its baselines).

    Attention regularisation (``L = L_CE + lambda * L_attn``; paper: "penalizes the model when its attention
    map deviates from the ground truth lesion mask"): when ``forward`` gets a
    lesion ``mask`` (ISIC 2017 Part 1, batch key ``mask``) and ``attn_reg_weight > 0``, the class
    token's effective attention over the patches (averaged over heads and over the layers in
    ``attn_reg_layers``) is penalised for the share lying outside the lesion
    (:func:`attention_outside_mask_loss`); the net returns
    ``aux_losses={"attn_reg": attn_reg_weight * loss}``, which the task adds to the weighted CE.
    Inverse-frequency weighting of the CE (paper: "dynamic frequency-based reweighting") is the
    task's ``class_weights`` switch, not part of the net.

    Choices where the paper is silent:
        * Multi-scale mechanism: multi-scale keys/values with full-resolution queries (pooling
          attention, as in PVT/MViT) rather than pooling + upsampling token features: the output
          keeps one token per patch, scale 1 reuses the pretrained attention unchanged, and the
          block is exactly an attention over the original tokens (so rollout/TMME/regularisation
          read one ``(B, heads, N, N)`` map). Default ``scales=(1, 2, 4)`` (14x14, 7x7, 4x4 grids at
          224 px / patch 16); pooling windows at a border of a grid not divisible by ``s`` are
          smaller (means over the patches present).
        * Scale weights: one logit per scale per block, shared by heads, initialised to 0
          (equal weights); every block is multi-scale.
        * Regulariser: penalty on the attention share outside the mask (not a KL to the
          normalised mask) -- it does not push attention to spread evenly over large lesions, only
          off the background; masks are area-resized to the patch grid; empty masks contribute 0.
          ``attn_reg_layers="last"`` (the class token's last attention decides the prediction);
          ``"all"`` or a list of block indices are the alternatives.
        * ``patch_size`` 16 vs 32 (suggested: "Test patch sizes (16×16 vs 32×32)") switches to timm's ``patch32``
          variant of the backbone when it exists, else passes ``patch_size`` to timm (see
          :func:`resolve_backbone`).
        * ``drop_rate`` is dropout on the class token before the classifier (default 0).
        * The position embedding is sized for ``img_size`` (``input_size``, linked by the CLI to
          ``data.image_size`` and checked by ``protocol.call_net``); the patch grid is set on every
          attention block at each forward.

    Args:
        num_classes: number of classes (ISIC 2017: 3).
        backbone: timm ViT with a class token (chosen: ViT-B/16 ``vit_base_patch16_224``; the summary names no size).
        pretrained / weights_path: ImageNet weights from the hub / a local file (``create_encoder``).
        img_size: input size the position embedding is built for (the CLI sets it from ``data.image_size``).
        patch_size: patch side (16 or 32 in the suggested ablation); ``None`` keeps the backbone's.
        scales: pooling windows of the multi-scale attention (``(1,)`` = plain ViT).
        attn_reg_weight: lambda of the attention regulariser (0 = off).
        attn_reg_layers: ``"last"``, ``"all"`` or a list of block indices to regularise.
        drop_rate: dropout before the classifier.
        meta_groups / meta_names: accepted so the CLI's data->net links work; the paper is
            image-only and metadata is not used (a warning is logged if features are given).

    Forward:
        ``forward(image (B,3,H,W), meta=None, mask (B,1,H,W) | None) -> {"logits": (B, K), "aux_losses"?:
        {"attn_reg"}}`` (``meta`` is ignored).

    Explainability (same API as ``ViTAtt``, :class:`CapturesViTAttention`):
        ``set_attention_capture(True, keep_grad)`` stores each block's effective attention
        ``(B, heads, T, T)`` (the ``attn_drop`` input of :class:`MultiScaleSelfAttention`) in
        ``self.attentions``; ``self.token_layout`` (``cls=0``, ``patches``, ``grid``) describes the
        last forward's tokens. ``token_cam_layers()`` names the layer of ViT Grad-CAM.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str = "vit_base_patch16_224",
        pretrained: bool = False,
        weights_path: str | None = None,
        img_size: int = 224,
        patch_size: int | None = 16,
        scales: Sequence[int] = (1, 2, 4),
        attn_reg_weight: float = 0.1,
        attn_reg_layers: str | list[int] = "last",
        drop_rate: float = 0.0,
        meta_groups: list[int] | None = None,
        meta_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        if attn_reg_weight < 0:
            raise ValueError(
                f"MSViT attn_reg_weight must be >= 0 (0 turns the regulariser off), got {attn_reg_weight}."
            )
        if meta_groups:
            log.warning("MSViT is image-only (paper 2502.06243); ignoring %d metadata features.", len(meta_groups))
        self.backbone_name, extra = resolve_backbone(backbone, patch_size)
        self.vit = create_vit(
            "MSViT", self.backbone_name, img_size, pretrained=pretrained, weights_path=weights_path, **extra
        )
        self.input_size = int(img_size)
        self.num_prefix_tokens = int(self.vit.num_prefix_tokens)
        self.scales = tuple(int(s) for s in scales)
        for block in self.vit.blocks:
            block.attn = MultiScaleSelfAttention.from_timm(block.attn, self.scales, self.num_prefix_tokens)

        self.attn_reg_weight = float(attn_reg_weight)
        self.attn_reg_layers = self._resolve_layers(attn_reg_layers, len(self.vit.blocks))
        embed_dim = int(self.vit.embed_dim)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes)
        self.num_classes = num_classes

        self.attention_recorder = AttentionRecorder()
        self.token_layout: TokenLayout | None = None

    @staticmethod
    def _resolve_layers(layers: str | Sequence[int], depth: int) -> tuple[int, ...]:
        if isinstance(layers, str):
            if layers == "last":
                return (depth - 1,)
            if layers == "all":
                return tuple(range(depth))
            raise ValueError(f"attn_reg_layers must be 'last', 'all' or a list of block indices, got {layers!r}.")
        if not layers or any(not -depth <= int(i) < depth for i in layers):
            raise ValueError(f"attn_reg_layers {list(layers)} must be non-empty indices of the {depth} blocks.")
        return tuple(sorted({int(i) % depth for i in layers}))

    def token_cam_layers(self) -> dict[str, nn.Module]:
        """ViT Grad-CAM layer (``protocol.TokenGradCamLayers``): the last block's ``norm1``, the tokens its
        attention reads (the patch outputs of the last block no longer reach the class-token head)."""
        return {"last_block": self.vit.blocks[-1].norm1}

    @property
    def attention_blocks(self) -> list[MultiScaleSelfAttention]:
        """The multi-scale attention module of every transformer block, in order."""
        return [block.attn for block in self.vit.blocks]

    def forward_tokens(self, image: torch.Tensor, keep_attention_of: Sequence[int] = ()) -> torch.Tensor:
        """Normed token sequence ``(B, T, D)``; blocks in ``keep_attention_of`` keep ``last_attention``."""
        self.attention_recorder.new_forward()
        x, grid = patch_tokens(self.vit, image)
        self.token_layout = TokenLayout(cls=0, patches=slice(self.num_prefix_tokens, x.shape[1]), grid=grid)
        keep = set(keep_attention_of)
        for i, attn in enumerate(self.attention_blocks):
            attn.grid_size = grid
            attn.keep_attention = i in keep
        try:
            x = self.vit.norm_pre(x)
            x = self.vit.blocks(x)
        finally:
            for attn in self.attention_blocks:
                attn.keep_attention = False
        return self.vit.norm(x)

    def forward(
        self, image: torch.Tensor, meta: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> NetOutput:
        """Logits from the class token, plus ``aux_losses["attn_reg"]`` when a mask is given (``meta`` ignored)."""
        regularise = mask is not None and self.attn_reg_weight > 0
        tokens = self.forward_tokens(image, self.attn_reg_layers if regularise else ())
        out: NetOutput = {"logits": self.head(self.head_drop(tokens[:, 0]))}
        if regularise:
            blocks = self.attention_blocks
            layout = self.token_layout
            cls_attn = torch.stack(
                [blocks[i].last_attention[:, :, layout.cls, layout.patches].mean(dim=1) for i in self.attn_reg_layers]
            ).mean(dim=0)
            for i in self.attn_reg_layers:
                blocks[i].last_attention = None
            loss = attention_outside_mask_loss(cls_attn.float(), mask, layout.grid)
            out["aux_losses"] = {"attn_reg": self.attn_reg_weight * loss}
        return out
