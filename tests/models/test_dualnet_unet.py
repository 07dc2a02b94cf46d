"""DeepUNet (DualNet stage 1) and predict_masks: shapes, gradients, switches, paper encoder."""

import pytest
import timm
import torch
import torch.nn as nn
from monai.networks.blocks import SimpleASPP

from dermfuse_models.blocks.attention_gates import DepthwiseAttentionGate
from dermfuse_models.nets.dualnet_unet import DeepUNet, predict_masks
from dermfuse_models.protocol import ImageOnlyNet, SegGradCamLayers, is_segmentation_net

TINY = "test_efficientnet"  # timm's 82k-parameter EfficientNet: same 5-stage layout as B3
DECODER = (32, 16, 16, 8)
IMG = 64


def _net(**kwargs) -> DeepUNet:
    torch.manual_seed(0)
    kwargs.setdefault("encoder", TINY)
    kwargs.setdefault("decoder_channels", DECODER)
    return DeepUNet(**kwargs)


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def net() -> DeepUNet:
    return _net().eval()


def test_logits_at_input_size(net, image):
    out = net(image)
    assert set(out) == {"logits"}
    assert out["logits"].shape == (2, 1, IMG, IMG)
    odd = net(torch.randn(1, 3, 72, 56))["logits"]  # not a multiple of 32
    assert odd.shape == (1, 1, 72, 56)


def test_deep_supervision_and_gradients_reach_every_parameter(image):
    net = _net(deep_supervision=True).train()
    out = net(image)
    assert [d.shape for d in out["deep_logits"]] == [(2, 1, IMG, IMG)] * (len(DECODER) - 1)
    loss = out["logits"].mean() + sum(d.mean() for d in out["deep_logits"])
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert missing == []
    with torch.no_grad():
        assert set(net.eval()(image[:1])) == {"logits"}  # deep outputs are for the training loss only


def test_architecture_wiring(net):
    channels = net.encoder_channels  # test_efficientnet: 16/24/32/48/64 at strides 2..32
    assert len(net.gates) == 4 and all(isinstance(g, DepthwiseAttentionGate) for g in net.gates)
    assert [g.theta_x.depthwise.in_channels for g in net.gates] == channels[-2::-1]
    assert isinstance(net.bottleneck.block, SimpleASPP)
    assert net.bottleneck.block.convs[0].in_channels == channels[-1]
    assert [b.convs[-1].conv.out_channels for b in net.decoder] == list(DECODER)


def test_attention_gates_are_used(net, image):
    """Zeroing one gate's output projection (alpha -> 0.5) changes the decoder output."""
    with torch.no_grad():
        before = net(image)["logits"]
        gate = net.gates[-1]
        saved = gate.psi.weight.clone(), gate.psi.bias.clone()
        try:
            nn.init.zeros_(gate.psi.weight)
            nn.init.zeros_(gate.psi.bias)
            after = net(image)["logits"]
            torch.testing.assert_close(gate.last_coefficients, torch.full_like(gate.last_coefficients, 0.5))
        finally:
            gate.psi.weight.copy_(saved[0])
            gate.psi.bias.copy_(saved[1])
    assert (after - before).abs().max() > 1e-6


def test_attention_gates_off_gives_plain_skips(image):
    plain = _net(attention_gates=False).eval()
    assert plain.gates == [] and not any(isinstance(m, DepthwiseAttentionGate) for m in plain.modules())
    gated = _net()
    assert sum(p.numel() for p in plain.parameters()) < sum(p.numel() for p in gated.parameters())
    assert plain(image)["logits"].shape == (2, 1, IMG, IMG)


def test_aspp_off_replaces_the_pyramid_only():
    plain = _net(aspp=False)
    assert not any(isinstance(m, SimpleASPP) for m in plain.modules())
    assert plain.bottleneck.out_channels == _net().bottleneck.out_channels
    assert [d.dilation[0] for d in _net(aspp_rates=(2, 3)).bottleneck.block.convs] == [1, 2, 3]


def test_eval_mode_is_deterministic(net, image):
    with torch.no_grad():
        torch.testing.assert_close(net(image)["logits"], net(image)["logits"], rtol=0, atol=0)


def test_a_segmentation_net_under_the_protocol_ignores_meta_and_mask(net, image):
    assert is_segmentation_net(net) and isinstance(net, SegGradCamLayers)
    with torch.no_grad():
        plain = net(image)["logits"]
        other = net(image, meta=torch.randn(2, 4), mask=torch.ones(2, 1, IMG, IMG))["logits"]
    torch.testing.assert_close(plain, other, rtol=0, atol=0)


def test_encoder_stage_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="feature stages"):
        _net(encoder="test_convnext")  # 4 stages


