"""Every explanation method on every paper's classification net: image-sized, finite, non-constant maps;
clinical attributions named by feature. Nets are small (64 px) and briefly fitted on synthetic lesions
so that maps are those of a model that has learnt something (a random net's Grad-CAM can be all zero).

The segmentation nets (EAM-Net, DualNet's Deep-UNet) get Seg-Grad-CAM: tests/xai/test_segmentation.py.
"""

from __future__ import annotations

import pytest
import torch

from dermfuse_xai import (
    ExplainSettings,
    LogitsModel,
    MethodInputs,
    attention_rollout,
    check_methods,
    cross_attention_maps,
    default_methods,
    grad_cam,
    transformer_relevancy,
    vit_grad_cam,
)
from dermfuse_xai.methods import method_named

KINDS = ["vitatt", "msvit", "mammo_xattn", "mammo_xattn_co", "dualnet", "timm_cnn"]
EXPECTED_METHODS = {
    "vitatt": ["vit_gradcam", "relevancy", "rollout", "kernel_shap", "lime"],
    "msvit": ["vit_gradcam", "relevancy", "rollout"],
    "mammo_xattn": ["gradcam", "cross_attention", "kernel_shap", "lime"],
    "mammo_xattn_co": ["gradcam", "cross_attention", "kernel_shap", "lime"],
    "dualnet": ["gradcam", "cross_attention", "kernel_shap", "lime"],
    "timm_cnn": ["gradcam"],
}
EXPECTED_MAPS = {
    "vitatt": {"vit_gradcam/last_block", "relevancy", "rollout"},
    "msvit": {"vit_gradcam/last_block", "relevancy", "rollout"},
    "mammo_xattn": {"gradcam/image"},  # cross: one pooled image query -> keys are the features only
    "mammo_xattn_co": {"gradcam/image", "cross_attention/clinical_to_image"},
    "dualnet": {"gradcam/image", "gradcam/segmented", "cross_attention/cross"},
    "timm_cnn": {"gradcam/features"},
}


@pytest.fixture(scope="module")
def batch(kit):
    x, masks, labels = kit.lesion_batch(3, 3, kit.SIZE, seed=7)
    return x, kit.one_hot_meta(labels, seed=7), masks, labels


