"""ASPP bottleneck, depthwise attention gate and cross-attention fusion blocks (DualNet, arXiv 2510.17773)."""

import math
import warnings

import pytest
import torch
import torch.nn as nn
from monai.networks.blocks import SimpleASPP

from dermfuse_models.blocks.aspp import ASPPBottleneck, sees_context
from dermfuse_models.blocks.attention_gates import DepthwiseAttentionGate, DepthwiseSeparableConv
from dermfuse_models.blocks.cross_attention import CrossAttentionFusion
from dermfuse_models.nets.dualnet_unet import DeepUNet


# ----------------------------------------------------------------------------- ASPP
def test_aspp_uses_monai_simple_aspp_with_the_given_rates():
    aspp = ASPPBottleneck(16, out_channels=32, rates=(2, 3, 4))
    assert isinstance(aspp.block, SimpleASPP)
    assert [conv.dilation[0] for conv in aspp.block.convs] == [1, 2, 3, 4]
    assert [conv.kernel_size[0] for conv in aspp.block.convs] == [1, 3, 3, 3]
    assert aspp.out_channels == 32
    assert aspp(torch.randn(2, 16, 8, 8)).shape == (2, 32, 8, 8)


def _centre_support(branch: nn.Module, side: int) -> frozenset[tuple[int, int]]:
    """Input positions the centre output of one ASPP branch depends on (non-zero gradient)."""
    x = torch.randn(1, branch.in_channels, side, side, requires_grad=True)
    centre = (side - 1) // 2
    branch(x)[0, :, centre, centre].sum().backward()
    hit = x.grad[0].abs().sum(0).nonzero().tolist()
    return frozenset((r - centre, c - centre) for r, c in hit)


@pytest.mark.parametrize("side", [7, 8])  # the stride-32 bottleneck of a 224 / 256 px input
def test_default_aspp_branches_each_see_distinct_context_at_the_bottleneck(side):
    """Receptive field by gradient: with the default rates every branch's centre output reads its own taps."""
    torch.manual_seed(0)
    net = DeepUNet(encoder="efficientnet_b0", decoder_channels=(16, 16, 16, 16))
    supports = [_centre_support(conv, side) for conv in net.bottleneck.block.convs]
    offsets = {1: {0}, 2: {-1, 0, 1}, 3: {-2, 0, 2}, 4: {-3, 0, 3}}  # 1x1, then rates 1, 2, 3
    assert supports == [frozenset((a, b) for a in offsets[i] for b in offsets[i]) for i in (1, 2, 3, 4)]
    assert len(set(supports)) == len(supports)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.bottleneck(torch.randn(1, net.encoder_channels[-1], side, side))


def test_deeplab_rates_on_an_8x8_bottleneck_are_1x1_convs_and_warn():
    """The reason for the default: at 8x8, rates 12 and 18 reach no tap but the centre (like the 1x1 branch)."""
    torch.manual_seed(0)
    aspp = ASPPBottleneck(4, out_channels=8, rates=(6, 12, 18))
    supports = [_centre_support(conv, 8) for conv in aspp.block.convs]
    assert supports[2] == supports[3] == supports[0] == frozenset({(0, 0)})
    assert sees_context(3, 8) and sees_context(4, 8) and not sees_context(5, 8) and not sees_context(4, 7)
    with pytest.warns(UserWarning, match=r"rates \[6, 12, 18\] on a 8x8 bottleneck"):
        aspp(torch.randn(1, 4, 8, 8))


def test_aspp_width_rounds_up_to_the_branch_count():
    aspp = ASPPBottleneck(8, out_channels=10, rates=(2, 4))  # 3 branches of 4 channels
    assert aspp.out_channels == 12
    assert aspp(torch.randn(1, 8, 9, 9)).shape == (1, 12, 9, 9)


def test_aspp_sees_far_context_and_plain_bottleneck_does_not():
    """A pixel 12 away changes the centre output through the rate-12 branch only."""
    torch.manual_seed(0)
    x = torch.randn(1, 4, 32, 32)
    far = x.clone()
    far[:, :, 16, 28] += 5.0  # 12 px right of the centre (16, 16)
    for enabled, expect_change in ((True, True), (False, False)):
        block = ASPPBottleneck(4, out_channels=8, rates=(12,), enabled=enabled).eval()
        delta = (block(far) - block(x))[:, :, 16, 16].abs().max().item()
        assert (delta > 1e-6) == expect_change, (enabled, delta)


def test_aspp_off_is_one_conv_of_the_same_width():
    on, off = ASPPBottleneck(16, 32), ASPPBottleneck(16, 32, enabled=False)
    assert off.out_channels == on.out_channels
    assert not any(isinstance(m, SimpleASPP) for m in off.modules())
    assert sum(p.numel() for p in off.parameters()) != sum(p.numel() for p in on.parameters())


def test_aspp_rejects_bad_rates():
    with pytest.raises(ValueError, match="rates"):
        ASPPBottleneck(4, 8, rates=())
    with pytest.raises(ValueError, match="rates"):
        ASPPBottleneck(4, 8, rates=(0, 6))


