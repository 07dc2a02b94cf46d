"""DualNetClassifier (DualNet stage 2): shapes, gradients, cross-attention wiring, switches, DenseNet201."""

import pytest
import timm
import torch

from dermfuse_models.blocks.cross_attention import CrossAttentionFusion
from dermfuse_models.nets.dualnet_classifier import DualNetClassifier, _crop_to_mask
from dermfuse_models.protocol import AttentionMap, AttentionMaps, GradCamLayers, UsesMetadata
from dermfuse_models.tasks.classification import ClassificationTask

# A DenseNet with the paper's layout (features.norm5, BatchNormAct) but one layer per block.
TINY_DENSENET = dict(encoder="densenet121", encoder_kwargs={"growth_rate": 8, "block_config": (1, 1, 1, 1)})
GROUPS = [2, 3, 1]
IMG = 64  # 2x2 feature map -> 4 spatial tokens per stream


def _net(**kwargs) -> DualNetClassifier:
    torch.manual_seed(0)
    for key, value in TINY_DENSENET.items():
        kwargs.setdefault(key, value)
    kwargs.setdefault("meta_groups", GROUPS)
    kwargs.setdefault("embed_dim", 32)
    kwargs.setdefault("num_heads", 4)
    kwargs.setdefault("meta_heads", 2)
    return DualNetClassifier(num_classes=3, **kwargs)


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    mask = torch.zeros(2, 1, IMG, IMG)
    mask[:, :, 16:48, 12:40] = 1.0
    return {
        "image": torch.randn(2, 3, IMG, IMG, generator=g),
        "meta": torch.randn(2, sum(GROUPS), generator=g),
        "mask": mask,
    }


@pytest.fixture(scope="module")
def net() -> DualNetClassifier:
    return _net(meta_names=["age", "sex", "site"]).eval()


def _run(net, batch, **override):
    inputs = {**batch, **override}
    with torch.no_grad():
        return net(inputs["image"], meta=inputs["meta"], mask=inputs["mask"])["logits"]


def test_logits_and_cross_attention_maps(net, batch):
    out = net(batch["image"], meta=batch["meta"], mask=batch["mask"])
    assert set(out) == {"logits"} and out["logits"].shape == (2, 3)
    cross = net.attention_maps["cross"]
    # keys = the segmented-lesion positions on the (2 x 2) feature grid
    assert isinstance(cross, AttentionMap) and cross.keys == "image_grid" and cross.grid == (2, 2)
    attn = cross.weights
    assert attn.shape == (2, 4, 4, 4) and not attn.requires_grad
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 4, 4))
    assert net.meta_names == ["age", "sex", "site"]
    assert isinstance(net, AttentionMaps) and isinstance(net, GradCamLayers) and isinstance(net, UsesMetadata)


@pytest.mark.parametrize(
    "switches",
    [{}, {"fusion": "concat"}, {"use_segmentation": False}, {"use_metadata": False}],
    ids=["paper", "concat", "no_segmentation", "no_metadata"],
)
def test_gradients_reach_every_parameter(batch, switches):
    """Every parameter each ablation builds trains (non-zero, finite gradient from the CE loss)."""
    net = _net(**switches).train()
    out = net(batch["image"], meta=batch["meta"], mask=batch["mask"])
    torch.nn.functional.cross_entropy(out["logits"], torch.tensor([0, 2])).backward()
    params = dict(net.named_parameters())
    assert params and all(p.requires_grad for p in params.values())
    # Excluded, with reason: the key-side biases (LayerNorm beta before the key projection, and the
    # key part of nn.MultiheadAttention's packed in_proj_bias) add the same amount q.b to every score of
    # a query; softmax ignores it, so their gradient is zero by construction, non-zero only by float
    # rounding. Checked below; the query and value parts of the packed bias train.
    key_shift = {"cross_attention.norm_key.bias"} & set(params)
    no_grad = [n for n, p in params.items() if p.grad is None or not torch.isfinite(p.grad).all()]
    zero_grad = [n for n, p in params.items() if n not in key_shift and p.grad.abs().sum() == 0]
    assert no_grad == [] and zero_grad == []
    if net.cross_attention is not None:
        d = net.embed_dim
        scale = params["cross_attention.attention.in_proj_weight"].grad[d : 2 * d].abs().sum()  # W_k
        b_q, b_k, b_v = params["cross_attention.attention.in_proj_bias"].grad.abs().chunk(3)
        assert key_shift and all(params[n].grad.abs().sum() < 1e-6 * scale for n in key_shift)
        assert b_k.sum() < 1e-6 * scale and b_q.sum() > 0 and b_v.sum() > 0
    names = {n.split(".")[0] for n in params}
    if switches.get("fusion") == "concat":  # both encoders, projected pooled concat, no attention
        assert {"image_encoder", "segmented_encoder", "concat_projection"} <= names
        assert not {"cross_attention", "image_projection", "segmented_projection"} & names
    if switches.get("use_segmentation") is False:  # one encoder, its projected tokens
        assert "image_projection" in names and not {"segmented_encoder", "cross_attention"} & names
    if switches.get("use_metadata") is False:
        assert not {"meta_tokenizer", "meta_encoder"} & names