@pytest.mark.parametrize("kind", KINDS)
def test_default_methods_fit_the_net(kind, fitted, kit):
    assert default_methods(fitted(kind), kit.GROUPS) == EXPECTED_METHODS[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_every_method_gives_image_sized_finite_varying_maps(kind, fitted, batch, kit):
    net = fitted(kind)
    x, meta, masks, _ = batch
    with torch.no_grad():
        predicted = LogitsModel(net)(x, meta, masks).argmax(-1)  # the engine explains the prediction
    inputs = MethodInputs(x, predicted, meta, masks, ExplainSettings(n_samples=24), kit.GROUPS, kit.NAMES)
    maps, features = {}, {}
    for method in EXPECTED_METHODS[kind]:
        result = method_named(method).run(net, inputs)  # what explain_batches runs, registry record by record
        maps.update(result.maps)
        features.update(result.features)
    assert set(maps) == EXPECTED_MAPS[kind]
    for name, heat in maps.items():
        assert heat.shape == (3, kit.SIZE, kit.SIZE), name
        assert torch.isfinite(heat).all(), name
        spread = heat.flatten(1).std(dim=1)
        if name.startswith("vit_gradcam/"):  # signed (LayerNorm'd) tokens: the ReLU may zero a map; signed map below
            assert (heat >= 0).all() and (spread > 1e-8).any(), name
        else:  # per image, for every method (Grad-CAM included: one flat map in the batch is a failure)
            flat = (spread <= 1e-8).nonzero().flatten().tolist()
            assert (spread > 1e-8).all(), f"{name} is constant for image(s) {flat}"
        if name.startswith("vit_gradcam/"):
            signed = vit_grad_cam(net, x, predicted, name.split("/", 1)[1], meta=meta, mask=masks, relu=False)
            assert (signed.flatten(1).std(dim=1) > 1e-8).all(), f"signed {name} is constant for some image"
        if name.startswith("gradcam/"):  # the signed map (before the ReLU) varies too
            signed = grad_cam(net, x, predicted, name.split("/", 1)[1], meta=meta, mask=masks, relu=False)
            assert (signed.flatten(1).std(dim=1) > 1e-8).all(), f"signed {name} is constant for some image"
    for name, (names, values, _) in features.items():
        assert names == kit.NAMES, name
        assert values.shape == (3, len(kit.NAMES)) and torch.isfinite(values).all(), name
    if "kernel_shap" in features:  # the metadata matters to a fitted fusion net
        assert features["kernel_shap"][1].abs().sum() > 0


def test_vitatt_relevancy_scores_each_metadata_token_by_name(fitted, batch, kit):
    x, meta, _, labels = batch
    rel = transformer_relevancy(fitted("vitatt"), x, labels, meta=meta)
    assert rel.meta_names == kit.NAMES and rel.meta_scores.shape == (3, 3)
    assert (rel.meta_scores >= 0).all()  # relevancy accumulates clamped (positive) contributions
    assert rel.patch_scores.shape == (3, 4, 4)  # 64 px / patch 16
    rollout = attention_rollout(fitted("vitatt"), x, meta=meta)
    # rollout rows are distributions over tokens: the class-token row sums to 1
    assert torch.allclose(rollout.cls_row.sum(-1), torch.ones(3), atol=1e-4)


def test_relevancy_depends_on_the_target_class_and_rollout_does_not(fitted, batch):
    x, meta, _, _ = batch
    net = fitted("vitatt")
    fused_before = [block.attn.fused_attn for block in net.vit.blocks]
    a = transformer_relevancy(net, x, 0, meta=meta).image_map
    b = transformer_relevancy(net, x, 1, meta=meta).image_map
    assert not torch.allclose(a, b)
    # attention capture is switched off afterwards (no hooks, fused path restored) and logits are unchanged by it
    assert not net.attention_recorder.active and net.attentions == []
    assert all(not block.attn.attn_drop._forward_hooks for block in net.vit.blocks)
    assert all(block.attn.fused_attn == fused for block, fused in zip(net.vit.blocks, fused_before, strict=True))
    with torch.no_grad():
        torch.testing.assert_close(LogitsModel(net)(x, meta), net(x, meta)["logits"])


def test_cross_attention_summaries(fitted, batch, kit):
    x, meta, masks, _ = batch
    cross = cross_attention_maps(fitted("mammo_xattn"), x, meta=meta)
    assert set(cross) == {"image_to_clinical"} and cross["image_to_clinical"].kind == "features"
    assert cross["image_to_clinical"].names == kit.NAMES
    assert torch.allclose(cross["image_to_clinical"].feature_scores.sum(-1), torch.ones(3), atol=1e-5)
    # the summary follows what the net says its keys are
    assert fitted("mammo_xattn").attention_maps["image_to_clinical"].keys == "feature_tokens"
    dual = cross_attention_maps(fitted("dualnet"), x, meta=meta, mask=masks)
    assert dual["cross"].kind == "image" and dual["cross"].image_map.shape == (3, kit.SIZE, kit.SIZE)
    assert fitted("dualnet").attention_maps["cross"].keys == "image_grid"
    co = cross_attention_maps(fitted("mammo_xattn_co"), x, meta=meta)
    assert {name: s.kind for name, s in co.items()} == {"image_to_clinical": "features", "clinical_to_image": "image"}


def test_dualnet_gradcam_hooks_both_densenet_branches(fitted, batch):
    x, meta, masks, labels = batch
    net = fitted("dualnet")
    image_map = grad_cam(net, x, labels, "image", meta=meta, mask=masks)
    lesion_map = grad_cam(net, x, labels, "segmented", meta=meta, mask=masks)
    assert not torch.allclose(image_map, lesion_map)
    with pytest.raises(ValueError, match="unknown cam layer"):
        grad_cam(net, x, labels, "nope", meta=meta, mask=masks)


def test_methods_that_do_not_fit_are_refused_with_a_reason(fitted, batch, kit):
    x, meta, _, labels = batch
    with pytest.raises(ValueError, match="no Grad-CAM layer"):
        grad_cam(fitted("vitatt"), x, labels, meta=meta)
    with pytest.raises(TypeError, match="attention capture"):
        transformer_relevancy(fitted("timm_cnn"), x, labels)
    with pytest.raises(ValueError, match="'gradcam' does not fit ViTAtt"):
        check_methods(fitted("vitatt"), ["gradcam"], kit.GROUPS)
    with pytest.raises(ValueError, match="'kernel_shap' does not fit MSViT"):
        check_methods(fitted("msvit"), ["kernel_shap"], kit.GROUPS)
    with pytest.raises(ValueError, match="unknown"):
        check_methods(fitted("msvit"), ["smoothgrad"], kit.GROUPS)
    from dermfuse_models.nets.vitatt import ViTAtt

    image_only = ViTAtt(
        num_classes=3, meta_groups=kit.GROUPS, backbone="test_vit", img_size=kit.SIZE, use_metadata=False
    )  # the image-only arm of the metadata ablation: nothing to attribute
    assert default_methods(image_only, kit.GROUPS) == ["vit_gradcam", "relevancy", "rollout"]
