"""Atrous Spatial Pyramid Pooling bottleneck (DeepLab), built on MONAI's ``SimpleASPP``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution, SimpleASPP


class ASPPBottleneck(nn.Module):
    """Multi-scale context at the deepest encoder level: parallel dilated convolutions, fused.

    The DualNet paper (arXiv 2510.17773, Deep-UNet) puts an "Atrous Spatial Pyramid Pooling
    bottleneck for multi-scale feature extraction" between the EfficientNet-B3 encoder and the
    decoder: dilated convolutions at several rates see the deepest features at several receptive
    fields (pigment networks vs. whole-lesion shape). That is exactly MONAI's
    :class:`monai.networks.blocks.SimpleASPP` (Chen et al. 2018): one 1x1 branch plus one 3x3
    branch per dilation rate, concatenated and fused by a 1x1 Conv-BN-activation. We use it as is
    rather than re-implementing ASPP.

    Choices where the paper is silent:
        * Rates ``(6, 12, 18)`` (DeepLabv3's output-stride-16 rates; the common default) plus the
          1x1 branch.
        * No image-level (global average pooling) branch: the paper does not mention one and
          ``SimpleASPP`` has none.
        * Each branch has ``ceil(out_channels / n_branches)`` channels, so ``self.out_channels``
          is that times ``n_branches`` (>= the requested width); ReLU after the fusion conv.
        * ``enabled=False`` (the paper's "without ASPP" ablation) replaces the pyramid by one
          3x3 Conv-BN-ReLU with the same output width, so the decoder is unchanged.

    Args:
        in_channels: channels of the deepest encoder feature map.
        out_channels: requested output width (rounded up to a multiple of the branch count).
        rates: dilation rates of the 3x3 branches.
        enabled: ASPP (True) or a plain 3x3 conv bottleneck (False).

    Shape:
        ``(B, in_channels, h, w) -> (B, self.out_channels, h, w)``.
    """

    def __init__(
        self, in_channels: int, out_channels: int = 256, rates: Sequence[int] = (6, 12, 18), enabled: bool = True
    ) -> None:
        super().__init__()
        rates = tuple(int(r) for r in rates)
        if enabled and (not rates or any(r < 1 for r in rates)):
            raise ValueError(f"ASPP rates must be a non-empty list of positive dilations, got {list(rates)}.")
        self.enabled = bool(enabled)
        self.rates = rates if enabled else ()
        n_branches = 1 + len(rates)
        branch_channels = math.ceil(out_channels / n_branches)
        self.out_channels = branch_channels * n_branches
        if self.enabled:
            self.block: nn.Module = SimpleASPP(
                spatial_dims=2,
                in_channels=in_channels,
                conv_out_channels=branch_channels,
                kernel_sizes=(1,) + (3,) * len(rates),
                dilations=(1,) + rates,
                norm_type="BATCH",
                acti_type="RELU",
            )
        else:
            self.block = Convolution(
                spatial_dims=2,
                in_channels=in_channels,
                out_channels=self.out_channels,
                kernel_size=3,
                act="RELU",
                norm="BATCH",
                bias=False,
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the pyramid (or the plain conv) to ``(B, C, h, w)`` features."""
        return self.block(x)
