"""Grad-CAM (Selvaraju et al. 2017) and Seg-Grad-CAM (Vinogradova, Dibrov & Myers 2020): one Grad-CAM, two targets.

Grad-CAM of a scalar ``y`` at a convolutional layer ``A`` is ``ReLU(sum_c alpha_c A_c)`` with ``alpha_c``
the spatial mean of ``dy / dA_c`` (captum ``LayerGradCam``), upsampled bilinearly to the image.

* Classifiers (:func:`grad_cam`): ``y`` is the target class *logit*. The papers' image explanations:
  dualnet (arXiv 2510.17773, paper: "Grad-CAM visualizations"; here one map per DenseNet201 branch) and
  mammo_xattn (arXiv 2508.16000, paper: "Grad-CAM for imaging localization", the ResNet-50). Layers: the
  net's ``cam_layers()``. ViTs: :mod:`dermfuse_xai.methods.vit_gradcam`.
* Segmentation nets (:func:`seg_grad_cam`; EAM-Net, arXiv 2512.07275, and DualNet's stage-1 Deep-UNet
  output one lesion logit per pixel): ``y = sum_{(u, v) in R} logit[u, v]``, the lesion logits summed
  over a region ``R`` (:class:`RegionScore`, a one-class net), explained by the same :func:`grad_cam`.
  ``R`` is the net's predicted lesion (``sigmoid(logit) >= threshold``; all pixels when the prediction is
  empty) or, with ``target="label"``, the ground-truth mask. Layers: the net's ``seg_cam_layers()``,
  ``bottleneck`` (the deepest encoder features, as in Seg-Grad-CAM) and ``decoder`` (the last decoder
  stage, the finest features before the output head).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from captum.attr import LayerAttribution, LayerGradCam

from dermfuse_models.protocol import NetOutput
from dermfuse_xai.methods.base import ExplanationMethod, MethodContext, MethodInputs, MethodResult
from dermfuse_xai.model_io import LogitsModel, cam_layers_of, seg_cam_layers_of
from dermfuse_xai.regions import lesion_logits, predicted_region


@dataclass(frozen=True)
class LayerHook:
    """How a net names the layers of one Grad-CAM flavour (for lookups and their error messages)."""

    method: str
    hook: str
    known: str

    def pick(self, net: nn.Module, layers: dict[str, nn.Module], name: str | None) -> nn.Module:
        """The module called ``name`` (default the first declared); a clear error when there is none."""
        if not layers:
            raise ValueError(
                f"{type(net).__name__} declares no {self.method} layer: give `layer=` or implement "
                f"{self.hook}() -> {{name: module}} on the net ({self.known})."
            )
        name = name or next(iter(layers))
        if name not in layers:
            what = self.hook[:-1].replace("_", " ")
            raise ValueError(f"unknown {what} {name!r} for {type(net).__name__}; known: {sorted(layers)}")
        return layers[name]


_CAM = LayerHook("Grad-CAM", "cam_layers", "dermfuse CNN classifiers expose it")
_SEG_CAM = LayerHook("Seg-Grad-CAM", "seg_cam_layers", "EAM-Net and Deep-UNet are known")


def per_image_targets(target: torch.Tensor | int, image: torch.Tensor) -> torch.Tensor:
    """``target`` (one int or ``(B,)`` classes) as a ``(B,)`` long tensor on the image's device."""
    target = torch.as_tensor(target, device=image.device).long()
    return target.expand(image.shape[0]).contiguous() if target.ndim == 0 else target


def grad_cam(
    net: nn.Module,
    image: torch.Tensor,
    target: torch.Tensor | int,
    layer: nn.Module | str | None = None,
    meta: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    relu: bool = True,
) -> torch.Tensor:
    """Grad-CAM map of ``target`` at ``layer``, upsampled bilinearly to the image size.

    ``ReLU(sum_c alpha_c A_c)`` with ``alpha_c`` the spatial mean of d logit_target / d A_c
    (captum ``LayerGradCam`` on the target *logit*), then ``LayerAttribution.interpolate`` to
    ``(H, W)``. Maps are in the image's coordinates only for layers that see the image itself (a
    branch that sees a crop would need the crop box; dualnet's lesion branch sees the masked image
    at the same size, so its map is aligned). A module run several times per forward (dualnet's
    ``share_encoders=True``) gives the map of its last run (captum keeps the last activation).

    Args:
        net: a dermfuse net (dict output, optional meta/mask inputs), a ``ClassificationTask`` or a
            timm CNN in ``protocol.ImageOnlyNet``. Put it in ``eval()`` mode first.
        image: ``(B, 3, H, W)`` normalised images.
        target: class index per image ``(B,)`` or one int for all.
        layer: the module to hook, or a name of ``cam_layers_of(net)``; default its first entry.
        meta, mask: extra inputs (a net ignores those it does not use).
        relu: keep only positive evidence (standard Grad-CAM); False gives the signed map.

    Returns:
        ``(B, H, W)`` float maps (not normalised; zero where no positive evidence).
    """
    signed = layer_grad_cam(net, image, target, layer, meta, mask)
    return upsample(signed.clamp(min=0) if relu else signed, image)


