"""Image/clinical fusion blocks: per-feature clinical tokens, cross-, co-attention, concat, modality dropout.

Written for the mammography cross-attention paper (arXiv 2508.16000, Sec. "Fusion strategies",
Eqs. 3 and 10-15) and usable by any net that fuses an image embedding with tabular features.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn


class ClinicalTokenProjection(nn.Module):
    """One ``dim``-wide token per clinical feature: ``ReLU(W_f x_f + b_f)`` (paper Eq. 3, per feature).

    The paper projects the whole one-hot clinical vector by one affine map + ReLU; attention over
    a single clinical vector would be trivial (softmax over one key), so each feature's column
    block (``group_widths`` from ``dermfuse_data.tabular``) gets its own affine map + ReLU. A
    feature's bias makes its token distinct even when its block is all zeros.

    Shape: ``(B, sum(group_widths)) -> (B, len(group_widths), dim)``.
    """

    def __init__(self, group_widths: Sequence[int], dim: int) -> None:
        super().__init__()
        widths = [int(w) for w in group_widths]
        if not widths or any(w <= 0 for w in widths):
            raise ValueError(f"ClinicalTokenProjection needs positive feature widths, got {widths}.")
        self.group_widths = widths
        self.projections = nn.ModuleList(nn.Linear(w, dim) for w in widths)
        self.act = nn.ReLU()

    @property
    def num_features(self) -> int:
        """Number of clinical features (tokens)."""
        return len(self.group_widths)

    def forward(self, meta: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, F, dim)`` from the encoded clinical vector ``(B, sum(widths))``."""
        if meta.ndim != 2 or meta.shape[1] != sum(self.group_widths):
            raise ValueError(
                f"ClinicalTokenProjection expected meta of shape (B, {sum(self.group_widths)}) "
                f"(feature widths {self.group_widths}), got {tuple(meta.shape)}."
            )
        parts = torch.split(meta, self.group_widths, dim=1)
        return torch.stack([self.act(p(x)) for p, x in zip(self.projections, parts, strict=True)], dim=1)


class CrossAttentionFusion(nn.Module):
    """Multi-head cross-attention: queries from one modality, keys/values from the other (Eqs. 10-15).

    ``Q = query W_q``, ``K = context W_k``, ``V = context W_v``, ``softmax(Q K^T / sqrt(d_h)) V``
    per head, then the output projection (``nn.MultiheadAttention``). No residual or norm: the
    caller concatenates the attended context with its own embedding, as the paper does.
    ``last_weights`` keeps the detached per-head weights ``(B, heads, Q, K)`` of the last call.

    Args:
        dim: token width of both sides (must be divisible by ``num_heads``).
        num_heads: attention heads. dropout: dropout on the attention weights.
    """

    def __init__(self, dim: int, num_heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"CrossAttentionFusion dim={dim} must be divisible by num_heads={num_heads}.")
        self.attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.last_weights: torch.Tensor | None = None

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``query (B, Q, D)``, ``context (B, K, D)`` -> ``(attended (B, Q, D), weights (B, heads, Q, K))``."""
        out, weights = self.attention(query, context, context, need_weights=True, average_attn_weights=False)
        self.last_weights = weights.detach()
        return out, weights


class CoAttentionFusion(nn.Module):
    """Co-attention: two cross-attentions, A attends to B and B attends to A (paper's co-attention).

    Each direction has its own projections. Returns both attended sequences (shaped like their
    queries) and both weight tensors; how the streams are combined is the caller's choice.
    """

    def __init__(self, dim: int, num_heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.a_to_b = CrossAttentionFusion(dim, num_heads, dropout)
        self.b_to_a = CrossAttentionFusion(dim, num_heads, dropout)

    def forward(
        self, a: torch.Tensor, b: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """``a (B, Na, D)``, ``b (B, Nb, D)`` -> ``(a attended to b, b attended to a, weights)``."""
        a_att, w_ab = self.a_to_b(a, b)
        b_att, w_ba = self.b_to_a(b, a)
        return a_att, b_att, {"a_to_b": w_ab, "b_to_a": w_ba}


class ConcatFusion(nn.Module):
    """Late fusion by concatenating per-modality embeddings along the feature axis (paper's baseline)."""

    def forward(self, *embeddings: torch.Tensor) -> torch.Tensor:
        """``(B, D_1), ..., (B, D_m) -> (B, sum D_i)``."""
        return torch.cat(embeddings, dim=-1)


class ModalityDropout(nn.Module):
    """Zero one randomly chosen modality per sample with probability ``p``, in training only.

    Paper (Sec. "Training", "modality dropout ... randomly zeroing one modality's embedding with
    probability p = 0.3"): for each sample, with probability ``p`` one of the ``M`` modalities
    (uniformly chosen) has all its tensors set to zero; otherwise the sample is untouched. No
    rescaling of the kept embeddings (unlike element dropout). Identity in eval mode and for a
    single modality.

    ``forward(modalities)`` takes one sequence of tensors per modality (e.g. ``[[e, e_tokens],
    [c, c_tokens]]``, batch first) and returns them in the same structure. ``last_keep`` is the
    ``(B, M)`` bool mask of the last call (True = kept).
    """

    def __init__(self, p: float = 0.3) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"ModalityDropout p must be in [0, 1], got {p}.")
        self.p = float(p)
        self.last_keep: torch.Tensor | None = None

    def forward(self, modalities: Sequence[Sequence[torch.Tensor]]) -> list[list[torch.Tensor]]:
        """Zero the dropped (sample, modality) pairs; see the class docstring."""
        groups = [list(g) for g in modalities]
        first = groups[0][0]
        batch = first.shape[0]
        keep = torch.ones(batch, len(groups), dtype=torch.bool, device=first.device)
        if self.training and self.p > 0 and len(groups) > 1:
            dropped = torch.rand(batch, device=first.device) < self.p
            which = torch.randint(len(groups), (batch,), device=first.device)
            keep[dropped, which[dropped]] = False
            groups = [
                [t * keep[:, m].view(-1, *([1] * (t.ndim - 1))).to(t.dtype) for t in group]
                for m, group in enumerate(groups)
            ]
        self.last_keep = keep
        return groups
