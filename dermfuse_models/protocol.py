"""The net contract, written once: what every dermfuse net takes, returns and declares.

Every paper net is a plain ``nn.Module`` (tensors in, never batches) with one signature::

    forward(image (B, 3, H, W), meta (B, F) | None = None, mask (B, 1, H, W) | None = None) -> NetOutput

A net ignores the inputs it does not use (an image-only net ignores ``meta`` and ``mask``), so
callers never inspect signatures: :func:`call_net` is the one way a batch reaches a net. ``mask`` is
an *input* (DualNet's segmented-lesion branch, MSViT's attention regularisation); for segmentation
nets the batch's mask is the target and is never passed (``mask_input=False``).

What a net may declare for explanations is typed here too, so ``dermfuse_xai`` needs nothing else
from ``dermfuse_models``:

* :class:`GradCamLayers` (``cam_layers()``) and :class:`SegGradCamLayers` (``seg_cam_layers()``);
* :class:`TokenGradCamLayers` (ViTs: ``token_cam_layers()``, token-sequence layers read on the patch grid);
* :class:`AttentionCapture` (ViTs: ``set_attention_capture``, ``attentions``, ``token_layout``);
* :class:`AttentionMaps` (fusion blocks: ``attention_maps``, each an :class:`AttentionMap` that says
  what its keys are: an image grid, clinical feature tokens, or channels);
* :class:`UsesMetadata` (``meta_names``: one name per clinical feature, empty without metadata).

This module imports only torch: it is the whole surface other packages see of the nets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, Protocol, TypedDict, runtime_checkable

import torch
import torch.nn as nn

OutputKind = Literal["class_logits", "mask_logits"]
KeyKind = Literal["image_grid", "feature_tokens", "channels"]

#: the config keys that set the input size (named in the size-mismatch error)
IMAGE_SIZE_KEYS = ("data.image_size", "model.init_args.net.init_args.img_size")


class NetOutput(TypedDict):
    """What a net's ``forward`` returns.

    ``logits``: ``(B, K)`` class logits, or ``(B, 1, H, W)`` lesion logits for a segmentation net
    (``output_kind = "mask_logits"``). ``aux_losses``: already weighted scalar losses the task adds to
    its own (attention regularisation, ...). ``deep_logits``: coarse-to-fine side outputs of a
    segmentation net for deep supervision (training only).
    """

    logits: torch.Tensor
    aux_losses: NotRequired[dict[str, torch.Tensor]]
    deep_logits: NotRequired[list[torch.Tensor]]


def output_kind(net: nn.Module) -> OutputKind:
    """``"mask_logits"`` for segmentation nets (they set ``output_kind``), else ``"class_logits"``."""
    return getattr(net_of(net), "output_kind", "class_logits")


def is_segmentation_net(net: nn.Module) -> bool:
    """Whether ``net`` (or the net inside a task) outputs lesion logits ``(B, 1, H, W)``."""
    return output_kind(net) == "mask_logits"


def net_of(model: nn.Module) -> nn.Module:
    """The net inside a task (``task.net``), or ``model`` itself."""
    net = getattr(model, "net", None)
    return net if isinstance(net, nn.Module) else model


def as_output(out: Any) -> NetOutput:
    """A net's return value as a :class:`NetOutput`; a clear error for anything without logits."""
    if isinstance(out, Mapping) and isinstance(out.get("logits"), torch.Tensor):
        return out  # type: ignore[return-value]
    raise TypeError(
        f"a dermfuse net must return a dict with a 'logits' tensor (dermfuse_models.protocol.NetOutput), "
        f"got {type(out).__name__}; wrap a plain image -> logits module in protocol.ImageOnlyNet."
    )


def check_input_size(net: nn.Module, image: torch.Tensor) -> None:
    """Raise when a net built for ``net.input_size`` (a side in pixels) gets images of another size.

    ViTs size their position embedding at construction; the CLI links ``data.image_size`` to the
    net's ``img_size``, so a mismatch means the two were set apart (the error names both keys).
    """
    expected = getattr(net, "input_size", None)
    if expected is None:
        return
    got = tuple(int(s) for s in image.shape[-2:])
    if got != (int(expected), int(expected)):
        raise ValueError(
            f"{type(net).__name__} was built for {expected}x{expected} images ({IMAGE_SIZE_KEYS[1]}={expected}) "
            f"but got {got[0]}x{got[1]} ({IMAGE_SIZE_KEYS[0]}={got[0]}): set one size, {IMAGE_SIZE_KEYS[0]}; "
            "the CLI links it to the net."
        )


def call_net(net: nn.Module, batch: Mapping[str, Any], *, mask_input: bool = True) -> NetOutput:
    """Run ``net`` on a dermfuse batch (``image``, optional ``meta`` / ``mask``): the one way a batch reaches a net.

    ``mask_input=False`` keeps the batch's mask away from the net (segmentation: it is the target).
    """
    image = batch["image"]
    check_input_size(net, image)
    mask = batch.get("mask") if mask_input else None
    try:
        out = net(image, meta=batch.get("meta"), mask=mask)
    except TypeError as err:  # a plain module: forward(x) takes neither meta nor mask
        if "unexpected keyword argument 'meta'" not in str(err):
            raise
        raise TypeError(
            f"{type(net).__name__}.forward takes no meta/mask: a dermfuse net is forward(image, meta=None, "
            "mask=None) -> NetOutput (dermfuse_models.protocol); wrap a plain image -> logits module in "
            "protocol.ImageOnlyNet."
        ) from err
    return as_output(out)


