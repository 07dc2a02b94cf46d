"""ViTAtt and MetadataTokenizer: shapes, token layout, gradients, metadata use, attention capture."""

import pytest
import torch

from dermfuse_models.blocks.metadata import MetadataTokenizer
from dermfuse_models.nets.vitatt import ViTAtt
from dermfuse_models.protocol import AttentionCapture, TokenLayout, UsesMetadata, call_net

TINY_VIT = "vit_tiny_patch16_224"
IMG = 32  # 2x2 patches of 16 px
GROUPS = [2, 3, 1]  # three clinical features, 6 encoded columns
N_PATCHES = (IMG // 16) ** 2


def _model(**kwargs) -> ViTAtt:
    kwargs.setdefault("meta_groups", GROUPS)
    return ViTAtt(num_classes=3, backbone=TINY_VIT, img_size=IMG, **kwargs)


@pytest.fixture(scope="module")
def model() -> ViTAtt:
    torch.manual_seed(0)
    return _model(meta_names=["age", "site", "itch"]).eval()


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 3, IMG, IMG, generator=g), torch.randn(3, sum(GROUPS), generator=g)


def test_logits_shape_and_token_layout(model, batch):
    image, meta = batch
    out = model(image, meta)
    assert set(out) == {"logits"}
    assert out["logits"].shape == (3, 3)
    layout = model.token_layout
    assert isinstance(layout, TokenLayout)
    assert layout.cls == 0
    assert layout.patches == slice(1, 1 + N_PATCHES)
    assert layout.grid == (IMG // 16, IMG // 16)
    assert layout.meta == slice(1 + N_PATCHES, 1 + N_PATCHES + len(GROUPS))
    assert model.meta_names == ["age", "site", "itch"]
    assert isinstance(model, AttentionCapture) and isinstance(model, UsesMetadata)
    assert model.input_size == IMG


def test_token_count_includes_one_token_per_feature(model, batch):
    image, meta = batch
    seen = []
    handle = model.vit.blocks[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    try:
        model(image, meta)
    finally:
        handle.remove()
    assert seen == [torch.Size([3, 1 + N_PATCHES + len(GROUPS), model.vit.embed_dim])]


def test_other_image_sizes_work_via_dynamic_pos_embed(model):
    out = model(torch.randn(2, 3, 64, 64), torch.randn(2, sum(GROUPS)))
    assert out["logits"].shape == (2, 3)
    assert model.token_layout.meta == slice(17, 20)
    assert model.token_layout.grid == (4, 4)


def test_gradients_reach_every_trainable_parameter(batch):
    torch.manual_seed(0)
    net = _model().train()
    image, meta = batch
    net(image, meta)["logits"].sum().backward()
    missing = [n for n, p in net.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert missing == []
    assert any(n.startswith("meta_tokenizer.") for n, _ in net.named_parameters())


def test_image_only_has_no_metadata_parameters_and_ignores_meta(batch):
    torch.manual_seed(0)
    image, meta = batch
    for net in (_model(use_metadata=False), _model(meta_groups=None)):
        net.eval()
        assert net.meta_tokenizer is None and net.num_meta_tokens == 0
        assert not any("meta" in n for n, _ in net.named_parameters())
        a = net(image, meta)["logits"]
        b = net(image, meta + 5.0)["logits"]
        c = net(image)["logits"]
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, c)
        assert net.token_layout.meta is None  # no metadata tokens
        assert net.token_layout.patches == slice(1, 1 + N_PATCHES) and net.meta_names == []


def test_metadata_changes_logits_when_used(model, batch):
    image, meta = batch
    a = model(image, meta)["logits"]
    b = model(image, meta + torch.randn_like(meta))["logits"]
    assert not torch.allclose(a, b, atol=1e-5)


def test_missing_meta_is_a_clear_error(model, batch):
    with pytest.raises(ValueError, match="meta=None"):
        model(batch[0])


def test_mask_is_ignored(model, batch):
    image, meta = batch
    mask = torch.ones(3, 1, IMG, IMG)
    torch.testing.assert_close(model(image, meta, mask)["logits"], model(image, meta)["logits"])


def test_call_net_refuses_images_of_another_size_than_img_size():
    """A ViTAtt built for 64 px and fed 32 px batches names both config keys (one source of truth)."""
    net = ViTAtt(num_classes=3, meta_groups=GROUPS, backbone=TINY_VIT, img_size=64).eval()
    assert net.input_size == 64
    batch = {"image": torch.randn(2, 3, 32, 32), "meta": torch.randn(2, sum(GROUPS))}
    with pytest.raises(ValueError, match=r"data\.image_size") as info:
        call_net(net, batch)
    assert "img_size" in str(info.value) and "64" in str(info.value) and "32" in str(info.value)
    assert call_net(net, {**batch, "image": torch.randn(2, 3, 64, 64)})["logits"].shape == (2, 3)


def test_attention_capture_maps_and_same_logits(batch):
    torch.manual_seed(0)
    net = _model().eval()
    image, meta = batch
    fused_before = [b.attn.fused_attn for b in net.vit.blocks]
    with torch.no_grad():
        ref = net(image, meta)["logits"]
        net.set_attention_capture(True)
        assert all(not b.attn.fused_attn for b in net.vit.blocks)
        captured = net(image, meta)["logits"]
        n_tokens = 1 + N_PATCHES + len(GROUPS)
        heads = net.vit.blocks[0].attn.num_heads
        assert len(net.attentions) == len(net.vit.blocks)
        for attn in net.attentions:
            assert attn.shape == (3, heads, n_tokens, n_tokens)
            torch.testing.assert_close(attn.sum(-1), torch.ones(3, heads, n_tokens))
        net(image, meta)  # maps are reset per forward, not accumulated
        assert len(net.attentions) == len(net.vit.blocks)
        net.set_attention_capture(False)
        after = net(image, meta)["logits"]
    torch.testing.assert_close(captured, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(after, ref)
    assert [b.attn.fused_attn for b in net.vit.blocks] == fused_before
    assert net.attentions == []


def test_attention_capture_keep_grad_gives_attention_gradients(batch):
    torch.manual_seed(0)
    net = _model().eval()
    net.set_attention_capture(True, keep_grad=True)
    net(*batch)["logits"][:, 0].sum().backward()
    assert all(a.grad is not None and a.grad.shape == a.shape for a in net.attentions)


def test_metadata_tokenizer_shape_and_layers():
    tok = MetadataTokenizer([2, 3, 1], dim=8)
    out = tok(torch.randn(4, 6))
    assert out.shape == (4, 3, 8)
    assert [p.in_features for p in tok.projections] == [2, 3, 1]
    assert all(isinstance(n, torch.nn.BatchNorm1d) for n in tok.norms)
    with pytest.raises(ValueError, match=r"\(B, 6\)"):
        tok(torch.randn(4, 5))


def test_metadata_tokenizer_tokens_depend_only_on_their_slice():
    torch.manual_seed(0)
    tok = MetadataTokenizer([2, 3, 1], dim=8)
    tok.train()
    tok(torch.randn(16, 6))  # populate BatchNorm running stats
    tok.eval()
    meta = torch.randn(4, 6)
    base = tok(meta)
    starts = [0, 2, 5]
    for i, (start, width) in enumerate(zip(starts, [2, 3, 1])):
        perturbed = meta.clone()
        perturbed[:, start : start + width] += 3.0
        out = tok(perturbed)
        changed = [(out[:, j] - base[:, j]).abs().max().item() > 1e-6 for j in range(3)]
        assert changed == [j == i for j in range(3)]


def test_metadata_tokenizer_feature_embedding_distinguishes_features():
    tok = MetadataTokenizer([1, 1], dim=4).eval()
    for proj in tok.projections:
        torch.nn.init.zeros_(proj.weight)
        torch.nn.init.zeros_(proj.bias)
    out = tok(torch.zeros(2, 2))
    assert not torch.allclose(out[:, 0], out[:, 1])


def test_mismatched_meta_names_rejected():
    with pytest.raises(ValueError, match="meta_names"):
        _model(meta_names=["only_one"])


def test_local_vit_weights_load_at_small_img_size(tmp_path):
    """A 224-px checkpoint loads into a 32-px ViTAtt (timm resamples the position embedding)."""
    import timm

    torch.manual_seed(0)
    source = timm.create_model(TINY_VIT, pretrained=False)
    path = tmp_path / "vit_tiny.pth"
    torch.save(source.state_dict(), path)
    net = _model(weights_path=str(path))
    torch.testing.assert_close(net.vit.blocks[-1].mlp.fc2.weight, source.blocks[-1].mlp.fc2.weight, rtol=0, atol=0)
    torch.testing.assert_close(net.vit.cls_token, source.cls_token, rtol=0, atol=0)
    assert net.vit.pos_embed.shape == (1, 1 + N_PATCHES, net.vit.embed_dim)


def test_metadata_tokenizer_relu_variant_is_one_affine_relu_per_feature():
    """``post="relu", feature_embedding=False`` (MammoXAttn, mammography paper Eq. 3 per feature): token f is
    ``ReLU(W_f x_f + b_f)`` of feature f's block, nothing else."""
    torch.manual_seed(0)
    tok = MetadataTokenizer([2, 3], dim=4, post="relu", feature_embedding=False)
    assert tok.norms is None and tok.feature_embed is None
    meta = torch.randn(5, 5)
    expected = torch.stack([torch.relu(p(x)) for p, x in zip(tok.projections, meta.split([2, 3], dim=1))], dim=1)
    torch.testing.assert_close(tok(meta), expected)
    assert sum(p.numel() for p in tok.parameters()) == (2 * 4 + 4) + (3 * 4 + 4)


def test_metadata_tokenizer_errors_name_the_net():
    tok = MetadataTokenizer([2, 3], dim=4, owner="SomeNet")
    with pytest.raises(ValueError, match="SomeNet was built with metadata .* meta=None"):
        tok(None)
    with pytest.raises(ValueError, match=r"SomeNet expected meta of shape \(B, 5\)"):
        tok(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="post"):
        MetadataTokenizer([2], dim=4, post="gelu")


# ----------------------------------------------------------------------------- fusion="late"
def _vit_output_tokens(net: ViTAtt, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = net.vit.norm.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    try:
        net(image, meta)
    finally:
        handle.remove()
    return seen[0]


def test_late_fusion_keeps_the_vit_image_only_and_fuses_in_one_block_after_it(batch):
    """tokens: metadata reaches every block; late: the ViT's tokens ignore the metadata, the fusion block does not."""
    image, meta = batch
    other = meta.flip(0)
    torch.manual_seed(0)
    late = _model(fusion="late").eval()
    torch.manual_seed(0)
    tokens = _model(fusion="tokens").eval()
    with torch.no_grad():
        assert torch.equal(_vit_output_tokens(late, image, meta), _vit_output_tokens(late, image, other))
        assert _vit_output_tokens(late, image, meta).shape[1] == 1 + N_PATCHES  # no metadata tokens in the ViT
        assert not torch.allclose(_vit_output_tokens(tokens, image, meta), _vit_output_tokens(tokens, image, other))
        assert not torch.allclose(late(image, meta)["logits"], late(image, other)["logits"])
    extra = {n for n, _ in late.named_parameters()} - {n for n, _ in tokens.named_parameters()}
    assert extra and all(n.startswith(("fusion_block.", "fusion_norm.")) for n in extra)
    assert late.token_layout.meta == slice(1 + N_PATCHES, 1 + N_PATCHES + len(GROUPS))
    assert late.token_cam_layers()["last_block"] is late.fusion_block.norm1
    assert tokens.token_cam_layers()["last_block"] is tokens.vit.blocks[-1].norm1
    # image only: no fusion block either way
    assert _model(fusion="late", use_metadata=False).fusion_block is None
    with pytest.raises(ValueError, match="fusion='early'"):
        _model(fusion="early")


def test_late_fusion_attention_capture_adds_the_fusion_block_and_gradients_flow(batch):
    image, meta = batch
    torch.manual_seed(0)
    net = _model(fusion="late").eval()
    net.set_attention_capture(True, keep_grad=True)
    try:
        logits = net(image, meta)["logits"]
        maps = list(net.attentions)
        logits[:, 0].sum().backward()
    finally:
        net.set_attention_capture(False)
    depth, t_image = len(net.vit.blocks), 1 + N_PATCHES
    assert len(maps) == depth + 1
    assert all(m.shape[-1] == t_image for m in maps[:depth]) and maps[-1].shape[-1] == t_image + len(GROUPS)
    assert all(m.grad is not None for m in maps)
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
