"""Transformer relevancy (TMME, Chefer et al. 2021) and attention rollout for dermfuse's ViT nets.

ViTAtt (arXiv 2304.14505) explains its predictions with paper: "the TMME method, which provides saliency
and relevancy visualizations for both image and metadata domains"; paper: "TMME integrates gradient
backpropagation with attention maps". We implement it as Chefer, Gur & Wolf's relevancy, *Generic
Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers* (ICCV
2021); the summary does not expand the acronym. For a self-attention-only encoder the
relevancy map is

    R = I;   for every block b (input to output):   R <- R + mean_heads( clamp(dy_t/dA_b * A_b, min=0) ) @ R

with ``A_b`` the block's post-softmax attention and ``y_t`` the target logit. Row ``R[cls]`` says how
relevant each token is to the class token: its patch part is the image heatmap, its metadata part
(ViTAtt's one token per clinical feature) the per-feature relevance. The paper's baseline is the
attention itself (paper: "TMME provides superior interpretability compared to attention maps alone");
here plain attention rollout (Abnar & Zuidema 2020,
*Quantifying Attention Flow in Transformers*): ``R <- (0.5 * mean_heads(A_b) + 0.5 * I)_rownorm @ R``.

Both need the attention maps that timm's fused attention hides: the nets' capture API
(``dermfuse_models.protocol.AttentionCapture``: ``set_attention_capture(True, keep_grad=True)``,
``attentions``, and ``token_layout``, a ``TokenLayout`` with the class token, patch tokens and
their grid, and the metadata tokens) provides them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from dermfuse_models.protocol import TokenLayout
from dermfuse_xai.methods.base import ExplanationMethod, FeatureScores, MethodContext, MethodInputs, MethodResult
from dermfuse_xai.model_io import LogitsModel, has_attention_capture, meta_names_of


@dataclass
class TokenRelevance:
    """Relevance of the class token to every other token, as image map and feature scores.

    Attributes:
        image_map: ``(B, H, W)`` patch relevance reshaped to the patch grid and upsampled
            (bilinear) to the image size.
        patch_scores: ``(B, rows, cols)`` the same at patch resolution.
        meta_scores: ``(B, F)`` relevance of each metadata token (``None`` for image-only nets).
        meta_names: the ``F`` clinical feature names (the net's ``meta_names``).
        cls_row: ``(B, T)`` the full class-token row (all tokens, in ``token_layout`` order).
    """

    image_map: torch.Tensor
    patch_scores: torch.Tensor
    meta_scores: torch.Tensor | None = None
    meta_names: list[str] = field(default_factory=list)
    cls_row: torch.Tensor | None = None


def transformer_relevancy(
    net: nn.Module,
    image: torch.Tensor,
    target: torch.Tensor | int,
    meta: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> TokenRelevance:
    """TMME gradient-weighted attention relevancy of ``target`` over all blocks (see module doc).

    Args:
        net: a ViT net with the attention capture API (``ViTAtt``, ``MSViT``) or a task wrapping
            one; put it in ``eval()`` mode first. Capture is switched on for the call and off after.
        image: ``(B, 3, H, W)`` normalised images.
        target: class per image ``(B,)`` or one int; ``y_t`` is its logit.
        meta, mask: extra inputs (a net ignores those it does not use).

    Returns:
        :class:`TokenRelevance` (detached).
    """
    model = LogitsModel(net)
    core = _capturing_net(model.net)
    target = torch.as_tensor(target, device=image.device).long()
    target = target.expand(image.shape[0]) if target.ndim == 0 else target
    core.set_attention_capture(True, keep_grad=True)
    try:
        with torch.enable_grad():
            # an input needing grad keeps the attention in the graph even for frozen weights
            x = image.detach().clone().requires_grad_(True)
            logits = model(x, meta, mask)
            attentions = list(core.attentions)
            if not attentions:
                raise RuntimeError(f"{type(core).__name__} captured no attention maps during forward.")
            score = logits.gather(1, target[:, None]).sum()
            grads = torch.autograd.grad(score, attentions, allow_unused=True)
        layout = core.token_layout
        relevancy = _eye_like(max(attentions, key=lambda a: a.shape[-1]))
        for attn, grad in zip(attentions, grads, strict=True):
            if grad is None:
                continue
            cam = _to_sequence((grad * attn).clamp(min=0).mean(dim=1).detach().float(), relevancy.shape[-1], 0.0)
            relevancy = relevancy + torch.bmm(cam, relevancy)
    finally:
        core.set_attention_capture(False)
    return _split_row(core, relevancy[:, layout.cls], layout, image.shape[-2:])


def attention_rollout(
    net: nn.Module,
    image: torch.Tensor,
    meta: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    residual: float = 0.5,
) -> TokenRelevance:
    """Attention rollout (Abnar & Zuidema 2020): the class-agnostic baseline of TMME.

    ``R <- rownorm(residual * I + (1 - residual) * mean_heads(A_b)) @ R`` from the first block to the
    last (the ``0.5 * I`` accounts for the residual connection). Same inputs and output as
    :func:`transformer_relevancy` but no target (it does not depend on the predicted class).
    """
    model = LogitsModel(net)
    core = _capturing_net(model.net)
    core.set_attention_capture(True, keep_grad=False)
    try:
        with torch.no_grad():
            model(image, meta, mask)
            attentions = [a.detach().float() for a in core.attentions]
        layout = core.token_layout
    finally:
        core.set_attention_capture(False)
    if not attentions:
        raise RuntimeError(f"{type(core).__name__} captured no attention maps during forward.")
    eye = _eye_like(max(attentions, key=lambda a: a.shape[-1]))
    rollout = eye
    for attn in attentions:
        a = residual * eye + (1.0 - residual) * _to_sequence(attn.mean(dim=1), eye.shape[-1], 1.0)
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = torch.bmm(a, rollout)
    return _split_row(core, rollout[:, layout.cls], layout, image.shape[-2:])


def _capturing_net(net: nn.Module) -> nn.Module:
    if not has_attention_capture(net):
        raise TypeError(
            f"{type(net).__name__} has no attention capture API (set_attention_capture / attentions / "
            "token_layout, dermfuse_models.protocol.AttentionCapture); transformer relevancy needs it. "
            "Use Grad-CAM for CNNs."
        )
    return net


def _to_sequence(matrix: torch.Tensor, tokens: int, diagonal: float) -> torch.Tensor:
    """A ``(B, t, t)`` token-mixing matrix of a block that saw the first ``t`` tokens, as ``(B, tokens, tokens)``.

    Tokens appended after the block (ViTAtt's late-fusion metadata, ``protocol.AttentionCapture``) pass it
    unchanged: their rows and columns are zero except ``diagonal`` on the diagonal (0 for a relevancy
    increment, 1 for an attention matrix).
    """
    extra = tokens - matrix.shape[-1]
    if extra == 0:
        return matrix
    out = F.pad(matrix, (0, extra, 0, extra))
    out[:, matrix.shape[-1] :, matrix.shape[-1] :] += diagonal * torch.eye(extra, device=matrix.device, dtype=out.dtype)
    return out


def _eye_like(attn: torch.Tensor) -> torch.Tensor:
    b, _, t, _ = attn.shape
    return torch.eye(t, device=attn.device, dtype=torch.float32).expand(b, t, t).clone()


def _split_row(core: nn.Module, row: torch.Tensor, layout: TokenLayout, image_hw) -> TokenRelevance:
    """Cut the class-token row into the patch grid (upsampled) and the metadata tokens."""
    patches = row[:, layout.patches].detach()
    patch_scores = patches.reshape(patches.shape[0], *layout.grid)
    image_map = F.interpolate(
        patch_scores[:, None], size=tuple(int(s) for s in image_hw), mode="bilinear", align_corners=False
    )[:, 0]
    meta_scores, names = None, []
    meta_slice = layout.meta
    if meta_slice is not None and meta_slice.stop > meta_slice.start:
        meta_scores = row[:, meta_slice].detach()
        names = meta_names_of(core) or [f"meta_{i}" for i in range(meta_scores.shape[1])]
    return TokenRelevance(
        image_map=image_map, patch_scores=patch_scores, meta_scores=meta_scores, meta_names=names, cls_row=row.detach()
    )


def _result(name: str, rel: TokenRelevance) -> MethodResult:
    """The patch heatmap as map ``name``; the metadata tokens' relevance as feature scores ``name`` (if any)."""
    result = MethodResult(maps={name: rel.image_map})
    if rel.meta_scores is not None:
        result.features[name] = FeatureScores(rel.meta_names, rel.meta_scores.cpu(), {})
    return result


def _run_relevancy(net: nn.Module, inputs: MethodInputs) -> MethodResult:
    return _result(
        "relevancy", transformer_relevancy(net, inputs.image, inputs.target, meta=inputs.meta, mask=inputs.mask)
    )


def _run_rollout(net: nn.Module, inputs: MethodInputs) -> MethodResult:
    return _result("rollout", attention_rollout(net, inputs.image, meta=inputs.meta, mask=inputs.mask))


def _captures_attention(net: nn.Module, context: MethodContext) -> str | None:
    return None if has_attention_capture(net) else "the net has no attention capture API"


RELEVANCY = ExplanationMethod(
    name="relevancy",
    task="classification",
    run=_run_relevancy,
    applies=_captures_attention,
    convention="TMME (Chefer et al. 2021): R=I; R += mean_heads(clamp(dlogit/dA * A, min=0)) @ R over all "
    "blocks; class-token row; patches -> heatmap, metadata tokens -> feature scores",
)
ROLLOUT = ExplanationMethod(
    name="rollout",
    task="classification",
    run=_run_rollout,
    applies=_captures_attention,
    convention="attention rollout (Abnar & Zuidema 2020): R = prod rownorm(0.5 A_mean + 0.5 I); class-token row",
)