def layer_grad_cam(
    net: nn.Module,
    image: torch.Tensor,
    target: torch.Tensor | int,
    layer: nn.Module | str | None = None,
    meta: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The signed Grad-CAM ``sum_c alpha_c A_c`` at the layer's own grid, ``(B, 1, h, w)``, before the ReLU.

    Its maximum says why a ReLU'd map is empty (:func:`why_empty`). Arguments as :func:`grad_cam`.
    """
    model = LogitsModel(net)
    if layer is None or isinstance(layer, str):
        layer = _CAM.pick(model.net, cam_layers_of(model.net), layer)
    target = per_image_targets(target, image)
    with torch.enable_grad():
        attr = LayerGradCam(model, layer).attribute(
            image, target=target, additional_forward_args=(meta, mask), relu_attributions=False, attr_dim_summation=True
        )
    if isinstance(attr, tuple):  # layers with tuple outputs: first element
        attr = attr[0]
    if attr.ndim != 4:
        raise ValueError(
            f"Grad-CAM layer output has shape {tuple(attr.shape)}; hook a convolutional layer whose "
            "output is (B, C, h, w)."
        )
    return attr.detach().float()


def upsample(layer_map: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """``(B, 1, h, w)`` layer maps -> ``(B, H, W)`` at the image's size (bilinear, captum's ``interpolate``)."""
    return LayerAttribution.interpolate(layer_map, tuple(image.shape[-2:]), interpolate_mode="bilinear")[:, 0].float()


def why_empty(signed: torch.Tensor, layer: str) -> list[dict | None]:
    """Per image of the signed layer maps ``(B, 1, h, w)``: ``None`` when its Grad-CAM has positive evidence, else
    why the ReLU'd map is all zero: ``{"layer", "grid", "signed_max", "reason"}``.

    Either every location's weighted activation sum is negative (the layer's evidence speaks against the
    explained output: common on a coarse grid, e.g. ResNet layer4 is 2x2 at 64 px), or it is exactly zero
    everywhere (the output's gradient or the activations vanish at the layer: frozen out of the output's path,
    dead units).
    """
    grid = [int(v) for v in signed.shape[-2:]]
    out: list[dict | None] = []
    flat = signed.flatten(1)
    for peak, magnitude in zip(flat.amax(1).tolist(), flat.abs().amax(1).tolist(), strict=True):
        if peak > 0:
            out.append(None)
            continue
        if magnitude == 0:
            reason = f"zero gradient: the signed Grad-CAM at {layer} is exactly 0 (no gradient reaches its activations)"
        else:
            reason = (
                f"no positive evidence: the signed Grad-CAM at {layer} ({grid[0]}x{grid[1]} grid) is negative "
                f"everywhere (max {peak:.2g}), so its ReLU is all zero"
            )
        out.append({"layer": layer, "grid": grid, "signed_max": peak, "reason": reason})
    return out


class RegionScore(nn.Module):
    """A one-class protocol net: ``{"logits": (B, 1)}``, the lesion logits of ``segmenter`` summed over ``region``.

    The Seg-Grad-CAM target as a classifier, so that :func:`grad_cam` explains it (class 0).
    """

    def __init__(self, segmenter: nn.Module, region: torch.Tensor) -> None:
        super().__init__()
        self.segmenter = LogitsModel(segmenter)  # not `.net`: protocol.net_of would unwrap this adapter
        self.region = region.float()

    def forward(
        self, image: torch.Tensor, meta: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> NetOutput:
        """``{"logits": (B, 1)}``: ``sum over region of the lesion logits`` (the mask never reaches the segmenter)."""
        logits = lesion_logits(self.segmenter(image, meta, mask))
        region = self.region.to(logits)
        if region.shape[-2:] != logits.shape[-2:]:
            raise ValueError(f"region {tuple(region.shape)} does not match the logits {tuple(logits.shape)}.")
        return {"logits": (logits * region).flatten(1).sum(1, keepdim=True)}


def seg_grad_cam(
    net: nn.Module,
    image: torch.Tensor,
    region: torch.Tensor | None = None,
    layer: nn.Module | str | None = None,
    meta: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    threshold: float = 0.5,
    relu: bool = True,
) -> torch.Tensor:
    """Seg-Grad-CAM: :func:`grad_cam` of the lesion logits summed over ``region`` (:class:`RegionScore`) at ``layer``.

    Args:
        net: a segmentation net (EAM-Net, Deep-UNet, ...) or a ``SegmentationTask``; in ``eval()`` mode.
        image: ``(B, 3, H, W)`` normalised images.
        region: ``(B, H, W)`` or ``(B, 1, H, W)`` pixels whose lesion logits are summed; default the
            net's predicted lesion (:func:`~dermfuse_xai.regions.predicted_region`, all pixels where it is empty).
        layer: a module or a name of ``seg_cam_layers_of(net)``; default its first entry (``"bottleneck"``).
        meta, mask: extra inputs (a net ignores those it does not use).
        threshold: lesion probability threshold of the default region.
        relu: keep only positive evidence (standard); False gives the signed map.

    Returns:
        ``(B, H, W)`` float maps (not normalised; zero where no positive evidence).
    """
    signed = _seg_layer_grad_cam(net, image, region, layer, meta, mask, threshold)
    return upsample(signed.clamp(min=0) if relu else signed, image)


def _seg_layer_grad_cam(
    net: nn.Module,
    image: torch.Tensor,
    region: torch.Tensor | None,
    layer: nn.Module | str | None,
    meta: torch.Tensor | None,
    mask: torch.Tensor | None,
    threshold: float = 0.5,
) -> torch.Tensor:
    """The signed Seg-Grad-CAM at the layer's grid ``(B, 1, h, w)`` (:func:`layer_grad_cam` of :class:`RegionScore`)."""
    model = LogitsModel(net)
    if layer is None or isinstance(layer, str):
        layer = _SEG_CAM.pick(model.net, seg_cam_layers_of(model.net), layer)
    if region is None:
        with torch.no_grad():
            region = predicted_region(model(image, meta, mask), threshold)
    if region.ndim == 4:
        region = region[:, 0]
    return layer_grad_cam(RegionScore(model.net, region.to(image.device)), image, 0, layer, meta=meta, mask=mask)


