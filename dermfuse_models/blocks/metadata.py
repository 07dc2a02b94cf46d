"""Metadata tokenisation: one embedding token per clinical feature."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn


class MetadataTokenizer(nn.Module):
    """Embed an encoded metadata vector as one token per clinical feature.

    The tabular encoder (``dermfuse_data.tabular``) lays each clinical feature out as a
    contiguous group of columns (one-hot / multi-hot / standardised value plus its missing
    indicator). Feature ``i``'s slice ``meta[:, start_i:start_i + width_i]`` goes through its own
    ``Linear(width_i -> dim)`` followed by ``BatchNorm1d(dim)``: the paper's "metadata embedded by
    FC + BatchNorm" (ViTAtt, arXiv 2304.14505, Sec. 3), applied per feature so that every
    feature becomes a token the transformer can attend to (and that attention/relevancy maps can
    name).

    Choices where the paper is silent:
        * A learned per-feature type embedding (``feature_embed``, shape ``(n_features, dim)``,
          init N(0, 0.02) like ViT position embeddings) is added after BatchNorm so that features
          whose values embed similarly stay distinguishable (tokens have no spatial position).
        * Tokens are independent: feature ``i``'s token depends only on feature ``i``'s slice.

    Args:
        group_widths: number of encoded columns of each feature, in column order.
        dim: token width (ViTAtt uses the ViT's embed dim).

    Shape:
        input ``(B, sum(group_widths))`` -> output ``(B, len(group_widths), dim)``.
    """

    def __init__(self, group_widths: Sequence[int], dim: int) -> None:
        super().__init__()
        widths = [int(w) for w in group_widths]
        if not widths:
            raise ValueError("MetadataTokenizer needs at least one feature group (group_widths is empty).")
        if any(w <= 0 for w in widths):
            raise ValueError(f"MetadataTokenizer group_widths must all be positive, got {widths}.")
        self.group_widths = widths
        self.dim = int(dim)
        self.projections = nn.ModuleList(nn.Linear(w, dim) for w in widths)
        self.norms = nn.ModuleList(nn.BatchNorm1d(dim) for _ in widths)
        self.feature_embed = nn.Parameter(torch.zeros(1, len(widths), dim))
        nn.init.trunc_normal_(self.feature_embed, std=0.02)

    @property
    def num_features(self) -> int:
        """Number of clinical features, i.e. tokens produced."""
        return len(self.group_widths)

    @property
    def in_features(self) -> int:
        """Total number of encoded metadata columns expected in the input."""
        return sum(self.group_widths)

    def forward(self, meta: torch.Tensor) -> torch.Tensor:
        """Map ``(B, sum(widths))`` encoded metadata to ``(B, n_features, dim)`` tokens."""
        if meta.ndim != 2 or meta.shape[1] != self.in_features:
            raise ValueError(
                f"MetadataTokenizer expected meta of shape (B, {self.in_features}) "
                f"(group widths {self.group_widths}), got {tuple(meta.shape)}."
            )
        slices = torch.split(meta, self.group_widths, dim=1)
        tokens = [norm(proj(x)) for x, proj, norm in zip(slices, self.projections, self.norms, strict=True)]
        return torch.stack(tokens, dim=1) + self.feature_embed


def feature_names(owner: str, meta_groups: Sequence[int], meta_names: Sequence[str] | None) -> list[str]:
    """One name per clinical feature: ``meta_names`` (one per entry of ``meta_groups``) or ``meta_<i>``.

    Raises:
        ValueError: the counts differ (``owner`` names the net).
    """
    names = list(meta_names) if meta_names is not None else [f"meta_{i}" for i in range(len(meta_groups))]
    if len(names) != len(meta_groups):
        raise ValueError(
            f"{owner} got {len(names)} meta_names for {len(meta_groups)} meta_groups; give one name per feature."
        )
    return names
