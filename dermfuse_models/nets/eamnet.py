"""EAM-Net: attention-guided multi-scale network for skin lesion segmentation (arXiv 2512.07275)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dermfuse_models.blocks.cmam import CMAM_MODES, CrossMixAttention
from dermfuse_models.blocks.external_attention import ExternalAttentionBridge
from dermfuse_models.blocks.mrcf import MultiResolutionChannelFusion
from dermfuse_models.protocol import AttentionMap, NetOutput

NUM_STAGES = 4


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> ReLU with 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    """Basic residual block (two 3x3 conv-BN, projection shortcut when shape changes): the paper's "Res-Block"."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(in_channels, out_channels, 3, stride),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``ReLU(body(x) + shortcut(x))``."""
        return self.act(self.body(x) + self.shortcut(x))


class MultiScaleFusionHead(nn.Module):
    """Fuse feature maps of several scales into one logit map (the paper's MSEF / MSDF heads).

    Each input is projected by 1x1 conv-BN-ReLU to ``width`` channels, bilinearly resized to
    the resolution of the finest input, concatenated, mixed by a 3x3 conv-BN-ReLU and mapped
    to one channel of logits by a 1x1 conv.
    """

    def __init__(self, in_channels: list[int], width: int) -> None:
        super().__init__()
        self.projections = nn.ModuleList(conv_bn_relu(c, width, kernel_size=1) for c in in_channels)
        self.mix = conv_bn_relu(width * len(in_channels), width, kernel_size=3)
        self.classifier = nn.Conv2d(width, 1, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Logits ``(B, 1, h, w)`` at the size of the largest feature map."""
        size = max((f.shape[-2:] for f in features), key=lambda s: s[0] * s[1])
        projected = [
            p(f) if f.shape[-2:] == size else F.interpolate(p(f), size=size, mode="bilinear", align_corners=False)
            for p, f in zip(self.projections, features, strict=True)
        ]
        return self.classifier(self.mix(torch.cat(projected, dim=1)))


class DecoderStage(nn.Module):
    """Upsample the deeper feature, fuse it with the skip, refine (one decoder stage; layout chosen).

    ``up = conv1x1(bilinear x2(deeper))``; ``x = ResidualBlock(concat(up, skip))``; with
    ``use_cmam`` the fused features pass through CMAM (paper: "CMAM at feature fusion points"); without it
    this is the plain concatenation fusion of a residual U-Net.
    """

    def __init__(
        self, deeper_channels: int, skip_channels: int, use_cmam: bool, cmam_heads: int, cmam_mode: str
    ) -> None:
        super().__init__()
        self.reduce = conv_bn_relu(deeper_channels, skip_channels, kernel_size=1)
        self.fuse = ResidualBlock(2 * skip_channels, skip_channels)
        self.attention: nn.Module = (
            CrossMixAttention(skip_channels, heads=cmam_heads, mode=cmam_mode) if use_cmam else nn.Identity()
        )

    def forward(self, deeper: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Decoder features at the skip's resolution."""
        up = F.interpolate(deeper, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.attention(self.fuse(torch.cat([self.reduce(up), skip], dim=1)))


class EAMNet(nn.Module):
    """EAM-Net: residual U-shaped network with MRCF, CMAM, External Attention Bridges and MSEF/MSDF.

    Layout: paper: "a four-stage encoder with residual blocks, each followed by MRCF modules" (stage
    ``i`` has ``base_channels * 2**i`` channels at stride ``2**i``; ``blocks_per_stage`` residual blocks,
    the first strided; MRCF: Section II.C); paper: "EAB between encoder-decoder stages", one External
    Attention Bridge on each of the three skip connections (Section II.D); a decoder whose stages fuse
    the upsampled deeper features with the bridged skip by concatenation and a residual block, followed
    by paper: "CMAM at feature fusion points" (Equations 1-5); and paper: "Multi-scale supervision is
    applied through MSEF and MSDF heads during training": MSDF fuses all decoder stages into the final
    mask (this is the output), MSEF fuses the encoder stages into an encoder-side prediction, and a 1x1
    side head on every decoder stage gives the supervision signals (paper: "Input → Res-Block → MRCF →
    [EAB → Decoder] with CMAM at fusion → MSDF → Segmentation mask").

    Ablation switches (the summary reports no ablation numbers; suggested: "train baseline, add MRCF
    only, then CMAM only, then EAB only"): ``use_mrcf`` (off: a plain 3x3 conv-BN-ReLU of the same
    width), ``use_cmam`` (off: plain concatenation fusion), ``use_eab`` (off: identity skip),
    ``memory_size`` (EAB memory units k; suggested: "sweep k ∈ {16, 32, 64, 128} in EAB"),
    ``deep_supervision`` (off: no MSEF and no side heads; the MSDF output remains the mask), and
    ``cmam_mode`` (``"cross"`` = CMAM, ``"parallel"`` / ``"serial"`` = the CBAM-style combinations the
    paper claims to beat: paper: "improves boundary delineation over serial or parallel attention
    combinations").

    Choices where the paper is silent (paper: "only 4.6M parameters" and paper: "FLOPs: 16.85G", but no
    widths):
        * ``base_channels=32`` (stage widths 32/64/128/256) and ``blocks_per_stage=(2, 2, 4, 2)``
          (ResNet-like: the stride-4 stage is the deepest) give 4.53 M parameters with every module
          on, within 1.5 % of the paper's 4.6 M, and 15.85 GMACs at 224 x 224 (the paper's 16.85 G);
          see experiments/eamnet/README.md for the measurement at other input sizes.
        * Stage 1 is at full resolution (stride 1); strided 3x3 convs downsample; the decoder
          upsamples bilinearly and reduces channels by 1x1 conv.
        * EAB ``top_k``: fraction of each skip's channels kept by the L1-norm selection
          (default 0.75; ``None`` or 1.0 keeps all). ``memory_size`` default 64.
        * CMAM: channel-token cross-attention with ``cmam_heads=4`` (see ``CrossMixAttention``).
        * MSEF/MSDF width ``fusion_channels=16``; MSEF works at stride 2 on encoder stages 2-4.
        * ``deep_logits`` (training only, coarse to fine): ``[MSEF (stride 2), side head on decoder
          stride 4, stride 2, stride 1]`` at their native sizes; the task resizes them.

    Args:
        in_channels: image channels.
        base_channels: width of stage 1 (must be divisible by 4 for MRCF's groups).
        use_mrcf, use_cmam, use_eab: module switches (see above).
        memory_size: EAB memory units k.
        top_k: fraction of channels kept by EAB's top-k selection, or None for all.
        deep_supervision: build MSEF + side heads and return ``deep_logits`` in training.
        blocks_per_stage: residual blocks per encoder stage (one int for all, or four ints).
        cmam_heads: heads of each CMAM cross-attention.
        cmam_mode: ``"cross"``, ``"parallel"`` or ``"serial"``.
        fusion_channels: width of the MSEF/MSDF fusion heads.

    Forward:
        ``forward(image (B, in_channels, H, W), meta=None, mask=None) -> {"logits": (B, 1, H, W)}``
        plus ``"deep_logits": list[(B, 1, h, w)]`` when training with ``deep_supervision``;
        ``meta`` and ``mask`` are ignored (``output_kind = "mask_logits"``: the batch's mask is the
        target). H and W must be divisible by 8.

    Explainability: after each forward ``self.attention_maps`` holds every CMAM's last
    cross-attention weights ``(B, heads, C/h, C/h)`` (detached) under
    ``decoder<i>/spatial_to_channel`` and ``decoder<i>/channel_to_spatial`` (``i`` = 0 is the
    deepest decoder stage; empty without CMAM or in parallel/serial mode), each an
    ``AttentionMap`` with ``keys="channels"`` (never drawn as a heatmap).
    """

    output_kind = "mask_logits"

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 32,
        use_mrcf: bool = True,
        use_cmam: bool = True,
        use_eab: bool = True,
        memory_size: int = 64,
        top_k: float | None = 0.75,
        deep_supervision: bool = True,
        blocks_per_stage: int | tuple[int, ...] = (2, 2, 4, 2),
        cmam_heads: int = 4,
        cmam_mode: str = "cross",
        fusion_channels: int = 16,
    ) -> None:
        super().__init__()
        if base_channels % 4 != 0:
            raise ValueError(
                f"EAMNet base_channels={base_channels} must be divisible by 4 (MRCF splits channels into 4 groups)."
            )
        if top_k is not None and not 0.0 < top_k <= 1.0:
            raise ValueError(
                f"EAMNet top_k is the fraction of skip channels kept: give a value in (0, 1] or None, got {top_k}."
            )
        if cmam_mode not in CMAM_MODES:
            raise ValueError(f"Unknown cmam_mode {cmam_mode!r}; valid choices: {', '.join(map(repr, CMAM_MODES))}.")
        depths = [blocks_per_stage] * NUM_STAGES if isinstance(blocks_per_stage, int) else list(blocks_per_stage)
        if len(depths) != NUM_STAGES or min(depths) < 1:
            raise ValueError(
                f"EAMNet blocks_per_stage must be a positive int or {NUM_STAGES} positive ints (one per stage), "
                f"got {blocks_per_stage}."
            )
        self.use_mrcf, self.use_cmam, self.use_eab = use_mrcf, use_cmam, use_eab
        self.deep_supervision = deep_supervision
        widths = [base_channels * 2**i for i in range(NUM_STAGES)]
        self.widths = widths

        self.encoder = nn.ModuleList()
        self.multi_scale = nn.ModuleList()
        previous = in_channels
        for i, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            blocks = [ResidualBlock(previous, width, stride=1 if i == 0 else 2)]
            blocks += [ResidualBlock(width, width) for _ in range(depth - 1)]
            self.encoder.append(nn.Sequential(*blocks))
            self.multi_scale.append(MultiResolutionChannelFusion(width) if use_mrcf else conv_bn_relu(width, width))
            previous = width

        self.bridges = nn.ModuleList(
            ExternalAttentionBridge(w, memory_size, _kept_channels(w, top_k)) if use_eab else nn.Identity()
            for w in widths[:-1]
        )
        # decoder stages from deep to shallow: (256 -> 128 @ s4), (128 -> 64 @ s2), (64 -> 32 @ s1)
        self.decoder = nn.ModuleList(
            DecoderStage(widths[i + 1], widths[i], use_cmam, cmam_heads, cmam_mode)
            for i in reversed(range(NUM_STAGES - 1))
        )
        decoder_widths = [widths[i] for i in reversed(range(NUM_STAGES - 1))]
        self.msdf = MultiScaleFusionHead(decoder_widths, fusion_channels)
        if deep_supervision:
            self.msef: MultiScaleFusionHead | None = MultiScaleFusionHead(widths[1:], fusion_channels)
            self.side_heads: nn.ModuleList | None = nn.ModuleList(nn.Conv2d(w, 1, 1) for w in decoder_widths)
        else:
            self.msef, self.side_heads = None, None
        self.attention_maps: dict[str, AttentionMap] = {}

    def forward(
        self, image: torch.Tensor, meta: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> NetOutput:
        """Mask logits at input size; ``deep_logits`` (coarse to fine) in training with deep supervision."""
        h, w = image.shape[-2:]
        factor = 2 ** (NUM_STAGES - 1)
        if h % factor or w % factor:
            raise ValueError(
                f"EAMNet needs H and W divisible by {factor}; got an image of {h}x{w}. Resize or pad the input."
            )
        encoded = []
        # channels-last input (e.g. a permuted HWC batch) crashes this net's CPU backward with a heap
        # corruption in torch 2.15 (double free in the conv/BN autograd kernels); NCHW is safe.
        x = image.contiguous()
        for stage, fusion in zip(self.encoder, self.multi_scale, strict=True):
            x = fusion(stage(x))
            encoded.append(x)
        skips = [bridge(f) for bridge, f in zip(self.bridges, encoded[:-1], strict=True)]

        decoded = []
        x = encoded[-1]
        for stage, skip in zip(self.decoder, reversed(skips), strict=True):
            x = stage(x, skip)
            decoded.append(x)
        logits = self.msdf(decoded)
        out: NetOutput = {"logits": logits}
        if self.training and self.deep_supervision:
            assert self.msef is not None and self.side_heads is not None
            side = [head(f) for head, f in zip(self.side_heads, decoded, strict=True)]
            out["deep_logits"] = [self.msef(encoded[1:])] + side
        self.attention_maps = self.cmam_attention_maps()
        return out

    def seg_cam_layers(self) -> dict[str, nn.Module]:
        """Seg-Grad-CAM layers (``dermfuse_xai.methods.gradcam``): the stage-4 MRCF output (stride 8)
        and the last decoder stage (stride 1, after its CMAM)."""
        return {"bottleneck": self.multi_scale[-1], "decoder": self.decoder[-1]}

    def cmam_attention_maps(self) -> dict[str, AttentionMap]:
        """Last CMAM cross-attention weights per decoder stage (``decoder<i>/<direction>``), detached."""
        maps: dict[str, AttentionMap] = {}
        for i, stage in enumerate(self.decoder):
            for name, value in getattr(stage.attention, "attention_maps", {}).items():
                maps[f"decoder{i}/{name}"] = value
        return maps


def _kept_channels(channels: int, fraction: float | None) -> int | None:
    """Number of channels EAB keeps for a top-k fraction (None = all)."""
    if fraction is None or fraction >= 1.0:
        return None
    return max(1, round(channels * fraction))
