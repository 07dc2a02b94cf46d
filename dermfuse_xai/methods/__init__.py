"""The explanation methods: one registry, one file per family.

:data:`REGISTRY` lists every method the explain loop knows, in the order they run and are reported.
Adding a method = one new file here that defines an :class:`~dermfuse_xai.methods.base.ExplanationMethod`
+ one entry in :data:`REGISTRY` (dermfuse_xai/README.md, "Adding a method"). The queries below
(:func:`default_methods`, :func:`check_methods`) read the registry at call time.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import torch.nn as nn

from dermfuse_models.protocol import is_segmentation_net, net_of
from dermfuse_xai.methods.base import ExplanationMethod, MethodContext, Task
from dermfuse_xai.methods.cross_attention import CROSS_ATTENTION
from dermfuse_xai.methods.feature_attribution import GRADIENT_SHAP, KERNEL_SHAP, LIME, SHAPLEY_SAMPLING
from dermfuse_xai.methods.gradcam import GRAD_CAM, SEG_GRAD_CAM
from dermfuse_xai.methods.relevancy import RELEVANCY, ROLLOUT
from dermfuse_xai.methods.vit_gradcam import VIT_GRAD_CAM

REGISTRY: list[ExplanationMethod] = [
    GRAD_CAM,
    VIT_GRAD_CAM,
    SEG_GRAD_CAM,
    RELEVANCY,
    ROLLOUT,
    CROSS_ATTENTION,
    KERNEL_SHAP,
    SHAPLEY_SAMPLING,
    GRADIENT_SHAP,
    LIME,
]


def method_names() -> list[str]:
    """Every registered method's name, in registry order."""
    return [m.name for m in REGISTRY]


def method_named(name: str) -> ExplanationMethod:
    """The registered method called ``name``; a ``ValueError`` naming the closest and all known names otherwise."""
    for method in REGISTRY:
        if method.name == name:
            return method
    close = difflib.get_close_matches(str(name), method_names(), n=2, cutoff=0.5)
    guess = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise ValueError(f"{name!r} is unknown{guess} (choose from {', '.join(method_names())})")


def task_of(net: nn.Module, task: Task | None = None) -> Task:
    """``task`` if given, else what ``protocol.is_segmentation_net`` says ``net`` (or the net in a task) is."""
    return task or ("segmentation" if is_segmentation_net(net) else "classification")


def unfit_reason(method: ExplanationMethod, net: nn.Module, context: MethodContext) -> str | None:
    """``None`` when ``method`` fits ``net``, else why not (a net of the other task: that, then the method's reason)."""
    reason = method.applies(net, context)
    if method.task == context.task:
        return reason
    fitting = [m.name for m in REGISTRY if m.task == context.task and m.applies(net, context) is None]
    kind = (
        "a segmentation net (pixel logits, no class score)"
        if context.task == "segmentation"
        else "a classifier (class logits)"
    )
    wrong = f"it is {kind} and {method.name} explains {method.task} nets: use {' / '.join(fitting) or 'none fits'}"
    return wrong if reason is None else f"{wrong} (also: {reason})"


def default_methods(net: nn.Module, meta_groups: list[int] | None = None, task: Task | None = None) -> list[str]:
    """The registry's default methods that fit ``net`` (``task=None``: :func:`task_of`), in registry order.

    Grad-CAM for CNNs with cam layers, ViT Grad-CAM + relevancy + rollout for ViTs with token cam layers and
    attention capture,
    cross-attention where the fusion keeps (spatial or feature) maps, KernelShap + LIME where the net
    takes clinical features (and ``meta_groups`` are given); Seg-Grad-CAM only for segmentation nets.
    """
    context = MethodContext(task_of(net, task), meta_groups)
    return [m.name for m in REGISTRY if m.default and unfit_reason(m, net, context) is None]


def check_methods(
    net: nn.Module, methods: Iterable[str], meta_groups: list[int] | None, task: Task | None = None
) -> list[str]:
    """``methods`` without repeats, validated for ``net``; a ``ValueError`` saying which do not fit and why."""
    methods = list(dict.fromkeys(methods))
    context = MethodContext(task_of(net, task), meta_groups)
    problems = []
    for name in methods:
        try:
            method = method_named(name)
        except ValueError as err:
            problems.append(str(err))
            continue
        reason = unfit_reason(method, net, context)
        if reason is not None:
            problems.append(f"{name!r} does not fit {type(net_of(net)).__name__}: {reason}")
    if problems:
        raise ValueError("cannot run the requested explanation methods: " + "; ".join(problems) + ".")
    return methods


__all__ = [
    "REGISTRY",
    "ExplanationMethod",
    "MethodContext",
    "check_methods",
    "default_methods",
    "method_named",
    "method_names",
    "task_of",
    "unfit_reason",
]