def _run_grad_cam(net: nn.Module, inputs: MethodInputs) -> MethodResult:
    """One map per ``cam_layers()`` module, ``gradcam/<name>`` (a module under several names: one map, ``a+b``);
    ``notes`` say why a map is all zero (:func:`why_empty`)."""
    layers = cam_layers_of(net)
    names_of: dict[int, list[str]] = {}
    for name, layer in layers.items():
        names_of.setdefault(id(layer), []).append(name)
    result = MethodResult()
    for names in names_of.values():
        layer = layers[names[0]]
        signed = layer_grad_cam(net, inputs.image, inputs.target, layer, inputs.meta, inputs.mask)
        key = "gradcam/" + "+".join(names)
        result.maps[key] = upsample(signed.clamp(min=0), inputs.image)
        result.notes[key] = why_empty(signed, _module_name(net, layer))
    return result


def _module_name(net: nn.Module, layer: nn.Module) -> str:
    """``layer``'s dotted name inside the net (``backbone.layer4``), or its class name."""
    inner = LogitsModel(net).net
    return next((name for name, module in inner.named_modules() if module is layer), type(layer).__name__)


def _run_seg_grad_cam(net: nn.Module, inputs: MethodInputs) -> MethodResult:
    """One map per ``seg_cam_layers()`` module, ``seg_gradcam/<name>``; ``inputs.target``: the ``(B, H, W)`` region;
    ``notes`` say why a map is all zero (:func:`why_empty`)."""
    result = MethodResult()
    for name, layer in seg_cam_layers_of(net).items():
        signed = _seg_layer_grad_cam(net, inputs.image, inputs.target, layer, inputs.meta, inputs.mask)
        result.maps[f"seg_gradcam/{name}"] = upsample(signed.clamp(min=0), inputs.image)
        result.notes[f"seg_gradcam/{name}"] = why_empty(signed, _module_name(net, layer))
    return result


def _declares_cam_layers(net: nn.Module, context: MethodContext) -> str | None:
    return None if cam_layers_of(net) else "the net declares no cam_layers() and is not a timm CNN"


def _declares_seg_cam_layers(net: nn.Module, context: MethodContext) -> str | None:
    return None if seg_cam_layers_of(net) else "the net is not EAM-Net / Deep-UNet and declares no seg_cam_layers()"


GRAD_CAM = ExplanationMethod(
    name="gradcam",
    task="classification",
    run=_run_grad_cam,
    applies=_declares_cam_layers,
    convention="captum LayerGradCam on the target logit at each cam_layers() layer, ReLU, bilinear upsampling",
)
SEG_GRAD_CAM = ExplanationMethod(
    name="seg_gradcam",
    task="segmentation",
    run=_run_seg_grad_cam,
    applies=_declares_seg_cam_layers,
    convention="Seg-Grad-CAM (Vinogradova et al. 2020): LayerGradCam of the sum of the lesion logits over the "
    "target region (predicted lesion, all pixels if empty; 'label': the mask) at each "
    "seg_cam_layers() layer, ReLU, bilinear upsampling; deletion tracks the mean lesion "
    "probability over the region",
)
