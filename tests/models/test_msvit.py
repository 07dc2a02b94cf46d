"""MSViT (arXiv 2502.06243): multi-scale attention, attention regulariser, switches, capture API."""

import pytest
import timm
import torch
import torch.nn.functional as F

from dermfuse_models.blocks.multiscale_attention import MultiScaleSelfAttention, scale_windows
from dermfuse_models.nets.msvit import MSViT, attention_outside_mask_loss, resolve_backbone
from dermfuse_models.protocol import AttentionCapture, TokenLayout, UsesMetadata, uses_metadata

TINY = "vit_tiny_patch16_224"
SIZE = 64  # 4 x 4 patch grid with patch 16


def _tiny(**kwargs) -> MSViT:
    torch.manual_seed(0)
    kwargs.setdefault("backbone", TINY)
    kwargs.setdefault("img_size", SIZE)
    return MSViT(num_classes=3, **kwargs)


def _centre_mask(batch: int = 2, size: int = SIZE) -> torch.Tensor:
    mask = torch.zeros(batch, 1, size, size)
    mask[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1.0
    return mask


@pytest.fixture(scope="module")
def net() -> MSViT:
    return _tiny()


# ----------------------------------------------------------------------------- the block
def test_scale_windows_pool_like_avg_pool_and_clip_borders():
    windows, counts = scale_windows((4, 4), 2)
    assert windows.tolist() == [0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3]
    assert counts.tolist() == [4, 4, 4, 4]
    attn = MultiScaleSelfAttention(dim=8, num_heads=2, scales=(1, 2))
    tokens = torch.randn(3, 2, 1 + 16, 4)  # (B, heads, [CLS] + 4x4 patches, head_dim)
    pooled = attn._pool(tokens, windows, counts)
    grid = tokens[:, :, 1:].reshape(6, 4, 4, 4).permute(0, 3, 1, 2)
    expected = F.avg_pool2d(grid, 2).flatten(2).transpose(1, 2).reshape(3, 2, 4, 4)
    torch.testing.assert_close(pooled[:, :, 1:], expected)
    torch.testing.assert_close(pooled[:, :, :1], tokens[:, :, :1])  # [CLS] is never pooled
    _, counts_5x3 = scale_windows((5, 3), 2)  # border windows hold fewer patches
    assert counts_5x3.tolist() == [4, 2, 4, 2, 2, 1] and counts_5x3.sum() == 15


def test_block_fused_and_explicit_paths_agree_on_a_non_divisible_grid():
    torch.manual_seed(0)
    attn = MultiScaleSelfAttention(dim=16, num_heads=2, scales=(1, 2, 4)).eval()
    with torch.no_grad():
        attn.scale_logits.copy_(torch.tensor([0.3, -0.2, 0.5]))
    attn.grid_size = (5, 3)
    x = torch.randn(2, 1 + 15, 16)
    attn.fused_attn = True
    fused = attn(x)
    attn.fused_attn = False
    attn.keep_attention = True
    explicit = attn(x)
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)
    a_eff = attn.last_attention
    assert a_eff.shape == (2, 2, 16, 16)
    torch.testing.assert_close(a_eff.sum(-1), torch.ones(2, 2, 16))  # a distribution over tokens


def test_single_scale_reproduces_the_timm_vit_exactly():
    plain = _tiny(scales=(1,)).eval()
    ref = timm.create_model(TINY, num_classes=0, img_size=SIZE, dynamic_img_size=True).eval()
    state = {k: v for k, v in plain.vit.state_dict().items() if "scale_logits" not in k}
    ref.load_state_dict(state, strict=True)  # same parameter names as timm's
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(plain.forward_tokens(x), ref.forward_features(x))


