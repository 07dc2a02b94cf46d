"""Late fusion of modality embeddings: concatenation and modality dropout (arXiv 2508.16000).

Written for the mammography cross-attention paper and usable by any net that fuses an image embedding
with tabular features. Its cross-/co-attention is ``blocks/cross_attention.py``, its per-feature clinical
tokens ``blocks/metadata.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn


class ConcatFusion(nn.Module):
    """Late fusion by concatenating per-modality embeddings along the feature axis (the mammography paper's
    paper: "simple feature concatenation" baseline)."""

    def forward(self, *embeddings: torch.Tensor) -> torch.Tensor:
        """``(B, D_1), ..., (B, D_m) -> (B, sum D_i)``."""
        return torch.cat(embeddings, dim=-1)


class ModalityDropout(nn.Module):
    """Zero one randomly chosen modality per sample with probability ``p``, in training only.

    The mammography paper (arXiv 2508.16000): paper: "We employ modality dropout during training, randomly
    zeroing one modality's embedding with probability p"; paper: "with probability p=0.3". For each sample, with
    probability ``p`` one of the ``M`` modalities (uniformly chosen) has all its tensors set to zero; otherwise
    the sample is untouched. No rescaling of the kept embeddings (unlike element dropout). Identity in eval mode
    and for a single modality.

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
