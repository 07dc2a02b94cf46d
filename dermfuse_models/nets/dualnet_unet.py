"""DualNet stage 1: Deep-UNet lesion segmenter (arXiv 2510.17773) and mask prediction for stage 2."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks import Convolution

from dermfuse_models.blocks.aspp import ASPPBottleneck
from dermfuse_models.blocks.attention_gates import DepthwiseAttentionGate
from dermfuse_models.encoders import create_encoder
from dermfuse_models.protocol import NetOutput, call_net


class UNetDecoderBlock(nn.Module):
    """One U-Net decoder step: upsample, (gate the skip,) concatenate, two 3x3 Conv-BN-ReLU.

    The upsampled decoder feature is the gating signal of the skip's
    :class:`DepthwiseAttentionGate`; with ``attention_gate=False`` the skip is concatenated as is
    (plain U-Net). Upsampling is bilinear to the skip's exact size, so any input size works.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, attention_gate: bool) -> None:
        super().__init__()
        self.gate = DepthwiseAttentionGate(skip_channels, in_channels) if attention_gate else None
        self.convs = nn.Sequential(
            Convolution(
                2, in_channels + skip_channels, out_channels, kernel_size=3, act="RELU", norm="BATCH", bias=False
            ),
            Convolution(2, out_channels, out_channels, kernel_size=3, act="RELU", norm="BATCH", bias=False),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Decoder feature ``x`` (coarser) + encoder ``skip`` -> features at the skip's size."""
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        if self.gate is not None:
            skip = self.gate(skip, x)
        return self.convs(torch.cat([x, skip], dim=1))


class DeepUNet(nn.Module):
    """Deep-UNet: EfficientNet encoder, ASPP bottleneck, attention-gated U-Net decoder.

    The DualNet paper's segmentation stage (arXiv 2510.17773), paper: "Deep-UNet with EfficientNet-B3
    encoder, ASPP bottleneck, and Depthwise Attention Gates performs segmentation using BCE + Dice
    loss"; reported: paper: "ISIC 2018 segmentation task: mDice 91.17%, mIoU 84.35%":
        * encoder: timm EfficientNet-B3, ``features_only=True``, all five stages (strides
          2/4/8/16/32; channels 24/32/48/136/384 for B3);
        * bottleneck: ASPP on the stride-32 features (:class:`ASPPBottleneck`, MONAI
          ``SimpleASPP`` with rates ``aspp_rates``);
        * decoder: four U-Net steps back to stride 2 (widths ``decoder_channels``), each skip
          (strides 16, 8, 4, 2) gated by a :class:`DepthwiseAttentionGate` whose gating signal is
          the upsampled decoder feature;
        * head: 3x3 conv to one channel, bilinear upsampling to the input size -> mask logits.

    Choices where the paper is silent:
        * Decoder widths ``(256, 128, 64, 32)``, bilinear upsampling, two 3x3 Conv-BN-ReLU per step
          (the usual U-Net / smp layout); the ASPP output width is ``decoder_channels[0]``.
        * ``deep_supervision=True`` adds a 1x1 logit head on each decoder step but the last;
          in training mode their logits, bilinearly upsampled to the input size, are returned
          coarse to fine in ``deep_logits`` (``SegmentationTask`` weights them); in eval mode only
          ``logits`` is returned, so validation loss and inference use the main output.
        * Ablation switches: ``attention_gates=False`` (plain skips), ``aspp=False`` (3x3 conv
          bottleneck of the same width).

    Args:
        encoder: timm name of the encoder (EfficientNet family or any ``features_only`` model
            with five stages).
        pretrained: ImageNet weights for the encoder (see ``create_encoder``).
        weights_path: local weights file for the encoder (implies pretrained).
        aspp_rates: ASPP dilation rates (default ``(1, 2, 3)``: distinct context at the 8x8 bottleneck
            of a 256 px input; see :class:`ASPPBottleneck`).
        attention_gates: gate the skip connections (False = plain U-Net skips).
        decoder_channels: widths of the four decoder steps, coarse to fine.
        deep_supervision: also return ``deep_logits``.
        aspp: ASPP bottleneck (False = plain 3x3 conv bottleneck).
        encoder_kwargs: extra ``timm.create_model`` arguments (e.g. ``drop_path_rate``).

    Forward:
        ``forward(image (B, 3, H, W), meta=None, mask=None) -> {"logits": (B, 1, H, W)}`` (+
        ``"deep_logits"``: list of ``(B, 1, H, W)``, coarse to fine, with ``deep_supervision`` in
        training mode); ``meta`` and ``mask`` are ignored (``output_kind = "mask_logits"``: the
        batch's mask is the target). Logits, not probabilities.
    """

    output_kind = "mask_logits"

    def __init__(
        self,
        encoder: str = "efficientnet_b3",
        pretrained: bool = False,
        weights_path: str | None = None,
        aspp_rates: Sequence[int] = (1, 2, 3),
        attention_gates: bool = True,
        decoder_channels: Sequence[int] = (256, 128, 64, 32),
        deep_supervision: bool = False,
        aspp: bool = True,
        encoder_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        decoder_channels = [int(c) for c in decoder_channels]
        self.encoder = create_encoder(
            encoder, pretrained=pretrained, weights_path=weights_path, features_only=True, **(encoder_kwargs or {})
        )
        channels = list(self.encoder.feature_info.channels())
        if len(channels) != len(decoder_channels) + 1:
            raise ValueError(
                f"DeepUNet needs an encoder with {len(decoder_channels) + 1} feature stages for "
                f"{len(decoder_channels)} decoder_channels; {encoder!r} gives {len(channels)} "
                f"(channels {channels}). Use an EfficientNet (5 stages) or change decoder_channels."
            )
        self.encoder_channels = channels
        self.attention_gates = bool(attention_gates)
        self.deep_supervision = bool(deep_supervision)
        self.bottleneck = ASPPBottleneck(channels[-1], decoder_channels[0], aspp_rates, enabled=aspp)

        skips = channels[-2::-1]  # strides 16, 8, 4, 2
        widths_in = [self.bottleneck.out_channels] + decoder_channels[:-1]
        self.decoder = nn.ModuleList(
            UNetDecoderBlock(c_in, c_skip, c_out, self.attention_gates)
            for c_in, c_skip, c_out in zip(widths_in, skips, decoder_channels, strict=True)
        )
        self.head = nn.Conv2d(decoder_channels[-1], 1, kernel_size=3, padding=1)
        self.deep_heads = (
            nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1) for c in decoder_channels[:-1])
            if self.deep_supervision
            else None
        )

    @property
    def gates(self) -> list[DepthwiseAttentionGate]:
        """The skip attention gates, coarse to fine (empty when ``attention_gates=False``)."""
        return [block.gate for block in self.decoder if block.gate is not None]

    def seg_cam_layers(self) -> dict[str, nn.Module]:
        """Seg-Grad-CAM layers (``dermfuse_xai.methods.gradcam``): the ASPP bottleneck (stride 32) and
        the last decoder stage (stride 2)."""
        return {"bottleneck": self.bottleneck, "decoder": self.decoder[-1]}

    def forward(
        self, image: torch.Tensor, meta: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> NetOutput:
        """Mask logits at the input size: ``{"logits": (B, 1, H, W)[, "deep_logits": [...]]}``."""
        if image.ndim != 4:
            raise ValueError(f"DeepUNet expects images (B, C, H, W), got shape {tuple(image.shape)}.")
        size = image.shape[-2:]
        features = self.encoder(image)
        x = self.bottleneck(features[-1])
        stage_outputs = []
        for block, skip in zip(self.decoder, features[-2::-1], strict=True):
            x = block(x, skip)
            stage_outputs.append(x)
        out: NetOutput = {"logits": _resize(self.head(x), size)}
        if self.deep_heads is not None and self.training:
            out["deep_logits"] = [
                _resize(head(f), size) for head, f in zip(self.deep_heads, stage_outputs, strict=False)
            ]
        return out


def _resize(logits: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of logits to ``size`` (no-op when already there)."""
    if logits.shape[-2:] == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


@torch.no_grad()
def predict_masks(
    segmenter: nn.Module, images: torch.Tensor, threshold: float = 0.5, batch_size: int | None = None
) -> torch.Tensor:
    """Binary lesion masks from a trained segmenter: the input to DualNet's segmented branch.

    Runs ``segmenter`` in eval mode (its previous train/eval mode is restored afterwards) without
    gradients, takes ``sigmoid(logits) > threshold`` and returns float 0/1 masks at the images'
    size (logits of another size are resized bilinearly first), the same layout as a batch's
    ``mask`` key. This is how stage 1 feeds stage 2 (arXiv 2510.17773: the Deep-UNet's masks
    produce the segmented-lesion input of the second DenseNet201).

    Args:
        segmenter: a protocol net returning ``{"logits": (B, 1, h, w)}`` (e.g. :class:`DeepUNet`;
            a plain module returning mask logits goes in ``protocol.ImageOnlyNet``), called through
            ``protocol.call_net``.
        images: ``(B, 3, H, W)`` normalised images, on the segmenter's device.
        threshold: probability above which a pixel is lesion, in (0, 1).
        batch_size: run the images in chunks of this size (``None``: one pass).

    Returns:
        ``(B, 1, H, W)`` float32 tensor of 0/1 on the images' device.
    """
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"predict_masks threshold must be in (0, 1), got {threshold}.")
    if images.ndim != 4:
        raise ValueError(f"predict_masks expects images (B, C, H, W), got shape {tuple(images.shape)}.")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"predict_masks batch_size must be >= 1 or None, got {batch_size}.")
    if len(images) == 0:
        return torch.zeros((0, 1, *images.shape[-2:]), dtype=torch.float32, device=images.device)
    was_training = segmenter.training
    segmenter.eval()
    try:
        masks = []
        for chunk in images.split(batch_size or len(images)):
            logits = call_net(segmenter, {"image": chunk}, mask_input=False)["logits"]
            if logits.ndim != 4 or logits.shape[1] != 1:
                raise ValueError(
                    f"predict_masks needs one-channel mask logits (B, 1, h, w) from the segmenter, got "
                    f"{tuple(logits.shape)}; pass a binary lesion segmenter such as DeepUNet."
                )
            probs = torch.sigmoid(_resize(logits.float(), chunk.shape[-2:]))
            masks.append((probs > threshold).float())
    finally:
        segmenter.train(was_training)
    return torch.cat(masks)
