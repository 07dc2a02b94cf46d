"""SHAP / LIME over clinical features: named features, grouped one-hot blocks, documented sum/sign conventions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from dermfuse_models.protocol import ImageOnlyNet
from dermfuse_xai import LogitsModel, clinical_attributions, group_feature_mask, missing_baseline

GROUPS = [3, 2, 4]
NAMES = ["sex", "smoke", "region"]


class AdditiveMetaNet(nn.Module):
    """Logits linear in the metadata plus an image term: exact Shapley values are known in closed form."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.meta_head = nn.Linear(sum(GROUPS), 3)
        self.meta_names = NAMES

    def forward(
        self, image: torch.Tensor, meta: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        return {"logits": self.meta_head(meta) + image.mean(dim=(1, 2, 3))[:, None]}


def _meta() -> torch.Tensor:
    # sample 0: sex=col0, smoke=col0, region=col2 ; sample 1: sex=col1, smoke=missing, region=col0
    meta = torch.zeros(2, sum(GROUPS))
    meta[0, [0, 3, 7]] = 1.0
    meta[1, [1, 4, 5]] = 1.0
    return meta


def test_feature_mask_and_missing_baseline_follow_the_encoder_layout():
    assert group_feature_mask(GROUPS).tolist() == [[0, 0, 0, 1, 1, 2, 2, 2, 2]]
    assert missing_baseline(GROUPS).tolist() == [0, 0, 1, 0, 1, 0, 0, 0, 1]
    with pytest.raises(ValueError, match="meta_groups"):
        group_feature_mask([])


@pytest.mark.parametrize("method", ["kernel_shap", "shapley_sampling", "gradient_shap"])
def test_shapley_methods_recover_the_exact_values_of_an_additive_model(method):
    net = AdditiveMetaNet().eval()
    image, meta = torch.randn(2, 3, 8, 8), _meta()
    attr = clinical_attributions(
        net, image, meta, target=1, meta_groups=GROUPS, method=method, output="logit", n_samples=60
    )
    assert attr.names == NAMES  # clinical names (from the net's meta_names), not one-hot column indices
    weight = net.meta_head.weight[1].detach()
    diff = meta - missing_baseline(GROUPS)
    ids = group_feature_mask(GROUPS)[0]
    exact = torch.zeros(2, 3).index_add_(1, ids, diff * weight)  # phi_i = sum_{j in block i} w_j (x_j - b_j)
    torch.testing.assert_close(attr.values, exact, atol=2e-4, rtol=1e-3)
    # efficiency: the attributions add up to f(x) - f(baseline)
    torch.testing.assert_close(attr.values.sum(1), attr.f_input - attr.f_baseline, atol=2e-4, rtol=1e-3)


def test_lime_signs_follow_the_features_effects():
    net = AdditiveMetaNet().eval()
    image, meta = torch.randn(2, 3, 8, 8), _meta()
    attr = clinical_attributions(
        net, image, meta, target=1, meta_groups=GROUPS, method="lime", output="logit", n_samples=200
    )
    weight = net.meta_head.weight[1].detach()
    exact = torch.zeros(2, 3).index_add_(1, group_feature_mask(GROUPS)[0], (meta - missing_baseline(GROUPS)) * weight)
    big = exact.abs() > 0.05
    assert torch.equal(torch.sign(attr.values[big]), torch.sign(exact[big]))


def test_kernel_shap_sums_to_the_probability_change_on_vitatt(kit):
    """The documented convention on a real fusion net: sum_i phi_i ~= p_t(x) - p_t(all features missing)."""
    net = kit.make_net("vitatt")
    image, _, labels = kit.lesion_batch(2, 3, kit.SIZE, seed=3)
    meta = kit.one_hot_meta(labels, seed=3)
    attr = clinical_attributions(
        net,
        image,
        meta,
        target=labels,
        meta_groups=kit.GROUPS,
        meta_names=kit.NAMES,
        method="kernel_shap",
        n_samples=40,
    )
    assert attr.output == "probability" and attr.baseline == "missing"
    delta = attr.f_input - attr.f_baseline
    assert delta.abs().max() > 1e-4  # the metadata does move this net's output
    torch.testing.assert_close(attr.values.sum(1), delta, atol=1e-4, rtol=1e-2)
    with torch.no_grad():
        probs = LogitsModel(net)(image, meta).softmax(-1)
    torch.testing.assert_close(attr.f_input, probs[torch.arange(2), labels])
    exact = clinical_attributions(
        net,
        image,
        meta,
        target=labels,
        meta_groups=kit.GROUPS,
        meta_names=kit.NAMES,
        method="shapley_sampling",
        n_samples=30,
    )
    torch.testing.assert_close(exact.values.sum(1), delta, atol=1e-5, rtol=1e-4)  # exact efficiency
    records = attr.as_records()
    assert list(records[0]) == kit.NAMES


def test_baselines_and_clear_errors():
    net = AdditiveMetaNet().eval()
    image, meta = torch.randn(2, 3, 8, 8), _meta()
    missing = clinical_attributions(net, image, meta, 0, GROUPS, method="kernel_shap", output="logit", n_samples=30)
    zeros = clinical_attributions(
        net, image, meta, 0, GROUPS, method="kernel_shap", output="logit", n_samples=30, baseline="zeros"
    )
    assert zeros.baseline == "zeros" and not torch.allclose(missing.values, zeros.values)
    custom = clinical_attributions(
        net, image, meta, 0, GROUPS, method="kernel_shap", output="logit", n_samples=30, baseline=meta[0]
    )
    assert custom.baseline == "custom" and custom.values[0].abs().max() < 1e-5  # sample 0 == baseline
    with pytest.raises(ValueError, match="columns"):
        clinical_attributions(net, image, meta, 0, GROUPS, baseline=torch.zeros(4))
    with pytest.raises(ValueError, match="meta_groups"):
        clinical_attributions(net, image, meta, 0, [3, 3])
    with pytest.raises(ValueError, match="one name per clinical feature"):
        clinical_attributions(net, image, meta, 0, GROUPS, meta_names=["a"])
    with pytest.raises(ValueError, match="unknown feature attribution method"):
        clinical_attributions(net, image, meta, 0, GROUPS, method="deeplift")

    class ImageOnly(nn.Module):
        def forward(self, image):
            return image.mean(dim=(2, 3))

    with pytest.raises(TypeError, match="uses no clinical features"):
        clinical_attributions(ImageOnlyNet(ImageOnly()), image, meta, 0, GROUPS)
    no_names = AdditiveMetaNet()
    no_names.meta_names = []  # built without clinical features (the image-only ablation)
    with pytest.raises(TypeError, match="uses no clinical features"):
        clinical_attributions(no_names, image, meta, 0, GROUPS)


@pytest.mark.parametrize("method", ["lime", "kernel_shap", "shapley_sampling", "gradient_shap"])
def test_sampling_is_reproducible_for_a_seed(method):
    """Whatever the caller's RNGs hold (captum's GradientShap draws from numpy's global one); they are left as found."""
    net = AdditiveMetaNet().eval()
    image, meta = torch.randn(2, 3, 8, 8), _meta()
    np.random.seed(1)
    torch.manual_seed(1)
    a = clinical_attributions(net, image, meta, 0, GROUPS, method=method, n_samples=20, seed=5)
    after = np.random.random(), float(torch.rand(()))
    np.random.seed(2)
    torch.manual_seed(2)
    b = clinical_attributions(net, image, meta, 0, GROUPS, method=method, n_samples=20, seed=5)
    torch.testing.assert_close(a.values, b.values)
    np.random.seed(1)
    torch.manual_seed(1)
    assert after == (np.random.random(), float(torch.rand(())))