# ----------------------------------------------------------------------------- the net
def test_forward_backward_shapes_and_every_parameter_gets_a_gradient(net):
    net.train()
    out = net(torch.randn(2, 3, SIZE, SIZE), mask=_centre_mask())
    assert out["logits"].shape == (2, 3)
    assert set(out["aux_losses"]) == {"attn_reg"} and out["aux_losses"]["attn_reg"].ndim == 0
    net.zero_grad()
    loss = F.cross_entropy(out["logits"], torch.tensor([0, 2])) + out["aux_losses"]["attn_reg"]
    loss.backward()
    trainable = [(name, p) for name, p in net.named_parameters() if p.requires_grad]
    assert len(trainable) == len(list(net.parameters()))  # nothing is frozen by default
    no_grad = [name for name, p in trainable if p.grad is None or not torch.isfinite(p.grad).all()]
    zero_grad = [name for name, p in trainable if p.grad is not None and p.grad.abs().sum() == 0]
    assert no_grad == [] and zero_grad == []
    assert all(attn.scale_logits.grad.abs().sum() > 0 for attn in net.attention_blocks)
    net.zero_grad()


def test_eval_is_deterministic_and_other_sizes_work(net):
    net.eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(net(x)["logits"], net(x)["logits"])
        assert net(torch.randn(1, 3, 80, 48))["logits"].shape == (1, 3)  # 5 x 3 grid
    assert net.token_layout.grid == (5, 3) and net.token_layout.patches == slice(1, 16)


def test_regulariser_is_low_inside_the_mask_high_outside_and_zero_without_lesion():
    grid = (4, 4)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :4] = 1.0  # lesion = top-left 2 x 2 patches
    inside = torch.zeros(1, 16)
    inside[0, [0, 1, 4, 5]] = 0.2  # attention only on lesion patches (unnormalised is fine)
    outside = torch.zeros(1, 16)
    outside[0, [10, 11, 14, 15]] = 0.2
    uniform = torch.full((1, 16), 1 / 16)
    loss_in = attention_outside_mask_loss(inside, mask, grid)
    loss_out = attention_outside_mask_loss(outside, mask, grid)
    loss_uniform = attention_outside_mask_loss(uniform, mask, grid)
    assert loss_in.item() == pytest.approx(0.0, abs=1e-6)
    assert loss_out.item() == pytest.approx(1.0)
    assert loss_uniform.item() == pytest.approx(12 / 16)
    empty = torch.zeros(1, 1, 8, 8)
    assert attention_outside_mask_loss(outside, empty, grid).item() == 0.0
    batch = attention_outside_mask_loss(torch.cat([outside, outside]), torch.cat([mask, empty]), grid)
    assert batch.item() == pytest.approx(0.5)  # empty-mask sample counts as 0 in the batch mean
    partial = torch.zeros(1, 1, 8, 8)
    partial[..., :1, :1] = 1.0  # covers a quarter of patch 0 (2 x 2 px): area interpolation gives 0.25
    only_patch0 = torch.zeros(1, 16)
    only_patch0[0, 0] = 1.0
    assert attention_outside_mask_loss(only_patch0, partial, grid).item() == pytest.approx(0.75)


