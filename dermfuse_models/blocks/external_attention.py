"""External Attention Bridge (EAB), EAM-Net (arXiv 2512.07275), Section II.D."""

from __future__ import annotations

import torch
import torch.nn as nn


def double_normalize(scores: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """External attention's double normalisation of ``(B, k, N)`` memory-token scores.

    Softmax over the N tokens (each memory unit's distribution over positions), then L1
    normalisation over the k memory units (each token's weights sum to 1), as in Guo et al.
    2021 ("Beyond Self-attention: External Attention using Two Linear Layers").
    """
    attn = scores.softmax(dim=-1)
    return attn / (attn.sum(dim=1, keepdim=True) + eps)


def topk_channel_mask(x: torch.Tensor, k: int) -> torch.Tensor:
    """``(B, C, 1, 1)`` 0/1 mask keeping, per sample, the ``k`` channels of largest L1 norm."""
    scores = x.abs().mean(dim=(2, 3))  # mean |x| = L1 norm / (H*W): same ranking
    keep = scores.topk(k, dim=1).indices
    mask = torch.zeros_like(scores).scatter_(1, keep, 1.0)
    return mask[:, :, None, None]


class ExternalAttentionBridge(nn.Module):
    """EAB: external attention with learned memory on a skip connection, plus top-k channel selection.

    Section II.D, paper: "EAB inserts learnable memory matrices Mk, Mv between encoder and decoder.
    Input features compute attention against dataset-level memory (not self-attention), then L1-norm
    channel selection filters top-k features". The skip feature ``F`` (N = H*W tokens of width C)
    attends to two small input-independent memories ``M_k, M_v`` of ``memory_size`` units that act as a global
    memory of the training set: ``A = DoubleNorm(F M_k^T)`` (softmax over tokens, then L1
    over memory units), ``F_out = A M_v``. ``M_k`` and ``M_v`` are linear layers (1x1 Conv1d,
    no bias) of size ``memory_size``. Channels of the retrieved features are then ranked by
    L1 norm and only the ``top_k`` strongest are passed on, so the bridge adds back the
    discriminative information the skip loses instead of all of the memory's output.

    Choices where the paper is silent (EANet's reference layout otherwise):
        * Input 1x1 conv before ``M_k`` and 1x1 conv -> BatchNorm after ``M_v``; the selected
          features are added to the skip (residual), then ReLU: ``out = ReLU(F + S(EA(F)))``.
          Selection applies to the attention output, never to the skip itself, so switching the
          bridge off (identity skip) and on differ only by the added term.
        * ``memory_size`` default 64 (paper: "paper doesn't specify optimal k"; suggested: "sweep k ∈
          {16, 32, 64, 128} in EAB"); ``top_k``
          ``None`` keeps all channels. Selection is per sample; gradients flow through the
          kept values (the ranking itself is not differentiable).

    Args:
        channels: skip channels C.
        memory_size: number of memory units k in ``M_k`` / ``M_v``.
        top_k: channels of the attention output kept (``1 <= top_k <= channels``) or None.

    Forward: ``(B, C, H, W) -> (B, C, H, W)``. ``external_attention(x)`` returns the
    retrieved features before selection and the residual.
    """

    def __init__(self, channels: int, memory_size: int = 64, top_k: int | None = None) -> None:
        super().__init__()
        if memory_size < 1:
            raise ValueError(f"EAB memory_size must be >= 1, got {memory_size}.")
        if top_k is not None and not 1 <= top_k <= channels:
            raise ValueError(f"EAB top_k must be in [1, {channels}] (channels) or None, got {top_k}.")
        self.channels = channels
        self.memory_size = memory_size
        self.top_k = top_k
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.memory_key = nn.Conv1d(channels, memory_size, 1, bias=False)  # M_k
        self.memory_value = nn.Conv1d(memory_size, channels, 1, bias=False)  # M_v
        self.proj_out = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels))
        self.act = nn.ReLU(inplace=True)

    def memory_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Double-normalised attention of every token over the memory units, ``(B, k, H*W)``."""
        tokens = self.proj_in(x).flatten(2)  # (B, C, N)
        return double_normalize(self.memory_key(tokens))

    def external_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Features read from the external memory, ``(B, C, H, W)`` (before channel selection)."""
        b, c, h, w = x.shape
        retrieved = self.memory_value(self.memory_attention(x)).reshape(b, c, h, w)
        return self.proj_out(retrieved)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``ReLU(x + topk_select(EA(x)))``."""
        retrieved = self.external_attention(x)
        if self.top_k is not None and self.top_k < self.channels:
            retrieved = retrieved * topk_channel_mask(retrieved, self.top_k)
        return self.act(x + retrieved)
