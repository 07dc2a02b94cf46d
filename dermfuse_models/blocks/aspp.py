"""Atrous Spatial Pyramid Pooling bottleneck (DeepLab), built on MONAI's ``SimpleASPP``."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution, SimpleASPP


class ASPPBottleneck(nn.Module):
    """Multi-scale context at the deepest encoder level: parallel dilated convolutions, fused.

    The DualNet paper (arXiv 2510.17773, Deep-UNet) has a paper: "Deep-UNet with EfficientNet-B3
    encoder, ASPP bottleneck, and Depthwise Attention Gates"; ASPP paper: "Captures multi-scale
    contextual information through dilated convolutions with different rates" (the summary: features
    at multiple scales, paper: "pigment networks, globules"). That is exactly MONAI's
    :class:`monai.networks.blocks.SimpleASPP` (Chen et al. 2018): one 1x1 branch plus one 3x3
    branch per dilation rate, concatenated and fused by a 1x1 Conv-BN-activation. We use it as is
    rather than re-implementing ASPP.

    Choices where the paper is silent:
        * Rates ``(1, 2, 3)`` plus the 1x1 branch: each 3x3 branch sees distinct context at the
          bottleneck's own resolution. DeepLabv3's ``(6, 12, 18)`` are for a 33x33 output-stride-16
          map; at Deep-UNet's stride-32 bottleneck (8x8 at 256 px, 7x7 at 224 px) the off-centre taps
          of rates 12 and 18 fall outside the map everywhere, so those branches are 1x1 convs in effect
          (:func:`sees_context`; ``forward`` warns when a rate is that large).
        * No image-level (global average pooling) branch: the paper does not mention one and
          ``SimpleASPP`` has none.
        * Each branch has ``ceil(out_channels / n_branches)`` channels, so ``self.out_channels``
          is that times ``n_branches`` (>= the requested width); ReLU after the fusion conv.
        * ``enabled=False`` (an ablation switch; the paper reports no ablation) replaces the pyramid by one
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
        self, in_channels: int, out_channels: int = 256, rates: Sequence[int] = (1, 2, 3), enabled: bool = True
    ) -> None:
        super().__init__()
        rates = tuple(int(r) for r in rates)
        if enabled and (not rates or any(r < 1 for r in rates)):
            raise ValueError(f"ASPP rates must be a non-empty list of positive dilations, got {list(rates)}.")
        self.enabled = bool(enabled)
        self.rates = rates if enabled else ()
        self._size_checked = False
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
        """Apply the pyramid (or the plain conv) to ``(B, C, h, w)`` features (warns once on degenerate rates)."""
        if self.enabled and not self._size_checked:
            self._size_checked = True
            side = min(int(x.shape[-2]), int(x.shape[-1]))
            blind = [r for r in self.rates if not sees_context(r, side)]
            if blind:
                warnings.warn(
                    f"ASPP rates {blind} on a {x.shape[-2]}x{x.shape[-1]} bottleneck: the centre output of those "
                    f"branches sees only its centre tap (a 1x1 conv in effect). Use rates <= {side // 2} "
                    "(e.g. aspp_rates=[1, 2, 3] for the 7x7/8x8 bottleneck of a 224/256 px input).",
                    stacklevel=2,
                )
        return self.block(x)


def sees_context(rate: int, side: int) -> bool:
    """Whether a 3x3 conv with dilation ``rate`` on a ``side``-long axis reaches an off-centre tap from the centre.

    The centre position is ``(side - 1) // 2``; its taps lie at ``+-rate``, so at least one lands inside the
    (zero-padded) map iff ``rate <= side // 2``. Distinct rates that all pass see distinct context.
    """
    return 1 <= int(rate) <= int(side) // 2
