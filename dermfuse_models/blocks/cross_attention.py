"""Multi-head cross-attention fusion of two token streams (pre-norm transformer layer)."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn as nn

VALUE_SOURCES = ("key", "query")


class CrossAttentionFusion(nn.Module):
    """One stream's tokens attend to another's: ``softmax(Q K^T / sqrt(d)) V`` per head.

    A pre-norm transformer cross-attention layer (scaled dot-product attention written out, so
    that the attention weights actually used are the ones stored and differentiated):

        ``x = query + Dropout(MHA(LN_q(query), LN_k(key), V))``
        ``out = x + MLP(LN(x))``           (omitted when ``mlp_ratio == 0``)

    ``value_source`` says where the values come from:
        * ``"key"`` (standard cross-attention, e.g. CrossViT / mammography cross-view fusion):
          ``V = LN_k(key)``; the query stream gathers information from the other stream.
        * ``"query"`` (DualNet, arXiv 2510.17773, classification stage: "the original image
          provides query and value vectors while the segmented lesion provides key vectors"):
          ``V = LN_q(query)``. The other stream only decides *where* to look: the attention
          weights ``softmax(Q_orig K_seg^T / sqrt(d))`` re-weight the query stream's own values.
          This is unusual but is what the paper states; it needs equal token counts in both
          streams (e.g. spatially aligned feature maps).

    Choices where the papers are silent: pre-norm residual layer (ViT convention), separate
    linear Q/K/V projections with bias and an output projection (``nn.MultiheadAttention``'s
    layout), GELU MLP with hidden width ``mlp_ratio * dim``, ``dropout`` on the attention
    weights, the attention output and the MLP.

    Args:
        dim: token width (query and key tokens must both have it).
        num_heads: attention heads; must divide ``dim``.
        dropout: dropout rate (attention weights, residual branches).
        mlp_ratio: MLP hidden width as a multiple of ``dim``; 0 disables the MLP sub-layer.
        value_source: ``"key"`` or ``"query"``, see above.

    Attributes:
        last_attention: post-softmax attention ``(B, heads, Q, K)`` of the last forward (before
            attention dropout; rows sum to 1), detached unless ``keep_attention_grad`` is True (then kept in the graph with ``retain_grad()``,
            so ``last_attention.grad`` is available after ``backward()`` for relevancy methods).

    Shape:
        ``forward(query (B, Q, dim), key (B, K, dim)) -> (B, Q, dim)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        dropout: float = 0.0,
        mlp_ratio: float = 4.0,
        value_source: Literal["key", "query"] = "key",
    ) -> None:
        super().__init__()
        if value_source not in VALUE_SOURCES:
            raise ValueError(f"value_source must be one of {VALUE_SOURCES}, got {value_source!r}.")
        if num_heads < 1 or dim % num_heads != 0:
            raise ValueError(
                f"CrossAttentionFusion needs num_heads >= 1 dividing dim; got dim={dim}, num_heads={num_heads}."
            )
        self.dim, self.num_heads, self.value_source = int(dim), int(num_heads), value_source
        self.norm_query = nn.LayerNorm(dim)
        self.norm_key = nn.LayerNorm(dim)
        self.head_dim = self.dim // self.num_heads
        self.to_query = nn.Linear(dim, dim)
        self.to_key = nn.Linear(dim, dim)
        self.to_value = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.weights_drop = nn.Dropout(dropout)
        self.attention_drop = nn.Dropout(dropout)
        hidden = int(round(dim * mlp_ratio))
        if hidden > 0:
            self.norm_mlp: nn.Module | None = nn.LayerNorm(dim)
            self.mlp: nn.Module | None = nn.Sequential(
                nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout)
            )
        else:
            self.norm_mlp = None
            self.mlp = None
        self.keep_attention_grad = False
        self.last_attention: torch.Tensor | None = None

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """Fuse ``key``'s stream into ``query``'s; stores ``last_attention`` (B, heads, Q, K)."""
        if (query.ndim != 3 or key.ndim != 3 or query.shape[-1] != self.dim or key.shape[-1] != self.dim
                or query.shape[0] != key.shape[0]):
            raise ValueError(
                f"CrossAttentionFusion expects (B, tokens, {self.dim}) query and key, "
                f"got {tuple(query.shape)} and {tuple(key.shape)}."
            )
        q = self.norm_query(query)
        k = self.norm_key(key)
        if self.value_source == "query":
            if query.shape[1] != key.shape[1]:
                raise ValueError(
                    "value_source='query' takes values from the query stream, so query and key need "
                    f"the same number of tokens; got {query.shape[1]} and {key.shape[1]}."
                )
            v = q
        else:
            v = k
        queries, keys, values = self._heads(self.to_query(q)), self._heads(self.to_key(k)), self._heads(self.to_value(v))
        scores = queries @ keys.transpose(-2, -1) / math.sqrt(self.head_dim)
        weights = torch.softmax(scores, dim=-1)  # (B, heads, Q, K)
        if self.keep_attention_grad and weights.requires_grad:
            weights.retain_grad()
            self.last_attention = weights
        else:
            self.last_attention = weights.detach()
        out = self.weights_drop(weights) @ values  # (B, heads, Q, head_dim)
        out = out.transpose(1, 2).reshape(query.shape[0], query.shape[1], self.dim)
        x = query + self.attention_drop(self.out_proj(out))
        if self.mlp is not None and self.norm_mlp is not None:
            x = x + self.mlp(self.norm_mlp(x))
        return x

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, dim) -> (B, heads, T, head_dim)``."""
        return x.reshape(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)