def test_paper_encoder_efficientnet_b3_builds_with_timm_channels():
    """EfficientNet-B3 features_only: 24/32/48/136/384 at strides 2..32 (STACK_NOTES: 48/136/384 at 8/16/32)."""
    torch.manual_seed(0)
    net = DeepUNet()  # config defaults, not run at full size
    assert net.encoder_channels == [24, 32, 48, 136, 384]
    assert net.encoder.feature_info.reduction() == [2, 4, 8, 16, 32]
    reference = timm.create_model("efficientnet_b3", features_only=True, out_indices=(2, 3, 4))
    assert reference.feature_info.channels() == [48, 136, 384]
    own = timm.create_model("efficientnet_b3", features_only=True)
    assert sum(p.numel() for p in net.encoder.parameters()) == sum(p.numel() for p in own.parameters())
    assert [g.theta_x.depthwise.in_channels for g in net.gates] == [136, 48, 32, 24]
    assert [c.dilation[0] for c in net.bottleneck.block.convs] == [1, 1, 2, 3]  # 1x1 + rates (1, 2, 3)
    assert net.bottleneck.out_channels == 256


# ----------------------------------------------------------------------------- predict_masks
class _DropoutSegmenter(nn.Module):
    """1x1 conv at half resolution behind heavy dropout: random in train mode, fixed in eval."""

    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.9)
        self.conv = nn.Conv2d(3, 1, 1)

    def forward(self, image, meta=None, mask=None):
        return {"logits": self.conv(self.drop(image[:, :, ::2, ::2]))}


def test_predict_masks_thresholds_in_eval_mode_at_input_size():
    torch.manual_seed(0)
    seg = _DropoutSegmenter().train()
    images = torch.randn(3, 3, 16, 16)
    masks = predict_masks(seg, images)
    assert seg.training  # previous mode restored
    assert masks.shape == (3, 1, 16, 16) and masks.dtype == torch.float32
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    with torch.no_grad():
        logits = seg.eval().conv(images[:, :, ::2, ::2])
        expected = (torch.sigmoid(nn.functional.interpolate(logits, size=(16, 16), mode="bilinear")) > 0.5).float()
    torch.testing.assert_close(masks, expected)
    assert not masks.requires_grad


def test_predict_masks_threshold_chunks_and_image_only_net():
    torch.manual_seed(0)
    bare = nn.Conv2d(3, 1, 3, padding=1)  # returns a bare tensor: not a protocol net
    images = torch.randn(5, 3, 8, 8)
    with pytest.raises(TypeError, match="ImageOnlyNet"):
        predict_masks(bare, images)
    conv = ImageOnlyNet(bare)
    low, high = predict_masks(conv, images, threshold=0.2), predict_masks(conv, images, threshold=0.8)
    assert bool((high <= low).all()) and low.sum() > high.sum()
    torch.testing.assert_close(predict_masks(conv, images, batch_size=2), predict_masks(conv, images))
    assert predict_masks(conv, images[:0]).shape == (0, 1, 8, 8)


def test_predict_masks_with_deep_unet(net, image):
    masks = predict_masks(net, image)
    with torch.no_grad():
        expected = (net(image)["logits"].sigmoid() > 0.5).float()
    torch.testing.assert_close(masks, expected)


def test_predict_masks_clear_errors():
    conv = ImageOnlyNet(nn.Conv2d(3, 2, 1))
    with pytest.raises(ValueError, match="threshold"):
        predict_masks(conv, torch.randn(1, 3, 4, 4), threshold=1.5)
    with pytest.raises(ValueError, match="one-channel"):
        predict_masks(conv, torch.randn(1, 3, 4, 4))


# ----------------------------------------------------------------------------- local weights file
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_path_loads_the_encoder_from_a_local_file(tmp_path, suffix):
    """A classification state dict saved from timm loads into the ``features_only`` encoder.

    The file holds the whole classifier (head included, as downloaded checkpoints do); every
    encoder tensor must equal the file's, and a net built from the same seed without the file
    differs, so the equality can only come from loading.
    """
    torch.manual_seed(0)
    source = timm.create_model(TINY, pretrained=False)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    path = tmp_path / f"{TINY}{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    torch.manual_seed(1)  # another seed than the file's
    loaded = DeepUNet(encoder=TINY, decoder_channels=DECODER, weights_path=str(path))
    torch.manual_seed(1)
    random = DeepUNet(encoder=TINY, decoder_channels=DECODER)

    encoder_state = loaded.encoder.state_dict()
    assert set(encoder_state) < set(state)  # the head (conv_head, bn2, classifier) is not in the encoder
    for key, value in encoder_state.items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=key)
    assert not torch.equal(random.encoder.conv_stem.weight, state["conv_stem.weight"])
    with pytest.raises(FileNotFoundError, match="weights_path"):
        DeepUNet(encoder=TINY, decoder_channels=DECODER, weights_path=str(tmp_path / "missing.pth"))
