"""EAMNet (arXiv 2512.07275): size, shapes, gradients, ablation switches, deep supervision."""

import pytest
import torch

from dermfuse_models.blocks.cmam import CrossMixAttention
from dermfuse_models.blocks.external_attention import ExternalAttentionBridge
from dermfuse_models.blocks.mrcf import MultiResolutionChannelFusion
from dermfuse_models.nets.eamnet import EAMNet
from dermfuse_models.protocol import is_segmentation_net

PAPER_PARAMS = 4.6e6
SMALL = dict(base_channels=8, blocks_per_stage=1, memory_size=8, fusion_channels=4)


pytestmark = pytest.mark.usefixtures("single_thread")


def _params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _count(net: torch.nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in net.modules())


def _small(**overrides) -> EAMNet:
    torch.manual_seed(0)
    return EAMNet(**{**SMALL, **overrides})


def test_default_net_has_the_papers_parameter_count():
    n = _params(EAMNet())
    assert abs(n - PAPER_PARAMS) / PAPER_PARAMS < 0.10, n
    net = EAMNet()
    assert _count(net, MultiResolutionChannelFusion) == 4  # after each encoder stage
    assert _count(net, ExternalAttentionBridge) == 3  # on each skip
    assert _count(net, CrossMixAttention) == 3  # at each decoder fusion point


def test_default_net_forward_backward_at_64px_reaches_every_parameter():
    torch.manual_seed(0)
    net = EAMNet().train()
    out = net(torch.randn(2, 3, 64, 64))
    assert out["logits"].shape == (2, 1, 64, 64)
    shapes = [tuple(d.shape) for d in out["deep_logits"]]
    assert shapes == [(2, 1, 32, 32), (2, 1, 16, 16), (2, 1, 32, 32), (2, 1, 64, 64)]  # MSEF, decoder s4/s2/s1
    loss = out["logits"].square().mean() + sum(d.square().mean() for d in out["deep_logits"])
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    zero = [n for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() == 0]
    assert missing == [] and zero == []


def test_deep_logits_only_in_training_and_eval_is_deterministic():
    net = _small()
    x = torch.randn(2, 3, 32, 32)
    assert "deep_logits" in net.train()(x)
    net.eval()
    with torch.no_grad():
        first, second = net(x), net(x)
    assert set(first) == {"logits"}
    assert torch.equal(first["logits"], second["logits"])


def test_deep_supervision_off_builds_no_supervision_heads():
    on, off = _small(), _small(deep_supervision=False)
    assert off.msef is None and off.side_heads is None
    assert _params(off) < _params(on)
    out = off.train()(torch.randn(1, 3, 32, 32))
    assert set(out) == {"logits"} and out["logits"].shape == (1, 1, 32, 32)


@pytest.mark.parametrize(
    ("switch", "module_type"),
    [("use_mrcf", MultiResolutionChannelFusion), ("use_cmam", CrossMixAttention), ("use_eab", ExternalAttentionBridge)],
)
def test_each_module_switch_removes_its_module_and_changes_the_output(switch, module_type):
    on, off = _small(), _small(**{switch: False})
    assert _count(on, module_type) > 0 and _count(off, module_type) == 0
    assert _params(on) != _params(off)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(on.eval()(x)["logits"], off.eval()(x)["logits"])
    if switch != "use_mrcf":  # off = identity skip / plain fusion: the rest of the net is unchanged
        assert set(off.state_dict()) < set(on.state_dict())
        off.load_state_dict({k: v for k, v in on.state_dict().items() if k in off.state_dict()})
        with torch.no_grad():
            assert not torch.allclose(on(x)["logits"], off.eval()(x)["logits"])


def test_memory_size_changes_the_output():
    """k memory units all take part: a k = 32 memory that repeats the k = 16 memory unit by unit
    reproduces the k = 16 output exactly (double normalisation splits each token's weight over the
    copies), and replacing the second copy with other units changes the output."""
    x = torch.randn(2, 3, 32, 32)
    k16, k32 = _small(memory_size=16).eval(), _small(memory_size=32).eval()
    state = k16.state_dict()
    memories = {k for k in k32.state_dict() if ".memory_" in k}
    assert len(memories) == 2 * 3  # M_k and M_v of each of the three bridges
    result = k32.load_state_dict({k: v for k, v in state.items() if k not in memories}, strict=False)
    assert set(result.missing_keys) == memories and result.unexpected_keys == []
    with torch.no_grad():
        for small, large in zip(k16.bridges, k32.bridges, strict=True):
            large.memory_key.weight.copy_(torch.cat([small.memory_key.weight] * 2, dim=0))  # (k, C, 1)
            large.memory_value.weight.copy_(torch.cat([small.memory_value.weight] * 2, dim=1))  # (C, k, 1)
        reference = k16(x)["logits"]
        torch.testing.assert_close(k32(x)["logits"], reference, atol=1e-5, rtol=1e-5)
        for bridge in k32.bridges:  # 16 new units next to the original 16
            torch.nn.init.normal_(bridge.memory_key.weight[16:], std=0.5)
            torch.nn.init.normal_(bridge.memory_value.weight[:, 16:], std=0.5)
        assert (k32(x)["logits"] - reference).abs().max() > 1e-3


