"""How explanation methods see a dermfuse net: a plain function ``(image, meta?, mask?) -> logits``.

Paper nets return dicts (``{"logits": ..., "aux_losses": ...}``) and take optional ``meta`` /
``mask`` keyword inputs (``dermfuse_models.tasks.classification``); captum and the relevancy code
want a callable returning the logits tensor. :class:`LogitsModel` is that adapter; the helpers here
say which inputs a net accepts, which layers Grad-CAM should hook and whether a net exposes the
attention capture API of ``dermfuse_models.nets.vitatt.ViTAtt``.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn as nn

_OPTIONAL_INPUTS = ("meta", "mask")


def unwrap_net(model: nn.Module) -> nn.Module:
    """The ``nn.Module`` that maps tensors to logits: ``task.net`` for a ``ClassificationTask``, else ``model``."""
    net = getattr(model, "net", None)
    return net if isinstance(net, nn.Module) else model


def accepted_inputs(net: nn.Module) -> tuple[str, ...]:
    """Which of ``meta`` / ``mask`` ``net.forward`` accepts (all of them if it takes ``**kwargs``)."""
    params = inspect.signature(net.forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return _OPTIONAL_INPUTS
    return tuple(k for k in _OPTIONAL_INPUTS if k in params)


def logits_of(output: Any) -> torch.Tensor:
    """The logits in a net's output: the tensor itself or ``output["logits"]``."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict) and "logits" in output:
        return output["logits"]
    raise TypeError(
        f"cannot find logits in a net output of type {type(output).__name__}; dermfuse nets return a "
        "tensor or a dict with a 'logits' entry (see dermfuse_models.tasks.classification)."
    )


class LogitsModel(nn.Module):
    """Adapter: ``LogitsModel(net)(image, meta=None, mask=None) -> logits (B, K)``.

    Passes ``meta`` / ``mask`` only when the net accepts them (as ``ClassificationTask`` does), and
    unwraps dict outputs, so that captum (``LayerGradCam``, ``KernelShap``, ``Lime``) sees a function
    returning logits. Positional call order ``(image, meta, mask)`` matches captum's
    ``additional_forward_args``.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = unwrap_net(net)
        self.inputs = accepted_inputs(self.net)

    @property
    def takes_meta(self) -> bool:
        """Whether the wrapped net has a ``meta`` input."""
        return "meta" in self.inputs

    @property
    def uses_meta(self) -> bool:
        """Takes ``meta`` and was built with clinical features: a ``meta_names`` attribute, where the
        net keeps one (ViTAtt, MammoXAttn, DualNet), is non-empty (empty = the image-only ablation)."""
        names = getattr(self.net, "meta_names", None)
        return self.takes_meta and (names is None or len(names) > 0)

    @property
    def takes_mask(self) -> bool:
        """Whether the wrapped net has a ``mask`` input."""
        return "mask" in self.inputs

    def forward(self, image: torch.Tensor, meta: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of the wrapped net for ``image`` (and ``meta`` / ``mask`` where it takes them)."""
        kwargs = {}
        if meta is not None and self.takes_meta:
            kwargs["meta"] = meta
        if mask is not None and self.takes_mask:
            kwargs["mask"] = mask
        return logits_of(self.net(image, **kwargs))


def cam_layers_of(net: nn.Module) -> dict[str, nn.Module]:
    """Layers Grad-CAM should hook: ``net.cam_layers()`` where defined, else the last stage of a timm CNN.

    dermfuse's CNN classifiers declare ``cam_layers()`` (e.g. dualnet's two DenseNet201
    ``features.norm5``, mammo_xattn's ResNet-50 ``layer4``). A bare timm CNN is supported through
    its ``feature_info`` (the module of the deepest feature stage). Returns ``{}`` for nets with
    neither (e.g. ViTs, which get transformer relevancy instead).
    """
    net = unwrap_net(net)
    if callable(getattr(net, "cam_layers", None)):
        layers = dict(net.cam_layers())
        bad = [name for name, layer in layers.items() if not isinstance(layer, nn.Module)]
        if bad:
            raise TypeError(f"{type(net).__name__}.cam_layers() must map names to nn.Modules; {bad} are not.")
        return layers
    info = getattr(net, "feature_info", None)
    if info is not None and not has_attention_capture(net):
        try:
            name = info[-1]["module"] if isinstance(info, list) else info.module_name()[-1]
            return {"features": net.get_submodule(name)}
        except (AttributeError, KeyError, IndexError, TypeError):
            return {}
    return {}


def has_attention_capture(net: nn.Module) -> bool:
    """Whether ``net`` implements ViTAtt's capture API (``set_attention_capture``, ``attentions``, ``token_layout``)."""
    net = unwrap_net(net)
    return callable(getattr(net, "set_attention_capture", None)) and hasattr(net, "attentions")


def meta_names_of(net: nn.Module) -> list[str]:
    """The net's clinical feature names (``meta_names``) where it keeps them, else ``[]``."""
    return list(getattr(unwrap_net(net), "meta_names", None) or [])
