"""What an explanation method is to the explain loop: one :class:`ExplanationMethod` record.

A record says which nets it fits (``task`` and ``applies``), what it computes (``run``: image maps
and/or clinical feature scores) and how to read its numbers (``convention``, written into
``scores.json``). The loop in :mod:`dermfuse_xai.explain` knows nothing else about a method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import torch
import torch.nn as nn

from dermfuse_xai.settings import ExplainSettings

Task = Literal["classification", "segmentation"]


@dataclass(frozen=True)
class MethodContext:
    """What decides whether a method fits, besides the net: its task and the data's clinical feature blocks."""

    task: Task
    meta_groups: list[int] | None = None


@dataclass(frozen=True)
class MethodInputs:
    """One batch as a method sees it.

    Attributes:
        image: ``(B, 3, H, W)`` normalised images. meta: ``(B, F_cols)`` encoded metadata or ``None``.
        mask: ``(B, 1, H, W)`` lesion masks or ``None`` (a net ignores what it does not use).
        target: what to explain: ``(B,)`` classes (classification) or ``(B, H, W)`` regions whose lesion
            logits are summed (segmentation).
        settings: the run's :class:`~dermfuse_xai.settings.ExplainSettings`.
        meta_groups / meta_names: the clinical feature blocks and their names (``None`` without metadata).
    """

    image: torch.Tensor
    target: torch.Tensor
    meta: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    settings: ExplainSettings = field(default_factory=ExplainSettings)
    meta_groups: list[int] | None = None
    meta_names: list[str] | None = None


class FeatureScores(NamedTuple):
    """One score per clinical feature and image: ``names`` (F), ``values`` ``(B, F)``, ``extra`` (e.g. the
    ``f_input`` / ``f_baseline`` lists and ``output`` / ``baseline`` of the SHAP methods)."""

    names: list[str]
    values: torch.Tensor
    extra: dict


@dataclass
class MethodResult:
    """What one method gives for a batch: ``maps`` ``{name: (B, H, W)}`` and ``features`` ``{name: FeatureScores}``;
    ``notes`` ``{map name: per image None or a dict with a "reason"}`` say why a map has nothing to show."""

    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    features: dict[str, FeatureScores] = field(default_factory=dict)
    notes: dict[str, list[dict | None]] = field(default_factory=dict)


def always_fits(net: nn.Module, context: MethodContext) -> str | None:
    """``applies`` for a method that fits every net of its task."""
    return None


@dataclass(frozen=True)
class ExplanationMethod:
    """One explanation method, as the registry (:data:`dermfuse_xai.methods.REGISTRY`) lists it.

    Attributes:
        name: what ``--methods`` takes; also the prefix of its map names (``gradcam/image``).
        task: the nets it explains: ``"classification"`` (class logits) or ``"segmentation"`` (lesion logits).
        convention: how to read its numbers (one sentence; ``scores.json["conventions"][name]``).
        run: ``(net, MethodInputs) -> MethodResult``.
        applies: ``(net, MethodContext) -> None`` when it fits a net of its task, else the reason it does not.
        default: whether it runs when no method is named.
        yields_maps: its maps are image heatmaps, scored by localisation, deletion and model
            randomisation (the randomised net is explained with it too); False for feature-only methods.
    """

    name: str
    task: Task
    convention: str
    run: Callable[[nn.Module, MethodInputs], MethodResult]
    applies: Callable[[nn.Module, MethodContext], str | None] = always_fits
    default: bool = True
    yields_maps: bool = True
