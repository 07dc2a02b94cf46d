"""Attention gates on U-Net skip connections, with depthwise-separable projections."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class DepthwiseSeparableConv(nn.Module):
    """Depthwise ``k x k`` conv (one filter per channel) + pointwise ``1 x 1`` conv + BatchNorm.

    The factorised convolution of MobileNet/Xception: spatial filtering per channel, then channel
    mixing, at a fraction of a full convolution's parameters.

    Shape: ``(B, in_channels, H, W) -> (B, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, kernel_size, padding=kernel_size // 2, groups=in_channels, bias=False
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Depthwise, then pointwise, then BatchNorm."""
        return self.norm(self.pointwise(self.depthwise(x)))


class DepthwiseAttentionGate(nn.Module):
    """Gate an encoder skip connection by a spatial attention map computed with the decoder.

    The Deep-UNet's paper: "Depthwise Attention Gates" / paper: "Dual Attention Gates (DAG)" (DualNet,
    arXiv 2510.17773, segmentation stage): paper: "Modulates skip connections between encoder and
    decoder layers to preserve spatial resolution while maintaining global context". Following the
    additive attention gate of Attention U-Net (Oktay et al. 2018), with "depthwise" read as
    depthwise-separable convolutions for the projections (chosen: the summary gives no layers):

        ``alpha = sigmoid(psi(ReLU(theta_x(skip) + phi_g(gate))))``,   ``out = skip * alpha``

    where ``theta_x`` and ``phi_g`` are :class:`DepthwiseSeparableConv` s to ``inter_channels``
    and ``psi`` (the output projection) is a ``1 x 1`` conv to one channel, so ``alpha`` is a
    ``(B, 1, H, W)`` coefficient map in (0, 1) broadcast over the skip's channels. "Dual" is read
    as the gate's two inputs: the encoder skip and the decoder gating signal.

    Choices where the paper is silent:
        * The gating signal is the decoder feature already upsampled to the skip's resolution (it
          is resized bilinearly if it is not), so no strided projection of the skip is needed.
        * ``inter_channels`` defaults to ``max(skip_channels // 2, 1)`` (Attention U-Net).
        * 3x3 depthwise kernels; BatchNorm after each projection; ``psi`` has a bias.

    Args:
        skip_channels: channels of the encoder skip feature ``x``.
        gate_channels: channels of the decoder gating signal ``g``.
        inter_channels: width of the joint attention space.

    Attributes:
        last_coefficients: the last ``alpha`` map ``(B, 1, H, W)``, detached (for figures).

    Shape:
        ``forward(skip (B, Cs, H, W), gate (B, Cg, h, w)) -> (B, Cs, H, W)``.
    """

    def __init__(self, skip_channels: int, gate_channels: int, inter_channels: int | None = None) -> None:
        super().__init__()
        inter = int(inter_channels) if inter_channels is not None else max(skip_channels // 2, 1)
        self.theta_x = DepthwiseSeparableConv(skip_channels, inter)
        self.phi_g = DepthwiseSeparableConv(gate_channels, inter)
        self.act = nn.ReLU(inplace=True)
        self.psi = nn.Conv2d(inter, 1, kernel_size=1, bias=True)
        self.last_coefficients: torch.Tensor | None = None

    def coefficients(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """The attention coefficient map ``alpha`` ``(B, 1, H, W)`` in (0, 1)."""
        if gate.shape[-2:] != skip.shape[-2:]:
            gate = F.interpolate(gate, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(self.psi(self.act(self.theta_x(skip) + self.phi_g(gate))))

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """Return ``skip * alpha`` (and keep ``alpha`` in ``last_coefficients``)."""
        alpha = self.coefficients(skip, gate)
        self.last_coefficients = alpha.detach()
        return skip * alpha