def test_query_value_from_image_key_from_segmented_stream(net, batch):
    """The mask only reaches the fusion through the keys: it changes the attention map."""
    assert isinstance(net.cross_attention, CrossAttentionFusion) and net.cross_attention.value_source == "query"
    _run(net, batch)
    first = net.attention_maps["cross"].weights.clone()
    other_mask = torch.zeros_like(batch["mask"])
    other_mask[:, :, 40:, 40:] = 1.0
    logits_other = _run(net, batch, mask=other_mask)
    assert not torch.allclose(first, net.attention_maps["cross"].weights, atol=1e-6)
    assert not torch.allclose(_run(net, batch), logits_other, atol=1e-6)


def test_keys_come_from_the_segmented_encoder_queries_and_values_from_the_image(net, batch):
    """The attention's key is the projected segmented-lesion feature map; query and value are the image's."""
    seen = {}

    def keep_inputs(module, args, kwargs):
        seen["query"], seen["key"], seen["value"] = args[:3]

    handle = net.cross_attention.attention.register_forward_pre_hook(keep_inputs, with_kwargs=True)
    try:
        _run(net, batch)
    finally:
        handle.remove()
    with torch.no_grad():
        lesion = net.segmented_image(batch["image"], batch["mask"])
        features = net.segmented_encoder.forward_features(lesion)  # (B, C, 2, 2)
        tokens = net.segmented_projection(features.flatten(2).transpose(1, 2))
        expected_key = net.cross_attention.norm_key(tokens)
        image_features = net.image_encoder.forward_features(batch["image"])
        image_tokens = net.image_projection(image_features.flatten(2).transpose(1, 2))
        expected_query = net.cross_attention.norm_query(image_tokens)
    assert seen["key"].shape == (2, 4, net.embed_dim)
    torch.testing.assert_close(seen["key"], expected_key)
    torch.testing.assert_close(seen["query"], expected_query)
    assert seen["value"] is seen["query"]


def test_segmented_image_is_image_times_mask(net, batch):
    lesion = net.segmented_image(batch["image"], batch["mask"])
    torch.testing.assert_close(lesion, batch["image"] * batch["mask"])
    assert lesion[:, :, :16].abs().sum() == 0
    small = batch["mask"][:, :, ::2, ::2]  # other sizes are resized (nearest); (B, H, W) accepted
    torch.testing.assert_close(net.segmented_image(batch["image"], small[:, 0]), batch["image"] * batch["mask"])


def test_masked_crop_zooms_on_the_lesion_box(batch):
    net = _net(segmented_input="masked_crop").eval()
    full = torch.ones_like(batch["mask"])
    torch.testing.assert_close(net.segmented_image(batch["image"], full), batch["image"], atol=1e-5, rtol=0)
    box = torch.zeros_like(batch["mask"])
    box[:, :, 16:48, 16:48] = 1.0  # a 32 px box, zoomed x2
    crop = net.segmented_image(batch["image"], box)
    assert crop.shape == batch["image"].shape
    assert (crop == 0).float().mean() < 0.01 < 0.7 < (batch["image"] * box == 0).float().mean()
    region = batch["image"][:, :, 16:48, 16:48]
    torch.testing.assert_close(crop.mean(dim=(2, 3)), region.mean(dim=(2, 3)), atol=2e-2, rtol=0)
    # Geometry on a linear ramp (bilinear sampling is exact): the box [16, 48) is stretched to
    # [0, 64), i.e. output pixel j samples input coordinate 15.75 + 0.5 * j.
    coords = torch.arange(IMG, dtype=torch.float32)
    ramp = (coords[None, :] + 2 * coords[:, None]).expand(1, 3, IMG, IMG)
    sampled = 15.75 + 0.5 * coords
    expected = (sampled[None, :] + 2 * sampled[:, None]).expand(1, 3, IMG, IMG)
    torch.testing.assert_close(_crop_to_mask(ramp.contiguous(), box[:1]), expected)
    empty = net.segmented_image(batch["image"], torch.zeros_like(batch["mask"]))
    assert empty.abs().sum() == 0


def test_missing_mask_is_a_clear_error(net, batch):
    with pytest.raises(ValueError, match=r"mask=None.*predict_masks"):
        net(batch["image"], meta=batch["meta"])
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        net(batch["image"], meta=batch["meta"], mask=batch["mask"][:1])


