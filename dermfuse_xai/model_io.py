"""How explanation methods see a dermfuse net: a plain function ``(image, meta?, mask?) -> logits``.

Every dermfuse net follows ``dermfuse_models.protocol`` (``forward(image, meta=None, mask=None) ->
NetOutput``); captum and the relevancy code want a callable returning the logits tensor.
:class:`LogitsModel` is that adapter (through ``protocol.call_net``); the helpers here say which
layers Grad-CAM and Seg-Grad-CAM should hook and whether a net exposes the protocol's attention capture API.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from dermfuse_models.protocol import AttentionCapture, call_net, is_segmentation_net, uses_metadata
from dermfuse_models.protocol import net_of as unwrap_net


class LogitsModel(nn.Module):
    """Adapter: ``LogitsModel(net)(image, meta=None, mask=None) -> logits``.

    Calls the net through ``protocol.call_net`` (a segmentation net never gets the mask) and returns
    ``output["logits"]``, so that captum (``LayerGradCam``, ``KernelShap``, ``Lime``) sees a function
    returning logits. Positional call order ``(image, meta, mask)`` matches captum's
    ``additional_forward_args``.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = unwrap_net(net)

    @property
    def uses_meta(self) -> bool:
        """Whether the net was built with clinical features (``protocol.uses_metadata``: non-empty
        ``meta_names``; empty = the image-only ablation)."""
        return uses_metadata(self.net)

    def forward(
        self, image: torch.Tensor, meta: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits of the wrapped net for ``image`` (and ``meta`` / ``mask``, which it ignores where unused)."""
        batch = {"image": image, "meta": meta, "mask": mask}
        return call_net(self.net, batch, mask_input=not is_segmentation_net(self.net))["logits"]


def cam_layers_of(net: nn.Module) -> dict[str, nn.Module]:
    """Layers Grad-CAM should hook: ``net.cam_layers()`` (``protocol.GradCamLayers``), else ``{}``.

    dermfuse's CNN classifiers declare ``cam_layers()`` (e.g. dualnet's two DenseNet201
    ``features.norm5``, mammo_xattn's ResNet-50 ``layer4``); a bare timm CNN in
    ``protocol.ImageOnlyNet`` declares its deepest feature stage. Nets without (e.g. ViTs, which get
    transformer relevancy instead) give ``{}``.
    """
    return _declared_layers(net, "cam_layers")


def seg_cam_layers_of(net: nn.Module) -> dict[str, nn.Module]:
    """Layers Seg-Grad-CAM should hook: ``net.seg_cam_layers()`` (``protocol.SegGradCamLayers``: EAM-Net and
    Deep-UNet declare ``{"bottleneck": ..., "decoder": ...}``), else ``{}``."""
    return _declared_layers(net, "seg_cam_layers")


def token_cam_layers_of(net: nn.Module) -> dict[str, nn.Module]:
    """Token layers ViT Grad-CAM should hook: ``net.token_cam_layers()`` (``protocol.TokenGradCamLayers``: MSViT
    and ViTAtt), else ``{}``."""
    return _declared_layers(net, "token_cam_layers")


def _declared_layers(net: nn.Module, hook: str) -> dict[str, nn.Module]:
    """``net.<hook>()`` as a dict of modules (``{}`` when the net does not declare it)."""
    net = unwrap_net(net)
    if not callable(getattr(net, hook, None)):
        return {}
    layers = dict(getattr(net, hook)())
    bad = [name for name, layer in layers.items() if not isinstance(layer, nn.Module)]
    if bad:
        raise TypeError(f"{type(net).__name__}.{hook}() must map names to nn.Modules; {bad} are not.")
    return layers


def has_attention_capture(net: nn.Module) -> bool:
    """Whether ``net`` implements ``protocol.AttentionCapture`` (``set_attention_capture``, ``attentions``,
    ``token_layout``)."""
    return isinstance(unwrap_net(net), AttentionCapture)


def meta_names_of(net: nn.Module) -> list[str]:
    """The net's clinical feature names (``meta_names``) where it keeps them, else ``[]``."""
    return list(getattr(unwrap_net(net), "meta_names", None) or [])