class ImageOnlyNet(nn.Module):
    """Adapter: any ``image -> logits`` module (a bare timm model) as a protocol net.

    ``cam_layers()`` is the deepest feature stage of a timm CNN (its ``feature_info``), if it has one.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(
        self, image: torch.Tensor, meta: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> NetOutput:
        """``{"logits": module(image)}``; ``meta`` and ``mask`` are ignored."""
        return {"logits": self.module(image)}

    def cam_layers(self) -> dict[str, nn.Module]:
        """The module of the deepest feature stage of a timm CNN; ``{}`` for anything else."""
        info = getattr(self.module, "feature_info", None)
        try:
            name = info[-1]["module"] if isinstance(info, list) else info.module_name()[-1]
            return {"features": self.module.get_submodule(name)}
        except (AttributeError, KeyError, IndexError, TypeError):
            return {}


# ----------------------------------------------------------------------------- explanation hooks
@runtime_checkable
class GradCamLayers(Protocol):
    """A classifier that names the convolutional layers Grad-CAM should hook (``{name: module}``)."""

    def cam_layers(self) -> dict[str, nn.Module]: ...


@runtime_checkable
class SegGradCamLayers(Protocol):
    """A segmentation net that names the layers Seg-Grad-CAM should hook (``bottleneck``, ``decoder``, ...)."""

    def seg_cam_layers(self) -> dict[str, nn.Module]: ...


@dataclass(frozen=True)
class TokenLayout:
    """Where each kind of token sits in a ViT's sequence (the last forward's).

    ``cls``: index of the class token; ``patches``: the patch tokens, row-major over ``grid``
    (rows, cols); ``meta``: one token per clinical feature (``None`` for image-only nets).
    """

    cls: int
    patches: slice
    grid: tuple[int, int]
    meta: slice | None = None


@runtime_checkable
class TokenGradCamLayers(Protocol):
    """A ViT that names the layers Grad-CAM should hook on its token sequence (``{name: module}``).

    Each module outputs ``(B, T, D)`` tokens laid out as ``token_layout`` (set by every forward): the
    patch tokens (``token_layout.patches``) reshaped to ``token_layout.grid`` are Grad-CAM's feature map.
    The layer must feed the class token after it (e.g. the last block's ``norm1``, the input of its
    attention): the patch outputs of the last block no longer reach the class-token head.
    """

    token_layout: TokenLayout | None

    def token_cam_layers(self) -> dict[str, nn.Module]: ...


@runtime_checkable
class AttentionCapture(Protocol):
    """A ViT that can record every block's post-softmax attention.

    ``set_attention_capture(True, keep_grad)`` makes each forward fill ``attentions`` with one
    ``(B, heads, T, T)`` map per block (kept in the graph with ``retain_grad()`` when ``keep_grad``);
    ``False`` restores the fused attention path. ``token_layout`` describes the last forward's tokens.
    A block may see only a prefix of the final sequence (``T_b <= T``: tokens appended after it, e.g.
    late-fusion metadata tokens); those tokens pass such a block unchanged.
    """

    attentions: list[torch.Tensor]
    token_layout: TokenLayout | None

    def set_attention_capture(self, enabled: bool = True, keep_grad: bool = False) -> None: ...


@dataclass
class AttentionMap:
    """The weights of one attention block, with what its keys are (never guessed from a name).

    Attributes:
        weights: ``(B, heads, Q, K)`` attention weights (rows sum to 1), detached unless asked otherwise.
        keys: ``"image_grid"`` (K positions of a feature map, row-major over ``grid``),
            ``"feature_tokens"`` (K clinical features, named by ``names``) or ``"channels"``
            (channel tokens: not spatial, never drawn as a heatmap).
        grid: ``(rows, cols)`` of the keys for ``image_grid``.
        names: one name per key for ``feature_tokens``.
    """

    weights: torch.Tensor
    keys: KeyKind
    grid: tuple[int, int] | None = None
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.weights.ndim != 4:
            raise ValueError(f"AttentionMap weights must be (B, heads, Q, K), got {tuple(self.weights.shape)}.")
        k = int(self.weights.shape[-1])
        if self.keys == "image_grid" and (self.grid is None or self.grid[0] * self.grid[1] != k):
            raise ValueError(f"an image_grid AttentionMap with {k} keys needs grid=(rows, cols) with rows*cols={k}.")
        if self.keys == "feature_tokens" and len(self.names) != k:
            raise ValueError(f"a feature_tokens AttentionMap with {k} keys needs {k} names, got {len(self.names)}.")


@runtime_checkable
class AttentionMaps(Protocol):
    """A net whose fusion blocks keep their last attention weights, ``{name: AttentionMap}``."""

    attention_maps: dict[str, AttentionMap]


@runtime_checkable
class UsesMetadata(Protocol):
    """A net that takes clinical features: ``meta_names`` has one name per feature (empty = built without)."""

    meta_names: list[str]


def uses_metadata(net: nn.Module) -> bool:
    """Whether ``net`` (or the net inside a task) was built with clinical features."""
    inner = net_of(net)
    return isinstance(inner, UsesMetadata) and len(inner.meta_names) > 0


__all__ = [
    "IMAGE_SIZE_KEYS",
    "AttentionCapture",
    "AttentionMap",
    "AttentionMaps",
    "GradCamLayers",
    "ImageOnlyNet",
    "KeyKind",
    "NetOutput",
    "OutputKind",
    "SegGradCamLayers",
    "TokenGradCamLayers",
    "TokenLayout",
    "UsesMetadata",
    "as_output",
    "call_net",
    "check_input_size",
    "is_segmentation_net",
    "net_of",
    "output_kind",
    "uses_metadata",
]
