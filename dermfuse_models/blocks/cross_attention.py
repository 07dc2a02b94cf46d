"""Multi-head cross-attention of one token stream over another (``torch.nn.MultiheadAttention``), and co-attention."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

VALUE_SOURCES = ("key", "query")


class CrossAttentionFusion(nn.Module):
    """One stream's tokens attend to another's: ``softmax(Q K^T / sqrt(d_h)) V`` per head.

    The attention is ``torch.nn.MultiheadAttention`` (``batch_first``, called with ``need_weights=True,
    average_attn_weights=False``, so the weights it used come back per head). ``value_source`` says where
    the values come from:

    * ``"key"`` (standard cross-attention): ``V`` from the key stream. The mammography paper (arXiv
      2508.16000, Eqs. 10-15): paper: "image embeddings as Queries (Q) and clinical embeddings as
      Keys/Values (K, V)".
    * ``"query"``: ``V`` from the query stream. DualNet (arXiv 2510.17773): paper: "the original image
      provides query and value vectors while the segmented lesion provides key vectors". The key stream only
      decides *where* to look; the weights re-weight the query stream's own values, so both streams
      need the same number of tokens (e.g. spatially aligned feature maps).

    Both streams have width ``dim``, so the value is simply the third argument of the attention: its
    packed ``in_proj_weight`` (``W_q; W_k; W_v``, ``(3 dim, dim)``) projects query, key and value
    tensors separately whatever they are. ``kdim`` / ``vdim`` are for streams of *other widths* and
    are not needed (chosen: one layout, and the parameter count of three ``Linear(dim, dim)``).

    ``residual=True`` (DualNet; chosen where the paper is silent: the ViT pre-norm convention):

        ``x = query + Dropout(MHA(LN_q(query), LN_k(key), V))``; ``out = x + MLP(LN(x))`` (no MLP when
        ``mlp_ratio == 0``; GELU, hidden ``mlp_ratio * dim``), ``V`` normed like its stream.

    ``residual=False`` (the mammography paper, paper: "Cross-Attention Block (Image attends to Clinical) ->
    Concatenation": the attended context is concatenated with the caller's own embedding, no norm or
    residual): ``out = MHA(query, key, V)``.

    Args:
        dim: token width of both streams.
        num_heads: attention heads; must divide ``dim``.
        dropout: dropout on the attention weights (inside ``MultiheadAttention``) and, with
            ``residual``, on the attention output and in the MLP.
        mlp_ratio: MLP hidden width as a multiple of ``dim`` (``residual`` only); 0 = no MLP.
        value_source: ``"key"`` or ``"query"``, see above.
        residual: the pre-norm residual layer (True) or the bare attention (False).

    Attributes:
        attention: the ``nn.MultiheadAttention``.
        last_attention: the weights ``(B, heads, Q, K)`` of the last forward (rows sum to 1; in training
            ``MultiheadAttention`` returns them after its dropout), detached unless ``keep_attention_grad``
            is True: then ``last_attention.grad`` is ``dL/dA`` after ``backward()`` (relevancy methods).
            ``MultiheadAttention`` returns a view of its weights that is off the output's graph, so the
            block taps the gradient instead (:meth:`_gradient_tap`); values and other gradients are unchanged.

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
        residual: bool = True,
    ) -> None:
        super().__init__()
        if value_source not in VALUE_SOURCES:
            raise ValueError(f"value_source must be one of {VALUE_SOURCES}, got {value_source!r}.")
        if num_heads < 1 or dim % num_heads != 0:
            raise ValueError(
                f"CrossAttentionFusion needs num_heads >= 1 dividing dim; got dim={dim}, num_heads={num_heads}."
            )
        hidden = int(round(dim * mlp_ratio)) if residual else 0
        if not residual and mlp_ratio:
            raise ValueError("CrossAttentionFusion(residual=False) has no MLP sub-layer; set mlp_ratio=0.")
        self.dim, self.num_heads, self.value_source, self.residual = int(dim), int(num_heads), value_source, residual
        self.attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm_query = nn.LayerNorm(dim) if residual else nn.Identity()
        self.norm_key = nn.LayerNorm(dim) if residual else nn.Identity()
        self.attention_drop = nn.Dropout(dropout)
        self.norm_mlp: nn.Module | None = nn.LayerNorm(dim) if hidden > 0 else None
        self.mlp: nn.Module | None = (
            nn.Sequential(
                nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout)
            )
            if hidden > 0
            else None
        )
        self.keep_attention_grad = False
        self.last_attention: torch.Tensor | None = None

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """Fuse ``key``'s stream into ``query``'s; stores ``last_attention`` (B, heads, Q, K)."""
        if (
            query.ndim != 3
            or key.ndim != 3
            or query.shape[-1] != self.dim
            or key.shape[-1] != self.dim
            or query.shape[0] != key.shape[0]
        ):
            raise ValueError(
                f"CrossAttentionFusion expects (B, tokens, {self.dim}) query and key, "
                f"got {tuple(query.shape)} and {tuple(key.shape)}."
            )
        if self.value_source == "query" and query.shape[1] != key.shape[1]:
            raise ValueError(
                "value_source='query' takes values from the query stream, so query and key need "
                f"the same number of tokens; got {query.shape[1]} and {key.shape[1]}."
            )
        q, k = self.norm_query(query), self.norm_key(key)
        attended, weights = self.attention(
            q, k, q if self.value_source == "query" else k, need_weights=True, average_attn_weights=False
        )
        self.last_attention = weights.detach()
        if self.keep_attention_grad and torch.is_grad_enabled():
            self.last_attention.requires_grad_(True)
            attended = attended + self._gradient_tap(self.last_attention, q if self.value_source == "query" else k)
        if not self.residual:
            return attended
        x = query + self.attention_drop(attended)
        if self.mlp is not None and self.norm_mlp is not None:
            x = x + self.mlp(self.norm_mlp(x))
        return x

    def _gradient_tap(self, weights: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """``(A - A.detach()) V W_o^T``: zero, but its gradient reaches ``A`` (a leaf copy of the weights) as
        the attention output's would; nothing else gets a gradient through it."""
        b, n_q, n_k = weights.shape[0], weights.shape[2], weights.shape[3]
        w_v, b_v = self.attention.in_proj_weight[2 * self.dim :], self.attention.in_proj_bias[2 * self.dim :]
        v = F.linear(value, w_v, b_v).view(b, n_k, self.num_heads, self.dim // self.num_heads).transpose(1, 2)
        heads = (weights - weights.detach()) @ v  # (B, heads, Q, head_dim), all zeros
        return F.linear(heads.transpose(1, 2).reshape(b, n_q, self.dim), self.attention.out_proj.weight)


class CoAttentionFusion(nn.Module):
    """Co-attention: stream A attends to B and B attends to A (the mammography paper's co-attention).

    Two bare (``residual=False``) :class:`CrossAttentionFusion` blocks with their own projections, values
    from the key stream. Returns both attended sequences (shaped like their queries) and the two
    ``(B, heads, Q, K)`` weight tensors ``{"a_to_b", "b_to_a"}``; how the streams are combined is the
    caller's choice.
    """

    def __init__(self, dim: int, num_heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.a_to_b = CrossAttentionFusion(dim, num_heads, dropout, mlp_ratio=0, residual=False)
        self.b_to_a = CrossAttentionFusion(dim, num_heads, dropout, mlp_ratio=0, residual=False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """``a (B, Na, D)``, ``b (B, Nb, D)`` -> ``(a attended to b, b attended to a, weights)``."""
        a_att, b_att = self.a_to_b(a, b), self.b_to_a(b, a)
        return a_att, b_att, {"a_to_b": self.a_to_b.last_attention, "b_to_a": self.b_to_a.last_attention}
