"""Metadata tokenisation: one embedding token per clinical feature (ViTAtt, DualNet, MammoXAttn)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn as nn

POSTS = ("batch_norm", "relu")


class MetadataTokenizer(nn.Module):
    """Embed an encoded metadata vector as one token per clinical feature.

    The tabular encoder (``dermfuse_data.tabular``) lays each clinical feature out as a contiguous group of
    columns (one-hot / multi-hot / standardised value plus its missing indicator). Feature ``i``'s slice
    ``meta[:, start_i:start_i + width_i]`` goes through its own ``Linear(width_i -> dim)`` and then ``post``:

    * ``"batch_norm"``: its own ``BatchNorm1d(dim)``, the ViTAtt paper's (arXiv 2304.14505) paper: "The metadata
      is first embedded using fully connected layers with batch normalization", applied per feature, so that
      every feature becomes a token the transformer can attend to and that attention/relevancy maps can name
      (ViTAtt, DualNet's metadata transformer);
    * ``"relu"``: ``ReLU(W_f x_f + b_f)``, the mammography paper's (arXiv 2508.16000) paper: "an affine
      transformation and ReLU (Eq. 3)", applied per feature (MammoXAttn's clinical keys/values: attention over the one
      whole clinical vector the paper projects would have a single key).

    Choices where the papers are silent:
        * One token per feature, tokens independent: feature ``i``'s token depends only on its slice.
        * ``feature_embedding`` (default on; MammoXAttn keeps its tokens as Eq. 3 gives them): a learned
          per-feature type embedding (shape ``(n_features, dim)``, init N(0, 0.02) like ViT position
          embeddings) added last, so that features whose values embed alike stay distinguishable (tokens
          have no spatial position).

    Args:
        group_widths: number of encoded columns of each feature, in column order.
        dim: token width (the ViT's embed dim for ViTAtt).
        post: ``"batch_norm"`` or ``"relu"``, see above.
        feature_embedding: add the learned per-feature type embedding.
        owner: the net's name, for the error when it is called without metadata.

    Shape:
        input ``(B, sum(group_widths))`` -> output ``(B, len(group_widths), dim)``.
    """

    def __init__(
        self,
        group_widths: Sequence[int],
        dim: int,
        post: Literal["batch_norm", "relu"] = "batch_norm",
        feature_embedding: bool = True,
        owner: str = "MetadataTokenizer",
    ) -> None:
        super().__init__()
        widths = [int(w) for w in group_widths]
        if not widths:
            raise ValueError("MetadataTokenizer needs at least one feature group (group_widths is empty).")
        if any(w <= 0 for w in widths):
            raise ValueError(f"MetadataTokenizer group_widths must all be positive, got {widths}.")
        if post not in POSTS:
            raise ValueError(f"MetadataTokenizer post must be one of {POSTS}, got {post!r}.")
        self.group_widths, self.dim, self.owner = widths, int(dim), owner
        self.projections = nn.ModuleList(nn.Linear(w, dim) for w in widths)
        self.norms = nn.ModuleList(nn.BatchNorm1d(dim) for _ in widths) if post == "batch_norm" else None
        self.act = nn.ReLU() if post == "relu" else None
        self.feature_embed = nn.Parameter(torch.zeros(1, len(widths), dim)) if feature_embedding else None
        if self.feature_embed is not None:
            nn.init.trunc_normal_(self.feature_embed, std=0.02)

    @property
    def num_features(self) -> int:
        """Number of clinical features, i.e. tokens produced."""
        return len(self.group_widths)

    @property
    def in_features(self) -> int:
        """Total number of encoded metadata columns expected in the input."""
        return sum(self.group_widths)

    def forward(self, meta: torch.Tensor | None) -> torch.Tensor:
        """Map ``(B, sum(widths))`` encoded metadata to ``(B, n_features, dim)`` tokens."""
        if meta is None:
            raise ValueError(
                f"{self.owner} was built with metadata ({self.num_features} clinical features, meta_groups="
                f"{self.group_widths}) but forward got meta=None; pass the batch's 'meta' tensor or build "
                f"{self.owner} without metadata."
            )
        if meta.ndim != 2 or meta.shape[1] != self.in_features:
            raise ValueError(
                f"{self.owner} expected meta of shape (B, {self.in_features}) "
                f"(group widths {self.group_widths}), got {tuple(meta.shape)}."
            )
        parts = torch.split(meta, self.group_widths, dim=1)
        tokens = [proj(x) for x, proj in zip(parts, self.projections, strict=True)]
        if self.norms is not None:
            tokens = [norm(t) for t, norm in zip(tokens, self.norms, strict=True)]
        out = torch.stack(tokens, dim=1)
        if self.act is not None:
            out = self.act(out)
        return out + self.feature_embed if self.feature_embed is not None else out


def metadata_tokenizer(
    owner: str, meta_groups: Sequence[int] | None, meta_names: Sequence[str] | None, dim: int, enabled: bool = True
) -> tuple[MetadataTokenizer | None, list[str]]:
    """A net's ``(MetadataTokenizer, meta_names)`` when built with metadata (``enabled`` and ``meta_groups``),
    else ``(None, [])``: the image-only ablation has no metadata parameters."""
    groups = [int(w) for w in (meta_groups or [])]
    if not (enabled and groups):
        return None, []
    return MetadataTokenizer(groups, dim, owner=owner), feature_names(owner, groups, meta_names)


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