def test_net_regulariser_follows_where_the_class_token_attends(net):
    """Hook the last block's attention: all class-token mass inside vs outside the mask."""
    net.eval()
    x = torch.randn(1, 3, SIZE, SIZE)
    mask = torch.zeros(1, 1, SIZE, SIZE)
    mask[..., : SIZE // 2, : SIZE // 2] = 1.0  # patches 0, 1, 4, 5 of the 4 x 4 grid
    last = net.attention_blocks[-1]

    def run_with_cls_attention_on(patches: list[int]) -> float:
        def force(module, inputs, output):
            attn = module.last_attention.clone()
            attn[:, :, 0] = 0.0
            attn[:, :, 0, [1 + p for p in patches]] = 1.0 / len(patches)
            module.last_attention = attn

        handle = last.register_forward_hook(force)
        try:
            return net(x, mask=mask)["aux_losses"]["attn_reg"].item()
        finally:
            handle.remove()

    inside = run_with_cls_attention_on([0, 1, 4, 5])
    outside = run_with_cls_attention_on([10, 11, 14, 15])
    assert inside == pytest.approx(0.0, abs=1e-7)
    assert outside == pytest.approx(net.attn_reg_weight)
    assert inside < outside


def test_aux_loss_absent_without_mask_or_with_zero_weight(net):
    x = torch.randn(2, 3, SIZE, SIZE)
    assert "aux_losses" not in net(x)
    off = _tiny(attn_reg_weight=0.0)
    assert "aux_losses" not in off(x, mask=_centre_mask())
    with pytest.raises(ValueError, match="attn_reg_weight"):
        _tiny(attn_reg_weight=-1.0)


def test_attn_reg_gradient_reaches_the_attention_parameters():
    model = _tiny(attn_reg_weight=1.0).train()
    aux = model(torch.randn(2, 3, SIZE, SIZE), mask=_centre_mask())["aux_losses"]["attn_reg"]
    aux.backward()
    last = model.attention_blocks[-1]
    assert last.qkv.weight.grad.abs().sum() > 0
    assert last.scale_logits.grad.abs().sum() > 0
    assert model.head.weight.grad is None  # the regulariser does not touch the classifier
    # the last block's value/output projections do not shape its attention map
    assert last.proj.weight.grad is None


def test_attn_reg_layers_choose_which_blocks_are_regularised():
    """``"last"``, ``"all"`` and index lists penalise the class-token attention of those blocks only.

    Same weights in every variant (the switch has no parameters): the aux loss must equal the
    outside-mask share of the class token's patch attention, averaged over heads and over the
    chosen blocks, read independently from the attention capture API.
    """
    x, mask = torch.randn(2, 3, SIZE, SIZE), _centre_mask()
    reference = _tiny(attn_reg_weight=1.0).eval()
    reference.set_attention_capture(True)
    with torch.no_grad():
        reference(x)
    cls_rows = [a[:, :, 0, 1:].mean(dim=1) for a in reference.attentions]  # (B, 16) per block
    reference.set_attention_capture(False)

    def expected(blocks: list[int]) -> float:
        mean_row = torch.stack([cls_rows[i] for i in blocks]).mean(dim=0)
        return attention_outside_mask_loss(mean_row, mask, (4, 4)).item()

    losses = {}
    for layers, blocks in (("last", [11]), ("all", list(range(12))), ([0, 5], [0, 5])):
        model = _tiny(attn_reg_weight=1.0, attn_reg_layers=layers).eval()
        model.load_state_dict(reference.state_dict())
        with torch.no_grad():
            losses[str(layers)] = model(x, mask=mask)["aux_losses"]["attn_reg"].item()
        assert losses[str(layers)] == pytest.approx(expected(blocks), abs=1e-5), layers
    assert abs(losses["last"] - losses["all"]) > 1e-4  # near-uniform random attention: small but real

    # constructed case: the last block attends inside the lesion, every other block outside it
    mask = torch.zeros(1, 1, SIZE, SIZE)
    mask[..., : SIZE // 2, : SIZE // 2] = 1.0  # patches 0, 1, 4, 5 of the 4 x 4 grid

    def force(index: int):
        patches = [0, 1, 4, 5] if index == 11 else [10, 11, 14, 15]

        def hook(module, inputs, output):
            if module.last_attention is not None:
                attn = module.last_attention.clone()
                attn[:, :, 0] = 0.0
                attn[:, :, 0, [1 + p for p in patches]] = 0.25
                module.last_attention = attn

        return hook

    constructed = {}
    for layers in ("last", "all", [0, 5]):
        model = _tiny(attn_reg_weight=1.0, attn_reg_layers=layers).eval()
        handles = [attn.register_forward_hook(force(i)) for i, attn in enumerate(model.attention_blocks)]
        with torch.no_grad():
            constructed[str(layers)] = model(x[:1], mask=mask)["aux_losses"]["attn_reg"].item()
        for handle in handles:
            handle.remove()
    assert constructed["last"] == pytest.approx(0.0, abs=1e-6)
    assert constructed["all"] == pytest.approx(11 / 12, abs=1e-6)
    assert constructed["[0, 5]"] == pytest.approx(1.0, abs=1e-6)

    assert _tiny(attn_reg_layers="all").attn_reg_layers == tuple(range(12))
    assert _tiny(attn_reg_layers=[0, -1]).attn_reg_layers == (0, 11)
    with pytest.raises(ValueError, match="attn_reg_layers"):
        _tiny(attn_reg_layers="first")
    with pytest.raises(ValueError, match="attn_reg_layers"):
        _tiny(attn_reg_layers=[12])


def test_scales_switch_changes_the_computation_not_the_weights(net):
    single = _tiny(scales=(1,)).eval()
    net.eval()
    single.load_state_dict({k: v for k, v in net.state_dict().items() if "scale_logits" not in k}, strict=False)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert not torch.allclose(single(x)["logits"], net(x)["logits"], atol=1e-4)
    n_multi = sum(p.numel() for p in net.parameters())
    assert n_multi - sum(p.numel() for p in single.parameters()) == 12 * 2  # two extra scale logits per block
    assert net.attention_blocks[0].scales == (1, 2, 4) and single.attention_blocks[0].scales == (1,)


def test_patch_size_switch_picks_the_timm_variant_or_passes_patch_size():
    assert resolve_backbone("vit_base_patch16_224", 32) == ("vit_base_patch32_224", {})
    assert resolve_backbone("vit_base_patch16_224", 16) == ("vit_base_patch16_224", {})
    assert resolve_backbone("vit_tiny_patch16_224", 32) == ("vit_tiny_patch16_224", {"patch_size": 32})
    coarse = _tiny(patch_size=32)
    with torch.no_grad():
        coarse(torch.randn(1, 3, SIZE, SIZE))
    assert coarse.token_layout.grid == (2, 2) and coarse.vit.patch_embed.patch_size == (32, 32)


def test_attention_capture_api_matches_vitatt(net):
    net.eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        plain = net(x)["logits"]
    fused_before = [a.fused_attn for a in net.attention_blocks]
    net.set_attention_capture(True)
    with torch.no_grad():
        captured = net(x)["logits"]
    torch.testing.assert_close(plain, captured, atol=1e-5, rtol=1e-5)
    assert len(net.attentions) == 12
    n_tokens = 1 + 16
    assert net.attentions[-1].shape == (2, 3, n_tokens, n_tokens)
    torch.testing.assert_close(net.attentions[-1].sum(-1), torch.ones(2, 3, n_tokens))
    assert net.token_layout == TokenLayout(cls=0, patches=slice(1, n_tokens), grid=(4, 4), meta=None)
    assert isinstance(net, AttentionCapture) and net.input_size == SIZE
    assert not isinstance(net, UsesMetadata) and not uses_metadata(net)  # image-only paper
    net.set_attention_capture(True, keep_grad=True)
    net(x)["logits"][:, 0].sum().backward()
    assert net.attentions[-1].grad is not None
    net.set_attention_capture(False)
    assert [a.fused_attn for a in net.attention_blocks] == fused_before and net.attentions == []
    net.zero_grad()


def test_paper_backbone_builds_with_timm_parameter_count():
    with torch.device("meta"):
        paper = MSViT(num_classes=3)  # ViT-B/16 at 224, scales (1, 2, 4)
        timm_vit = timm.create_model("vit_base_patch16_224", num_classes=0)
    timm_params = sum(p.numel() for p in timm_vit.parameters())
    assert timm_params == 85_798_656
    extra = 12 * 3 + (768 * 3 + 3)  # scale logits + linear head
    assert sum(p.numel() for p in paper.parameters()) == timm_params + extra
    assert paper.attn_reg_layers == (11,) and paper.attn_reg_weight == 0.1


def test_paper_size_cost_on_the_meta_device():
    """Shape-only forward at 224 px: multi-scale attention costs ~1.4 % more MACs than ViT-B/16."""
    from dermfuse_models.runner.profile import count_flops

    with torch.device("meta"):
        image = {"image": torch.empty(1, 3, 224, 224)}
        multi = count_flops(MSViT(num_classes=3), image)
        plain = count_flops(MSViT(num_classes=3, scales=(1,)), image)
    assert plain / 2e9 == pytest.approx(17.56, abs=0.01)  # timm's ViT-B/16: 17.6 GMACs
    assert 1.0 < multi / plain < 1.02
