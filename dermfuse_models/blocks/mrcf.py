"""Multi-Resolution Multi-Channel Fusion (MRCF), EAM-Net (arXiv 2512.07275), Section II.C."""

from __future__ import annotations

import torch
import torch.nn as nn

DEFAULT_DILATIONS = (3, 5, 7)


class MultiResolutionChannelFusion(nn.Module):
    """MRCF: split channels into groups, give each group its own receptive field, fuse by 1x1.

    Section II.C, paper: "MRCF splits input channels into 4 groups; one preserves raw features, three
    undergo dilated convolutions at rates 3, 5, 7. Outputs concatenate and fuse via 1×1 convolution",
    with paper: "GhostNet-inspired cheap operations": the first group is kept as it is (zero cost, as
    GhostNet's identity half), each of the other three goes through a 3x3 convolution with dilation
    3, 5 and 7 respectively (receptive field 7, 11
    and 15 pixels at the block's resolution). The groups are concatenated and fused by a 1x1
    convolution, so every output channel mixes all four scales.

    Choices where the paper is silent:
        * Each dilated branch is conv(no bias) -> BatchNorm -> ReLU on ``channels / 4`` channels
          (grouping keeps the cost at a quarter of a full 3x3 conv per branch).
        * Fusion is 1x1 conv -> BatchNorm, added to the input (residual), then ReLU, so the
          block can start close to identity inside a residual encoder.
        * ``channels`` must be divisible by the number of groups (``len(dilations) + 1``).

    Args:
        channels: input = output channels.
        dilations: dilation of each convolved group (the paper's 3, 5, 7).

    Forward: ``(B, C, H, W) -> (B, C, H, W)``. ``branch_outputs(x)`` returns the per-group
    features before fusion (identity group first), for inspection and tests.
    """

    def __init__(self, channels: int, dilations: tuple[int, ...] | list[int] = DEFAULT_DILATIONS) -> None:
        super().__init__()
        n_groups = len(dilations) + 1
        if channels % n_groups != 0:
            raise ValueError(
                f"MRCF splits channels into {n_groups} groups (identity + dilations {tuple(dilations)}); "
                f"channels={channels} is not divisible by {n_groups}. Use a channel count that is."
            )
        self.channels = channels
        self.dilations = tuple(int(d) for d in dilations)
        self.group_channels = channels // n_groups
        g = self.group_channels
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(g, g, kernel_size=3, padding=d, dilation=d, bias=False),
                nn.BatchNorm2d(g),
                nn.ReLU(inplace=True),
            )
            for d in self.dilations
        )
        self.fuse = nn.Sequential(nn.Conv2d(channels, channels, kernel_size=1, bias=False), nn.BatchNorm2d(channels))
        self.act = nn.ReLU(inplace=True)

    def branch_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-group features before fusion: ``[identity group, dilation d1, d2, d3]``."""
        groups = torch.split(x, self.group_channels, dim=1)
        return [groups[0]] + [branch(g) for branch, g in zip(self.branches, groups[1:], strict=True)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Split, apply per-group receptive fields, concatenate, fuse by 1x1, add the input."""
        mixed = torch.cat(self.branch_outputs(x), dim=1)
        return self.act(x + self.fuse(mixed))
