"""Attention capture for timm-style ViT attention: every block's post-softmax attention (ViTAtt, MSViT).

timm's fused attention (``scaled_dot_product_attention``) never materialises the attention matrix.
Capture switches each attention module to its explicit path (``fused_attn = False``) and hooks its
``attn_drop``, whose input is the softmax output; for MSViT's :class:`MultiScaleSelfAttention` that
input is the effective multi-scale attention ``sum_s w_s A_s P_s`` over the original tokens (rows sum
to 1). Switching capture off removes the hooks and restores the fused flags; logits are the same
either way.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn


class AttentionRecorder:
    """Hooks ``attn_drop`` of attention modules and keeps one ``(B, heads, T, T)`` map per module and forward.

    The owning net calls :meth:`new_forward` at the start of each forward, so ``attentions`` holds the
    maps of the last forward only. With ``keep_grad`` the maps stay in the autograd graph and
    ``retain_grad()`` is called on them (``attn.grad`` after ``backward()``, for attention x gradient
    relevancy); otherwise they are detached.
    """

    def __init__(self) -> None:
        self.attentions: list[torch.Tensor] = []
        self.keep_grad = False
        self._hooks: list[Any] = []
        self._modules: list[nn.Module] = []
        self._fused: list[bool] = []

    @property
    def active(self) -> bool:
        """Whether capture is on."""
        return bool(self._hooks)

    def start(self, modules: list[nn.Module], keep_grad: bool = False) -> None:
        """Switch ``modules`` to the explicit path and hook them (idempotent; ``keep_grad`` is updated)."""
        self.keep_grad = keep_grad
        if self.active:
            return
        for i, attn in enumerate(modules):
            if not hasattr(attn, "attn_drop") or not hasattr(attn, "fused_attn"):
                raise NotImplementedError(
                    f"Attention capture needs timm's Attention (with attn_drop and fused_attn) in every block; "
                    f"block {i} has {type(attn).__name__}."
                )
        self._modules = list(modules)
        self._fused = [attn.fused_attn for attn in self._modules]
        for attn in self._modules:
            attn.fused_attn = False
            self._hooks.append(attn.attn_drop.register_forward_hook(self._store))

    def stop(self) -> None:
        """Remove the hooks, restore the fused flags and drop the stored maps."""
        for handle in self._hooks:
            handle.remove()
        for attn, fused in zip(self._modules, self._fused, strict=True):
            attn.fused_attn = fused
        self._hooks, self._modules, self._fused, self.attentions = [], [], [], []

    def new_forward(self) -> None:
        """Forget the previous forward's maps (no-op while capture is off)."""
        if self.active:
            self.attentions = []

    def _store(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        """Forward hook on ``attn_drop``: keep its input, the post-softmax attention."""
        attn = inputs[0]
        if self.keep_grad and attn.requires_grad:
            attn.retain_grad()
        else:
            attn = attn.detach()
        self.attentions.append(attn)


class CapturesViTAttention:
    """Mixin giving a net over a timm ViT (``self.vit``) the ``AttentionCapture`` API of ``dermfuse_models.protocol``.

    The net sets ``self.attention_recorder = AttentionRecorder()`` in ``__init__``, calls its
    ``new_forward()`` at the start of each forward, and fills ``self.token_layout``.
    """

    vit: nn.Module
    attention_recorder: AttentionRecorder

    @property
    def attentions(self) -> list[torch.Tensor]:
        """Each block's post-softmax attention ``(B, heads, T, T)`` of the last forward (capture on), else ``[]``."""
        return self.attention_recorder.attentions

    def set_attention_capture(self, enabled: bool = True, keep_grad: bool = False) -> None:
        """Record every block's attention in ``attentions`` (module doc); ``False`` restores the fused path.

        Args:
            enabled: turn capture on or off.
            keep_grad: keep the maps in the autograd graph with ``retain_grad()`` (attention x gradient
                relevancy such as TMME); otherwise they are detached.
        """
        if enabled:
            self.attention_recorder.start(self.attention_modules(), keep_grad)
        else:
            self.attention_recorder.stop()

    def attention_modules(self) -> list[nn.Module]:
        """The attention module of every block the tokens pass, in order: the ViT's blocks (a net that adds a
        block after them, e.g. ViTAtt's late fusion, appends its own)."""
        return [block.attn for block in self.vit.blocks]
