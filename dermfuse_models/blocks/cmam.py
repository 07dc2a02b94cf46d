"""Cross-Mix Attention Module (CMAM), EAM-Net (arXiv 2512.07275), Equations 1-5."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dermfuse_models.protocol import AttentionMap

CMAM_MODES = ("cross", "parallel", "serial")


class ChannelGate(nn.Module):
    """CBAM channel attention: ``x * sigmoid(MLP(avgpool x) + MLP(maxpool x))`` ("what")."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Channel-reweighted features ``X_c``."""
        avg = self.mlp(F.adaptive_avg_pool2d(x, 1))
        peak = self.mlp(F.adaptive_max_pool2d(x, 1))
        return x * torch.sigmoid(avg + peak)


class SpatialGate(nn.Module):
    """CBAM spatial attention: ``x * sigmoid(conv7x7([mean_c x, max_c x]))`` ("where")."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spatially reweighted features ``X_s``."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class CrossAttention(nn.Module):
    """Multi-head attention with queries from one feature map and keys/values from another.

    Tokens are channels (transposed attention, as in Restormer's MDTA): ``Q, K, V`` are 1x1
    projections reshaped to ``(B, heads, C/heads, H*W)``; ``Q`` and ``K`` are L2-normalised
    over ``H*W`` and ``attn = softmax(t * Q K^T)`` is ``(C/heads) x (C/heads)`` with a learned
    per-head temperature ``t``. Cost is linear in ``H*W``, so the block runs at full resolution.
    """

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        if channels % heads != 0:
            raise ValueError(f"CMAM: channels={channels} must be divisible by heads={heads}.")
        self.heads = heads
        self.to_q = nn.Conv2d(channels, channels, 1, bias=False)
        self.to_kv = nn.Conv2d(channels, 2 * channels, 1, bias=False)
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))

    def forward(self, query_source: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(softmax(Q K^T) V`` as ``(B, C, H, W)``, attention ``(B, heads, C/h, C/h))``."""
        b, c, h, w = query_source.shape
        q = self.to_q(query_source).reshape(b, self.heads, c // self.heads, h * w)
        k, v = self.to_kv(context).reshape(b, 2, self.heads, c // self.heads, h * w).unbind(dim=1)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        return (attn @ v).reshape(b, c, h, w), attn


class CrossMixAttention(nn.Module):
    """CMAM: spatial and channel attention that attend to *each other* instead of being chained.

    Paper (Equations 1-5): paper: "CMAM computes Q from spatial features (Xs) and K,V from channel
    features (Xc) in one direction, then reverses roles"; paper: "The sum SA + CA enables cross-guidance".
    From the fused features ``X`` a spatial-attention branch gives
    ``X_s`` and a channel-attention branch gives ``X_c``. Two cross-attentions mix them:
    ``SA = Attn(Q = X_s, K, V = X_c)`` (spatial queries read channel context) and
    ``CA = Attn(Q = X_c, K, V = X_s)`` (channel queries read spatial context); the module
    outputs ``X + proj(SA + CA)``. CBAM-style serial (``X_s(X_c(X))``) and parallel
    (``X_s + X_c``) combinations are the alternatives the paper claims to beat (paper: "improves boundary
    delineation over serial or parallel attention combinations") and are available through ``mode``.

    Choices where the paper is silent:
        * ``X_c`` / ``X_s`` are CBAM's channel gate (avg+max pooled MLP, reduction 8) and
          spatial gate (7x7 conv over channel mean/max) applied to the same input ``X``.
        * The cross-attention is channel-token (transposed) multi-head attention with
          L2-normalised Q/K and a learned temperature (see :class:`CrossAttention`); a pixel-token
          attention would be quadratic in H*W and infeasible at the decoder's full resolution.
          ``heads`` defaults to 4 (1 if the channel count does not divide).
        * Output projection 1x1 conv -> BatchNorm, residual add, so the block starts near identity.

    Args:
        channels: input = output channels.
        heads: attention heads of each cross-attention.
        mode: ``"cross"`` (CMAM), ``"parallel"`` (``X + proj(X_s + X_c)``) or ``"serial"``
            (``X + proj(X_s(X_c))``, CBAM order).

    Attention maps: after each forward in ``"cross"`` mode ``self.attention_maps`` holds the
    detached ``(B, heads, C/h, C/h)`` weights under ``"spatial_to_channel"`` and
    ``"channel_to_spatial"``, as ``AttentionMap(keys="channels")`` (channel tokens, not spatial).
    """

    def __init__(self, channels: int, heads: int = 4, mode: str = "cross") -> None:
        super().__init__()
        if mode not in CMAM_MODES:
            raise ValueError(f"Unknown CMAM mode {mode!r}; valid choices: {', '.join(map(repr, CMAM_MODES))}.")
        if channels % heads != 0:
            heads = 1
        self.mode = mode
        self.channel_gate = ChannelGate(channels)
        self.spatial_gate = SpatialGate()
        if mode == "cross":
            self.spatial_queries = CrossAttention(channels, heads)  # SA: Q from X_s, K/V from X_c
            self.channel_queries = CrossAttention(channels, heads)  # CA: Q from X_c, K/V from X_s
        self.proj = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels))
        self.attention_maps: dict[str, AttentionMap] = {}

    def mixed_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two terms summed before the projection: ``(SA, CA)`` in cross mode.

        Parallel mode returns ``(X_s, X_c)``; serial mode ``(X_s(X_c), 0)``.
        """
        x_c = self.channel_gate(x)
        if self.mode == "serial":
            return self.spatial_gate(x_c), torch.zeros_like(x)
        x_s = self.spatial_gate(x)
        if self.mode == "parallel":
            return x_s, x_c
        sa, attn_sa = self.spatial_queries(x_s, x_c)
        ca, attn_ca = self.channel_queries(x_c, x_s)
        self.attention_maps = {
            "spatial_to_channel": AttentionMap(attn_sa.detach(), keys="channels"),
            "channel_to_spatial": AttentionMap(attn_ca.detach(), keys="channels"),
        }
        return sa, ca

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``X + proj(SA + CA)`` (or the parallel/serial alternative)."""
        first, second = self.mixed_terms(x)
        return x + self.proj(first + second)
