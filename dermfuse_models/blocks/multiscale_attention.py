"""Multi-scale self-attention for ViT blocks (MSViT, arXiv 2502.06243, "multi-scale self-attention").

Queries stay at patch resolution; keys and values are presented at several token resolutions (patch tokens
average-pooled over ``s x s`` neighbourhoods, prefix tokens such as [CLS] never pooled). Each scale gets its own
softmax attention and the scale outputs are summed with learned weights ``softmax(scale_logits)`` (paper:
"multi-scale summation of attention weights"; paper: "aggregates features across different receptive fields
using learned scale weights"). Scale 1 is the ordinary ViT attention, so ``scales=(1,)`` reproduces timm's
``Attention`` exactly and pretrained ViT weights apply unchanged.

Because pooling is linear, the block is also an ordinary attention over the *original* tokens:
``out = sum_s w_s A_s (P_s V) = (sum_s w_s A_s P_s) V = A_eff V`` where ``P_s`` averages each
window. ``A_eff`` rows are probability distributions over the original tokens; it is what the
non-fused path materialises, what attention capture hooks (``attn_drop`` input, as in timm) and
what attention regularisation reads, so rollout / TMME / mask losses work without special cases.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def scale_windows(
    grid: tuple[int, int], scale: int, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Window of every patch and patches per window for ``scale x scale`` pooling of a token grid.

    Patches are numbered row-major on ``grid = (rows, cols)``; windows too, on the
    ``(ceil(rows/scale), ceil(cols/scale))`` grid. Border windows of a grid not divisible by
    ``scale`` hold fewer patches (no padding tokens are invented).

    Returns:
        ``(window_of_patch (rows*cols,) long, patches_per_window (n_windows,) float)``.
    """
    rows, cols = int(grid[0]), int(grid[1])
    if scale < 1:
        raise ValueError(f"attention scale must be a positive integer, got {scale}.")
    win_rows, win_cols = math.ceil(rows / scale), math.ceil(cols / scale)
    r = torch.arange(rows, device=device) // scale
    c = torch.arange(cols, device=device) // scale
    window_of_patch = (r[:, None] * win_cols + c[None, :]).reshape(-1)
    # patches per window = rows in the window x columns in the window (shape-only: no bincount,
    # so meta tensors and torch.compile work)
    rows_in = (rows - torch.arange(win_rows, device=device) * scale).clamp(max=scale)
    cols_in = (cols - torch.arange(win_cols, device=device) * scale).clamp(max=scale)
    counts = (rows_in[:, None] * cols_in[None, :]).reshape(-1).float()
    return window_of_patch, counts