def test_cmam_mode_changes_the_output_with_shared_weights():
    """cross / parallel / serial share gates and projection weights; only the mixing differs."""
    x = torch.randn(2, 3, 32, 32)
    nets = {mode: _small(cmam_mode=mode).eval() for mode in ("cross", "parallel", "serial")}
    cross_state = nets["cross"].state_dict()
    assert set(nets["parallel"].state_dict()) == set(nets["serial"].state_dict()) < set(cross_state)
    extra = set(cross_state) - set(nets["parallel"].state_dict())
    assert extra and all(".spatial_queries." in k or ".channel_queries." in k for k in extra)
    for mode in ("parallel", "serial"):
        nets[mode].load_state_dict({k: v for k, v in cross_state.items() if k not in extra})
    with torch.no_grad():
        logits = {mode: net(x)["logits"] for mode, net in nets.items()}
    for a, b in (("cross", "parallel"), ("cross", "serial"), ("parallel", "serial")):
        assert (logits[a] - logits[b]).abs().max() > 1e-4, (a, b)


def test_memory_size_changes_the_bridge_parameters():
    sizes = {k: _params(_small(memory_size=k)) for k in (16, 32, 64, 128)}
    skip_widths = 8 + 16 + 32
    assert sizes[128] - sizes[16] == 2 * skip_widths * (128 - 16)
    assert sizes[16] < sizes[32] < sizes[64] < sizes[128]


def test_top_k_changes_the_output_not_the_parameters():
    net, kept_all = _small(top_k=0.25), _small(top_k=None)
    kept_all.load_state_dict(net.state_dict())
    assert [b.top_k for b in net.bridges] == [2, 4, 8]
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(net.eval()(x)["logits"], kept_all.eval()(x)["logits"])
    with pytest.raises(ValueError, match="top_k"):
        _small(top_k=1.5)


def test_cmam_mode_switch_and_attention_maps():
    cross, parallel = _small(), _small(cmam_mode="parallel")
    assert _params(parallel) < _params(cross)
    cross.eval()(torch.randn(2, 3, 32, 32))
    directions = ("spatial_to_channel", "channel_to_spatial")
    assert set(cross.attention_maps) == {f"decoder{i}/{d}" for i in range(3) for d in directions}
    assert cross.attention_maps["decoder0/spatial_to_channel"].weights.shape == (2, 4, 8, 8)  # 32 ch, 4 heads
    assert {m.keys for m in cross.attention_maps.values()} == {"channels"}  # channel tokens, never a heatmap
    assert is_segmentation_net(cross) and cross.output_kind == "mask_logits"
    parallel.eval()(torch.randn(1, 3, 32, 32))
    assert parallel.attention_maps == {}
    with pytest.raises(ValueError, match="cmam_mode"):
        _small(cmam_mode="sum")


def test_clear_errors_for_bad_sizes_and_widths():
    with pytest.raises(ValueError, match="divisible by 8"):
        _small()(torch.randn(1, 3, 36, 36))
    with pytest.raises(ValueError, match="base_channels"):
        EAMNet(base_channels=30)
    with pytest.raises(ValueError, match="blocks_per_stage"):
        EAMNet(blocks_per_stage=(2, 2))


def test_default_net_flops_at_224_match_the_paper_counted_as_macs():
    """Paper Table I: 16.85 G "FLOPs". FlopCounterMode on the meta device (as ``profile`` does),
    batch 1 at 224 x 224: 15.85 GMACs, within 10 % of the paper read as multiply-adds
    (true FLOPs, 2 x MACs, would be 31.7 G and match no input size; see the README)."""
    from dermfuse_models.runner.profile import count_flops, select

    with torch.device("meta"):
        flops = count_flops(EAMNet(), {"image": torch.empty(1, 3, 224, 224)})
    gmacs = flops / 2e9
    assert abs(gmacs - 16.85) / 16.85 < 0.10, gmacs
    assert gmacs == pytest.approx(15.85, abs=0.01)  # the figure experiments/eamnet/README.md states
    spec = select(["eamnet"])[0]  # profile builds the net from the paper's config, compared at 224 px
    assert spec.input_size == 224 and spec.paper_gflops == 16.85


def test_channels_last_input_trains_without_crashing_the_process():
    """A permuted HWC batch (channels-last strides) used to corrupt the heap in the CPU backward.

    Run in a subprocess: the failure this guards against kills the interpreter, not just the test.
    """
    import subprocess
    import sys

    code = (
        "import torch\nfrom dermfuse_models.nets.eamnet import EAMNet\ntorch.manual_seed(0)\n"
        "net = EAMNet(base_channels=8, blocks_per_stage=1)\n"
        "x = torch.randn(4, 64, 64, 3).permute(0, 3, 1, 2)\n"
        "assert x.is_contiguous(memory_format=torch.channels_last)\n"
        "out = net(x)\nout['logits'].sum().backward()\n"
        "ref = EAMNet(base_channels=8, blocks_per_stage=1)\nref.load_state_dict(net.state_dict())\n"
        "assert torch.allclose(ref(x.contiguous())['logits'], out['logits'], atol=1e-5)\nprint('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
