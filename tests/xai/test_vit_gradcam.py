"""ViT Grad-CAM (patch tokens of a token layer as the feature map): the formula, its inputs, and where it applies."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dermfuse_xai import (
    LogitsModel,
    attention_rollout,
    check_methods,
    default_methods,
    transformer_relevancy,
    vit_grad_cam,
)
from dermfuse_xai.methods.vit_gradcam import token_cam_layers_of


def _reference(net, image, target, meta=None):
    """Grad-CAM written out with a forward hook and autograd: alpha = mean_patches(dy/dA), ReLU(sum_c alpha_c A_c)."""
    layer = token_cam_layers_of(net)["last_block"]
    kept = {}
    handle = layer.register_forward_hook(lambda m, i, o: kept.__setitem__("tokens", o))
    try:
        with torch.enable_grad():
            logits = LogitsModel(net)(image, meta)
            score = logits.gather(1, target[:, None]).sum()
            (grad,) = torch.autograd.grad(score, kept["tokens"])
    finally:
        handle.remove()
    layout = net.token_layout
    tokens, grad = kept["tokens"][:, layout.patches].detach(), grad[:, layout.patches]
    cam = (grad.mean(dim=1, keepdim=True) * tokens).sum(-1).clamp(min=0).reshape(-1, 1, *layout.grid)
    return F.interpolate(cam, size=image.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


@pytest.fixture(scope="module")
def batch(kit):
    x, masks, labels = kit.lesion_batch(3, 3, kit.SIZE, seed=11)
    return x, kit.one_hot_meta(labels, seed=11), labels


@pytest.mark.parametrize("kind", ["msvit", "vitatt"])
def test_vit_grad_cam_is_grad_cam_on_the_patch_grid(kind, fitted, batch, kit):
    net = fitted(kind)
    x, meta, _ = batch
    with torch.no_grad():
        predicted = LogitsModel(net)(x, meta).argmax(-1)  # explain the prediction, as the engine does
    maps = vit_grad_cam(net, x, predicted, meta=meta)
    torch.testing.assert_close(maps, _reference(net, x, predicted, meta), rtol=1e-4, atol=1e-6)
    assert maps.shape == (3, kit.SIZE, kit.SIZE) and (maps >= 0).all() and (maps.flatten(1).std(dim=1) > 0).any()
    # LayerNorm'd tokens are signed, so the ReLU can zero a whole map (all evidence negative); the signed map varies
    signed = vit_grad_cam(net, x, predicted, meta=meta, relu=False)
    assert (signed.flatten(1).std(dim=1) > 0).all()


def test_vit_grad_cam_depends_on_the_target_and_the_relu(fitted, batch):
    net = fitted("msvit")
    x, _, _ = batch
    a, b = vit_grad_cam(net, x, 0, relu=False), vit_grad_cam(net, x, 1, relu=False)
    assert not torch.allclose(a, b)
    relu = vit_grad_cam(net, x, 0)  # ReLU on the patch grid, then upsampling (as captum's LayerGradCam)
    assert (a < 0).any() and (relu >= 0).all()  # the exact ReLU map: the reference test above


def test_late_fusion_vitatt_is_explained_by_grad_cam_relevancy_and_rollout(kit):
    """ViTAtt fusion="late": Grad-CAM reads the patch tokens of the fusion block's norm1 (whose sequence also holds
    the metadata tokens); relevancy and rollout carry the metadata tokens through the ViT blocks unchanged."""
    from dermfuse_models.nets.vitatt import ViTAtt

    torch.manual_seed(0)
    net = ViTAtt(
        3,
        meta_groups=kit.GROUPS,
        meta_names=kit.NAMES,
        backbone="vit_tiny_patch16_224",
        img_size=kit.SIZE,
        fusion="late",
    ).eval()
    x, _, labels = kit.lesion_batch(2, 3, kit.SIZE, seed=3)
    meta = kit.one_hot_meta(labels, seed=3)
    maps = vit_grad_cam(net, x, labels, meta=meta)
    torch.testing.assert_close(maps, _reference(net, x, labels, meta), rtol=1e-4, atol=1e-6)
    assert maps.shape == (2, kit.SIZE, kit.SIZE)
    relevancy = transformer_relevancy(net, x, labels, meta=meta)
    assert relevancy.meta_names == kit.NAMES and relevancy.meta_scores.shape == (2, len(kit.NAMES))
    assert (relevancy.meta_scores > 0).any()  # the fusion block's attention reaches the metadata tokens
    rollout = attention_rollout(net, x, meta=meta)
    assert torch.allclose(rollout.cls_row.sum(-1), torch.ones(2), atol=1e-4)


def test_vit_grad_cam_applies_to_vits_only(fitted, kit):
    assert "vit_gradcam" in default_methods(fitted("msvit"))
    assert "vit_gradcam" not in default_methods(fitted("timm_cnn"))
    with pytest.raises(ValueError, match="vit_gradcam.*not a ViT declaring token_cam_layers"):
        check_methods(fitted("timm_cnn"), ["vit_gradcam"], None)
    with pytest.raises(ValueError, match="declares no ViT Grad-CAM layer"):
        vit_grad_cam(fitted("timm_cnn"), torch.zeros(1, 3, kit.SIZE, kit.SIZE), 0)