def test_without_segmentation_single_encoder_ignores_mask(net, batch):
    single = _net(use_segmentation=False).eval()
    assert single.segmented_encoder is None and single.cross_attention is None
    assert _n_params(net) - _n_params(single) > _n_params(single.image_encoder)
    a = _run(single, batch)
    with torch.no_grad():
        b = single(batch["image"], meta=batch["meta"])["logits"]
    torch.testing.assert_close(a, b)
    assert single.attention_maps == {} and set(single.cam_layers()) == {"image"}


def test_concat_fusion_has_no_cross_attention_but_uses_both_streams(batch):
    concat = _net(fusion="concat").eval()
    assert concat.cross_attention is None and concat.concat_projection.in_features == 2 * concat.feature_dim
    a = _run(concat, batch)
    assert concat.attention_maps == {}
    assert not torch.allclose(a, _run(concat, batch, mask=torch.ones_like(batch["mask"])), atol=1e-6)


def test_metadata_switch(net, batch):
    assert not torch.allclose(_run(net, batch), _run(net, batch, meta=batch["meta"] + 2.0), atol=1e-6)
    with pytest.raises(ValueError, match="meta=None"):
        net(batch["image"], mask=batch["mask"])
    image_only = _net(use_metadata=False).eval()
    assert image_only.meta_tokenizer is None and image_only.meta_encoder is None
    assert not any("meta" in n for n, _ in image_only.named_parameters())
    torch.testing.assert_close(_run(image_only, batch), _run(image_only, batch, meta=batch["meta"] + 2.0))
    layers = net.meta_encoder.layers
    assert len(layers) == 2 and layers[0].self_attn.num_heads == 2


@pytest.mark.parametrize("heads", [1, 8])
def test_head_count_switch(batch, heads):
    net = _net(num_heads=heads).eval()
    _run(net, batch)
    assert net.attention_maps["cross"].weights.shape == (2, heads, 4, 4)


def test_shared_encoders_halve_encoder_parameters(net, batch):
    shared = _net(share_encoders=True).eval()
    assert shared.segmented_encoder is shared.image_encoder
    assert _n_params(net) - _n_params(shared) == _n_params(net.segmented_encoder)
    assert _run(shared, batch).shape == (2, 3)


def test_cam_layers_are_each_branch_norm5(net, batch):
    layers = net.cam_layers()
    assert layers["image"] is net.image_encoder.features.norm5
    assert layers["segmented"] is net.segmented_encoder.features.norm5
    acts = {}
    hooks = [m.register_forward_hook(lambda m, i, o, k=k: acts.setdefault(k, o)) for k, m in layers.items()]
    try:
        _run(net, batch)
    finally:
        for h in hooks:
            h.remove()
    assert acts["image"].shape == acts["segmented"].shape == (2, net.feature_dim, 2, 2)
    assert not torch.allclose(acts["image"], acts["segmented"])


def test_eval_mode_is_deterministic(net, batch):
    torch.testing.assert_close(_run(net, batch), _run(net, batch), rtol=0, atol=0)


def test_classification_task_passes_mask_and_meta(batch):
    task = ClassificationTask(_net(), num_classes=3, class_weights=None)
    seen = {}
    handle = task.net.register_forward_pre_hook(lambda m, args, kwargs: seen.update(kwargs), with_kwargs=True)
    try:
        loss = task.training_step({**batch, "label": torch.tensor([0, 2])}, 0)
    finally:
        handle.remove()
    assert seen["meta"] is batch["meta"] and seen["mask"] is batch["mask"]
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_clear_construction_errors():
    with pytest.raises(ValueError, match="fusion"):
        _net(fusion="sum")
    with pytest.raises(ValueError, match="num_heads"):
        _net(num_heads=3)
    with pytest.raises(ValueError, match="meta_names"):
        _net(meta_names=["only_one"])
    with pytest.raises(ValueError, match="segmented_input"):
        _net(segmented_input="crop")


def test_paper_encoder_densenet201_matches_timm():
    """DenseNet201 headless: timm's own parameter count (18.1M), 1920 features, CAM at features.norm5."""
    torch.manual_seed(0)
    net = DualNetClassifier(num_classes=7, meta_groups=GROUPS)  # paper defaults, not run
    reference = timm.create_model("densenet201", num_classes=0)
    expected = _n_params(reference)
    assert 18.0e6 < expected < 18.2e6
    assert _n_params(net.image_encoder) == expected and _n_params(net.segmented_encoder) == expected
    assert net.feature_dim == 1920 and net.image_projection.in_features == 1920
    assert net.cam_layers()["segmented"] is net.segmented_encoder.features.norm5
    assert net.cross_attention.num_heads == 8 and net.embed_dim == 512