# ----------------------------------------------------------------------------- attention gate
def test_depthwise_separable_conv_is_depthwise_then_pointwise():
    conv = DepthwiseSeparableConv(8, 4)
    assert conv.depthwise.groups == 8 and conv.depthwise.weight.shape == (8, 1, 3, 3)
    assert conv.pointwise.weight.shape == (4, 8, 1, 1)
    full = nn.Conv2d(8, 4, 3, bias=False)
    assert conv.depthwise.weight.numel() + conv.pointwise.weight.numel() < full.weight.numel()
    assert conv(torch.randn(2, 8, 6, 6)).shape == (2, 4, 6, 6)


@pytest.fixture
def gate() -> DepthwiseAttentionGate:
    torch.manual_seed(0)
    return DepthwiseAttentionGate(skip_channels=6, gate_channels=10).eval()


def test_gate_multiplies_skip_by_a_spatial_map_in_unit_interval(gate):
    skip, g = torch.randn(2, 6, 8, 8), torch.randn(2, 10, 8, 8)
    out = gate(skip, g)
    alpha = gate.last_coefficients
    assert out.shape == skip.shape and alpha.shape == (2, 1, 8, 8)
    assert alpha.min() > 0 and alpha.max() < 1
    torch.testing.assert_close(out, skip * alpha)
    assert alpha.std() > 0  # spatially varying, not a constant


def test_gate_depends_on_the_decoder_gating_signal(gate):
    skip, g = torch.randn(2, 6, 8, 8), torch.randn(2, 10, 8, 8)
    assert not torch.allclose(gate(skip, g), gate(skip, g + torch.randn_like(g)))


def test_gate_resizes_a_coarser_gating_signal(gate):
    out = gate(torch.randn(1, 6, 8, 8), torch.randn(1, 10, 4, 4))
    assert out.shape == (1, 6, 8, 8)


def test_zero_output_projection_gives_half_everywhere(gate):
    nn.init.zeros_(gate.psi.weight)
    nn.init.zeros_(gate.psi.bias)
    skip = torch.randn(2, 6, 8, 8)
    torch.testing.assert_close(gate(skip, torch.randn(2, 10, 8, 8)), 0.5 * skip)