class MultiScaleSelfAttention(nn.Module):
    """Multi-head self-attention with keys/values at several patch-token resolutions.

    ``x (B, N, C)`` holds ``num_prefix_tokens`` prefix tokens ([CLS], registers) followed by the
    patch tokens of a ``grid_size`` grid (row-major). Before each forward on a new image size the
    owning net sets ``grid_size`` (MSViT does); when it is ``None`` the patch grid is taken to be
    square.

    Per scale ``s``: ``K_s, V_s`` = prefix tokens + patch tokens averaged over ``s x s`` windows;
    ``A_s = softmax(Q K_s^T / sqrt(d))``; output ``sum_s softmax(scale_logits)_s A_s V_s``, then the
    usual output projection. The scale weights are one learned logit per scale and layer, shared by
    the heads, initialised to zero (equal weights).

    Two numerically equivalent paths (like timm's ``Attention``): ``fused_attn=True`` runs one
    ``scaled_dot_product_attention`` per scale; otherwise (or when ``keep_attention`` is set) the
    effective attention over the original tokens ``A_eff = sum_s w_s A_s P_s`` ``(B, heads, N, N)``
    is built explicitly, passed through ``attn_drop`` (hook point for attention capture) and
    applied to ``V``. With ``keep_attention`` the pre-dropout ``A_eff`` (in the autograd graph) is
    stored in ``last_attention`` for losses on attention (MSViT's attention regularisation).

    Args:
        dim: token width. num_heads: attention heads. scales: pooling window sizes (1 = patches).
        qkv_bias: bias of the QKV projection. attn_drop / proj_drop: dropout rates.
        num_prefix_tokens: tokens before the patch grid that are never pooled.
    """

    fused_attn: bool

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        scales: Sequence[int] = (1, 2, 4),
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        num_prefix_tokens: int = 1,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"MultiScaleSelfAttention dim={dim} must be divisible by num_heads={num_heads}.")
        self._init_scales(scales, num_heads, dim // num_heads, num_prefix_tokens)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm: nn.Module = nn.Identity()
        self.k_norm: nn.Module = nn.Identity()
        self.attn_drop = nn.Dropout(attn_drop)
        self.norm: nn.Module = nn.Identity()
        self.gate: nn.Module | None = None
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _init_scales(self, scales: Sequence[int], num_heads: int, head_dim: int, num_prefix_tokens: int) -> None:
        scales = tuple(int(s) for s in scales)
        if not scales or any(s < 1 for s in scales) or len(set(scales)) != len(scales):
            raise ValueError(f"scales must be distinct positive integers (1 = patch resolution), got {scales}.")
        self.scales = scales
        self.num_heads = int(num_heads)
        self.head_dim = int(head_dim)
        self.scale = self.head_dim**-0.5
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.scale_logits = nn.Parameter(torch.zeros(len(scales)))
        self.fused_attn = hasattr(F, "scaled_dot_product_attention")
        self.grid_size: tuple[int, int] | None = None
        self.keep_attention = False
        self.last_attention: torch.Tensor | None = None

    @classmethod
    def from_timm(cls, attn: nn.Module, scales: Sequence[int], num_prefix_tokens: int = 1) -> MultiScaleSelfAttention:
        """Wrap the projections of a timm ``Attention`` (pretrained weights kept, same state-dict names).

        Raises:
            TypeError: ``attn`` is not timm's standard ``Attention`` (needs ``qkv``, ``proj``,
                ``attn_drop``, ``num_heads``, ``head_dim``).
        """
        needed = ("qkv", "proj", "attn_drop", "proj_drop", "num_heads", "head_dim")
        missing = [name for name in needed if not hasattr(attn, name)]
        if missing:
            raise TypeError(
                f"MultiScaleSelfAttention.from_timm needs timm's Attention; {type(attn).__name__} lacks {missing}."
            )
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        module._init_scales(scales, attn.num_heads, attn.head_dim, num_prefix_tokens)
        module.fused_attn = bool(getattr(attn, "fused_attn", module.fused_attn))
        module.qkv = attn.qkv
        module.q_norm = getattr(attn, "q_norm", nn.Identity())
        module.k_norm = getattr(attn, "k_norm", nn.Identity())
        module.attn_drop = attn.attn_drop
        module.norm = getattr(attn, "norm", nn.Identity())
        module.gate = getattr(attn, "gate", None)
        module.proj = attn.proj
        module.proj_drop = attn.proj_drop
        return module

    def scale_weights(self) -> torch.Tensor:
        """Current weights of the scales, ``softmax(scale_logits)`` (sums to 1)."""
        return self.scale_logits.softmax(dim=0)

    def _grid(self, num_patches: int) -> tuple[int, int]:
        if self.grid_size is not None:
            rows, cols = self.grid_size
            if rows * cols != num_patches:
                raise ValueError(
                    f"MultiScaleSelfAttention.grid_size={self.grid_size} does not match {num_patches} patch tokens "
                    f"(sequence minus {self.num_prefix_tokens} prefix tokens); set grid_size for this input size."
                )
            return int(rows), int(cols)
        side = math.isqrt(num_patches)
        if side * side != num_patches:
            raise ValueError(
                f"{num_patches} patch tokens are not a square grid; set MultiScaleSelfAttention.grid_size=(rows, cols)."
            )
        return side, side

    def _pool(self, t: torch.Tensor, windows: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Prefix tokens + window means of the patch tokens of ``t (B, heads, N, d)``."""
        prefix, patches = t[:, :, : self.num_prefix_tokens], t[:, :, self.num_prefix_tokens :]
        summed = patches.new_zeros(*patches.shape[:2], counts.numel(), patches.shape[-1])
        summed = summed.index_add(2, windows, patches)
        return torch.cat([prefix, summed / counts.to(patches.dtype)[:, None]], dim=2)

    def _unpool_attention(self, attn: torch.Tensor, windows: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """``A_s P_s``: spread each window's attention evenly over its patches -> ``(B, h, N, N)``."""
        p = self.num_prefix_tokens
        per_patch = attn[..., p:] / counts.to(attn.dtype)
        return torch.cat([attn[..., :p], per_patch.index_select(-1, windows)], dim=-1)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        """``(B, N, C) -> (B, N, C)``; ``attn_mask``/``is_causal`` are not supported (ViT classification)."""
        if attn_mask is not None or is_causal:
            raise NotImplementedError("MultiScaleSelfAttention does not support attention masks or causal attention.")
        batch, n_tokens, channels = x.shape
        gate = self.gate(x).sigmoid() if self.gate is not None else None
        qkv = self.qkv(x).reshape(batch, n_tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        grid = self._grid(n_tokens - self.num_prefix_tokens)
        weights = self.scale_weights().to(q.dtype)
        windows = {s: scale_windows(grid, s, x.device) for s in self.scales if s != 1}

        if self.fused_attn and not self.keep_attention:
            dropout = self.attn_drop.p if self.training else 0.0
            out = 0
            for w, s in zip(weights, self.scales, strict=True):
                ks, vs = (k, v) if s == 1 else (self._pool(k, *windows[s]), self._pool(v, *windows[s]))
                out = out + w * F.scaled_dot_product_attention(q, ks, vs, dropout_p=dropout)
        else:
            q = q * self.scale
            attn = 0
            for w, s in zip(weights, self.scales, strict=True):
                ks = k if s == 1 else self._pool(k, *windows[s])
                a = (q @ ks.transpose(-2, -1)).softmax(dim=-1)
                attn = attn + w * (a if s == 1 else self._unpool_attention(a, *windows[s]))
            self.last_attention = attn if self.keep_attention else None
            out = self.attn_drop(attn) @ v

        out = self.norm(out.transpose(1, 2).reshape(batch, n_tokens, self.num_heads * self.head_dim))
        if gate is not None:
            out = out * gate
        return self.proj_drop(self.proj(out))

    def extra_repr(self) -> str:
        return (
            f"heads={self.num_heads}, head_dim={self.head_dim}, scales={self.scales}, prefix={self.num_prefix_tokens}"
        )
