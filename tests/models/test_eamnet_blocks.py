"""EAM-Net blocks: MRCF (Sec. II.C), CMAM (Sec. II.B), External Attention Bridge (Sec. II.D)."""

import pytest
import torch
import torch.nn as nn

from dermfuse_models.blocks.cmam import CrossMixAttention
from dermfuse_models.blocks.external_attention import ExternalAttentionBridge, double_normalize, topk_channel_mask
from dermfuse_models.blocks.mrcf import MultiResolutionChannelFusion

pytestmark = pytest.mark.usefixtures("single_thread")


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5) -> None:
    """``torch.allclose`` assertion (torch.testing.assert_close lazily imports torch.distributed.tensor: ~20 s)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert torch.allclose(actual, expected, atol=atol, rtol=1e-4), (actual - expected).abs().max()


# ------------------------------------------------------------------------------------- MRCF
def _positive_mrcf(channels: int = 8) -> MultiResolutionChannelFusion:
    """MRCF with positive weights in eval mode: every tap in a kernel passes gradient."""
    block = MultiResolutionChannelFusion(channels).eval()
    for module in block.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.constant_(module.weight, 0.1)
    return block


def test_mrcf_keeps_shape_and_rejects_indivisible_channels():
    block = MultiResolutionChannelFusion(16)
    x = torch.randn(2, 16, 20, 24)
    assert block(x).shape == x.shape
    assert [o.shape[1] for o in block.branch_outputs(x)] == [4, 4, 4, 4]
    with pytest.raises(ValueError, match="divisible by 4"):
        MultiResolutionChannelFusion(10)


@pytest.mark.parametrize("group", [0, 1, 2, 3])
def test_mrcf_each_group_has_its_own_receptive_field(group):
    block = _positive_mrcf(8)
    size, centre = 31, 15
    x = torch.rand(1, 8, size, size, requires_grad=True)
    out = block.branch_outputs(x)[group]
    out[0, :, centre, centre].sum().backward()
    grad = x.grad[0]
    own = grad[2 * group : 2 * group + 2].abs().sum(0)
    others = torch.cat([grad[: 2 * group], grad[2 * group + 2 :]]).abs().sum()
    assert others == 0  # groups are independent before fusion
    rows = torch.nonzero(own.sum(1)).flatten()
    extent = int(rows.max() - rows.min() + 1)
    expected = 1 if group == 0 else 2 * (3, 5, 7)[group - 1] + 1  # identity, then dilations 3/5/7
    assert extent == expected
    assert int((own > 0).sum()) == (1 if group == 0 else 9)  # a dilated 3x3 touches 9 pixels


def test_mrcf_fusion_mixes_all_groups_in_every_output_channel():
    block = _positive_mrcf(8)
    x = torch.rand(1, 8, 21, 21, requires_grad=True)
    block(x)[0, 0, 10, 10].backward()
    per_group = x.grad[0].abs().sum(dim=(1, 2)).view(4, 2).sum(1)
    assert (per_group > 0).all()


# ------------------------------------------------------------------------------------- CMAM
def test_cmam_queries_come_from_one_branch_and_keys_values_from_the_other():
    torch.manual_seed(0)
    block = CrossMixAttention(16, heads=4).eval()
    x = torch.randn(2, 16, 8, 8)
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    block.spatial_queries.register_forward_hook(lambda m, inp, out: seen.__setitem__("sa", inp))
    block.channel_queries.register_forward_hook(lambda m, inp, out: seen.__setitem__("ca", inp))
    y = block(x)
    x_s, x_c = block.spatial_gate(x), block.channel_gate(x)
    _assert_close(seen["sa"][0], x_s)  # SA: Q from X_s ...
    _assert_close(seen["sa"][1], x_c)  # ... K, V from X_c
    _assert_close(seen["ca"][0], x_c)  # CA: Q from X_c ...
    _assert_close(seen["ca"][1], x_s)  # ... K, V from X_s
    assert y.shape == x.shape
    sa, ca = block.mixed_terms(x)
    _assert_close(y, x + block.proj(sa + ca))


@pytest.mark.parametrize("direction", ["spatial_queries", "channel_queries"])
def test_cmam_both_directions_contribute(direction):
    torch.manual_seed(0)
    block = CrossMixAttention(16, heads=2).eval()
    nn.init.normal_(block.proj[0].weight)
    x = torch.randn(2, 16, 8, 8)
    before = block(x)
    nn.init.zeros_(getattr(block, direction).to_kv.weight)  # V = 0 silences this direction
    after = block(x)
    assert not torch.allclose(before, after, atol=1e-4)


def test_cmam_gradients_reach_both_cross_attentions_and_maps_are_softmax():
    torch.manual_seed(0)
    block = CrossMixAttention(8, heads=2)
    block(torch.randn(2, 8, 6, 6)).square().mean().backward()
    for name in ("spatial_queries", "channel_queries"):
        grads = [p.grad for p in getattr(block, name).parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads), name
    maps = block.attention_maps
    assert set(maps) == {"spatial_to_channel", "channel_to_spatial"}
    assert all(m.keys == "channels" for m in maps.values())
    weights = maps["spatial_to_channel"].weights
    assert weights.shape == (2, 2, 4, 4) and not weights.requires_grad
    _assert_close(maps["channel_to_spatial"].weights.sum(-1), torch.ones(2, 2, 4))


def test_cmam_parallel_and_serial_modes_have_no_cross_attention():
    cross = CrossMixAttention(16)
    for mode in ("parallel", "serial"):
        block = CrossMixAttention(16, mode=mode)
        assert not hasattr(block, "spatial_queries")
        assert sum(p.numel() for p in block.parameters()) < sum(p.numel() for p in cross.parameters())
        assert block(torch.randn(1, 16, 4, 4)).shape == (1, 16, 4, 4)
    with pytest.raises(ValueError, match="'cross'"):
        CrossMixAttention(16, mode="sum")


# ------------------------------------------------------------------------------------- EAB
def test_eab_memory_size_sets_memory_parameters():
    def count(k: int) -> int:
        return sum(p.numel() for p in ExternalAttentionBridge(32, memory_size=k).parameters())

    assert count(128) - count(16) == 2 * 32 * (128 - 16)  # M_k (C x k) and M_v (k x C)
    bridge = ExternalAttentionBridge(32, memory_size=64)
    assert bridge.memory_key.weight.shape[:2] == (64, 32)
    assert bridge.memory_value.weight.shape[:2] == (32, 64)


def test_double_normalisation_softmax_over_tokens_then_l1_over_memory():
    torch.manual_seed(0)
    scores = torch.randn(2, 5, 7)  # (B, k memory units, N tokens)
    attn = double_normalize(scores)
    _assert_close(attn.sum(dim=1), torch.ones(2, 7))  # L1 over memory units
    soft = scores.softmax(dim=-1)  # softmax over tokens: attn is soft rescaled per token
    _assert_close(attn * soft.sum(dim=1, keepdim=True), soft)

    bridge = ExternalAttentionBridge(8, memory_size=5)
    per_token = bridge.memory_attention(torch.randn(2, 8, 3, 4))
    assert per_token.shape == (2, 5, 12)
    _assert_close(per_token.sum(dim=1), torch.ones(2, 12))


def test_topk_mask_keeps_the_k_channels_of_largest_l1_norm():
    x = torch.zeros(2, 6, 3, 3)
    norms = torch.tensor([[5.0, 1.0, 4.0, 0.5, 3.0, 2.0], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
    x[:] = norms[:, :, None, None]
    x[0, 2] *= -1  # L1 norm ignores the sign
    mask = topk_channel_mask(x, 3).flatten(1)
    assert mask.tolist() == [[1, 0, 1, 0, 1, 0], [0, 0, 0, 1, 1, 1]]


def test_eab_passes_only_top_k_retrieved_channels():
    torch.manual_seed(0)
    bridge = ExternalAttentionBridge(16, memory_size=8, top_k=5).eval()
    nn.init.normal_(bridge.proj_out[0].weight)
    x = torch.randn(2, 16, 6, 6)
    retrieved = bridge.external_attention(x)
    mask = topk_channel_mask(retrieved, 5)
    assert mask.sum(dim=1).flatten().tolist() == [5, 5]
    _assert_close(bridge(x), torch.relu(x + retrieved * mask))
    full = ExternalAttentionBridge(16, memory_size=8, top_k=None).eval()
    full.load_state_dict(bridge.state_dict())
    assert not torch.allclose(full(x), bridge(x))
    with pytest.raises(ValueError, match="top_k"):
        ExternalAttentionBridge(16, top_k=17)