# ----------------------------------------------------------------------------- cross-attention
def _manual_cross_attention(block: CrossAttentionFusion, query, key, value_stream: str) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) V per head, written out from the block's own parameters (the packed
    ``in_proj_weight`` = W_q; W_k; W_v of its ``nn.MultiheadAttention``, then ``out_proj``)."""
    q_n, k_n = block.norm_query(query), block.norm_key(key)
    v_n = q_n if value_stream == "query" else k_n
    b, n_q, d = query.shape
    h, hd = block.num_heads, d // block.num_heads
    mha = block.attention
    (w_q, w_k, w_v), (b_q, b_k, b_v) = mha.in_proj_weight.chunk(3), mha.in_proj_bias.chunk(3)

    def split(x):
        return x.reshape(b, -1, h, hd).transpose(1, 2)

    q, k, v = split(q_n @ w_q.T + b_q), split(k_n @ w_k.T + b_k), split(v_n @ w_v.T + b_v)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hd), dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(b, n_q, d)
    return query + mha.out_proj(out), weights


@pytest.mark.parametrize("value_source", ["query", "key"])
def test_cross_attention_matches_the_formula(value_source):
    torch.manual_seed(0)
    block = CrossAttentionFusion(16, num_heads=4, mlp_ratio=0, value_source=value_source).eval()
    query, key = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    expected, weights = _manual_cross_attention(block, query, key, value_source)
    torch.testing.assert_close(block(query, key), expected)
    torch.testing.assert_close(block.last_attention, weights)
    assert block.last_attention.shape == (2, 4, 5, 5)
    torch.testing.assert_close(block.last_attention.sum(-1), torch.ones(2, 4, 5))


def test_cross_attention_is_one_multihead_attention_with_packed_projections():
    """One ``nn.MultiheadAttention`` (batch first, packed W_q; W_k; W_v: no kdim / vdim) with the value as its
    third argument: the key stream's (``"key"``) or the query stream's (``"query"``), normed like its stream."""
    for value_source in ("query", "key"):
        block = CrossAttentionFusion(8, num_heads=2, mlp_ratio=0, value_source=value_source).eval()
        assert isinstance(block.attention, nn.MultiheadAttention) and block.attention.batch_first
        assert block.attention._qkv_same_embed_dim and block.attention.in_proj_weight.shape == (24, 8)
        seen = []

        def record(module, args, kwargs, seen=seen):
            seen.append((args, kwargs))

        handle = block.attention.register_forward_pre_hook(record, with_kwargs=True)
        query, key = torch.randn(2, 3, 8), torch.randn(2, 3, 8)
        block(query, key)
        handle.remove()
        (q, k, v), kwargs = seen[0]
        assert kwargs == {"need_weights": True, "average_attn_weights": False}
        torch.testing.assert_close(q, block.norm_query(query))
        torch.testing.assert_close(k, block.norm_key(key))
        torch.testing.assert_close(v, q if value_source == "query" else k)


def test_bare_cross_attention_is_the_attention_alone():
    """``residual=False`` (MammoXAttn): ``MHA(query, key, key)``, no norm, residual or MLP."""
    torch.manual_seed(0)
    block = CrossAttentionFusion(8, num_heads=2, mlp_ratio=0, residual=False).eval()
    query, key = torch.randn(2, 1, 8), torch.randn(2, 5, 8)
    expected, weights = block.attention(query, key, key, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(block(query, key), expected)
    torch.testing.assert_close(block.last_attention, weights)
    assert block.last_attention.shape == (2, 2, 1, 5)
    assert not any(isinstance(m, nn.LayerNorm) for m in block.modules()) and block.mlp is None
    with pytest.raises(ValueError, match="mlp_ratio=0"):
        CrossAttentionFusion(8, num_heads=2, residual=False)


def test_values_from_query_stream_ignore_key_values_when_weights_are_uniform():
    """With V from the query stream, a key stream of identical tokens gives uniform weights and an
    output that depends on the key only through those weights (not through its values)."""
    torch.manual_seed(0)
    block = CrossAttentionFusion(8, num_heads=2, mlp_ratio=0, value_source="query").eval()
    query = torch.randn(1, 4, 8)
    key_a = torch.randn(1, 1, 8).expand(1, 4, 8)
    key_b = torch.randn(1, 1, 8).expand(1, 4, 8)
    out_a, out_b = block(query, key_a), block(query, key_b)
    torch.testing.assert_close(block.last_attention, torch.full((1, 2, 4, 4), 0.25))
    torch.testing.assert_close(out_a, out_b)


def test_cross_attention_map_follows_the_key_stream():
    torch.manual_seed(0)
    block = CrossAttentionFusion(8, num_heads=2, value_source="query").eval()
    query, key = torch.randn(2, 3, 8), torch.randn(2, 3, 8)
    block(query, key)
    first = block.last_attention
    block(query, key + torch.randn_like(key))
    assert not torch.allclose(first, block.last_attention)
    assert not first.requires_grad


@pytest.mark.parametrize("value_source", ["query", "key"])
def test_cross_attention_keep_grad_gives_attention_gradients(value_source):
    """``last_attention.grad`` is dL/dA of the weights actually used, and the parameters' gradients do not change."""
    torch.manual_seed(0)
    block = CrossAttentionFusion(8, num_heads=2, mlp_ratio=0, value_source=value_source)
    query, key = torch.randn(2, 3, 8, requires_grad=True), torch.randn(2, 3, 8)
    block(query, key).square().sum().backward()
    plain_grads = {n: p.grad.clone() for n, p in block.named_parameters()}
    assert block.last_attention.grad is None and not block.last_attention.requires_grad
    block.zero_grad()
    block.keep_attention_grad = True
    block(query, key).square().sum().backward()
    assert block.last_attention.grad is not None and block.last_attention.grad.shape == (2, 2, 3, 3)
    for name, p in block.named_parameters():
        torch.testing.assert_close(p.grad, plain_grads[name], msg=name)
    # reference: the formula written out with the weights as a leaf
    q_n, k_n = block.norm_query(query), block.norm_key(key)
    v_n = q_n if value_source == "query" else k_n
    w_v, b_v = block.attention.in_proj_weight.chunk(3)[2], block.attention.in_proj_bias.chunk(3)[2]
    weights = block.last_attention.detach().clone().requires_grad_(True)
    v = (v_n @ w_v.T + b_v).reshape(2, 3, 2, 4).transpose(1, 2)
    out = query + block.attention.out_proj((weights @ v).transpose(1, 2).reshape(2, 3, 8))
    out.square().sum().backward()
    torch.testing.assert_close(block.last_attention.grad, weights.grad)


def test_cross_attention_mlp_and_gradients():
    torch.manual_seed(0)
    block = CrossAttentionFusion(8, num_heads=2, mlp_ratio=2.0, value_source="key")
    assert block.mlp[0].out_features == 16
    block(torch.randn(2, 3, 8), torch.randn(2, 7, 8)).sum().backward()  # key may have other length
    missing = [n for n, p in block.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def test_cross_attention_clear_errors():
    with pytest.raises(ValueError, match="divid"):
        CrossAttentionFusion(10, num_heads=4)
    with pytest.raises(ValueError, match="value_source"):
        CrossAttentionFusion(8, value_source="segmented")
    block = CrossAttentionFusion(8, num_heads=2, value_source="query")
    with pytest.raises(ValueError, match="same number of tokens"):
        block(torch.randn(1, 3, 8), torch.randn(1, 4, 8))
    with pytest.raises(ValueError, match=r"\(B, tokens, 8\)"):
        block(torch.randn(1, 3, 6), torch.randn(1, 3, 8))
