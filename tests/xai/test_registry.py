"""The method registry: one record per method, and a new method takes one record + one registry entry.

A toy gradient-x-input map and a toy clinical-feature score are registered in a fixture (the registry is
monkeypatched, nothing is added to the package) and ``explain_batches`` / ``write_report`` run, score and
write them with no other edit.
"""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
import torch.nn as nn

from dermfuse_xai import (
    ExplainSettings,
    ExplanationMethod,
    FeatureScores,
    LogitsModel,
    MethodInputs,
    MethodResult,
    check_methods,
    default_methods,
    explain_batches,
    method_names,
    write_report,
)
from dermfuse_xai import methods as registry
from dermfuse_xai.report import conventions

TOY_MAP, TOY_FEATURES = "grad_x_input", "meta_presence"


def _grad_x_input(net: nn.Module, inputs: MethodInputs) -> MethodResult:
    """|d logit_target / d image * image| summed over colours."""
    x = inputs.image.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = LogitsModel(net)(x, inputs.meta, inputs.mask)
        (grad,) = torch.autograd.grad(logits.gather(1, inputs.target[:, None]).sum(), x)
    return MethodResult(maps={TOY_MAP: (grad * x).sum(1).abs().detach()})


def _meta_presence(net: nn.Module, inputs: MethodInputs) -> MethodResult:
    """1 per clinical feature whose value is known (its missing indicator is off)."""
    ends = torch.cumsum(torch.tensor(inputs.meta_groups), 0) - 1
    return MethodResult(
        features={TOY_FEATURES: FeatureScores(list(inputs.meta_names), 1 - inputs.meta[:, ends].cpu(), {})}
    )


@pytest.fixture
def toys(monkeypatch):
    """The registry with two toy methods appended (restored after the test); ``calls`` counts their runs."""
    calls = {TOY_MAP: 0, TOY_FEATURES: 0}

    def counted(name, run):
        def wrapped(net, inputs):
            calls[name] += 1
            return run(net, inputs)

        return wrapped

    toy_map = ExplanationMethod(
        name=TOY_MAP,
        task="classification",
        run=counted(TOY_MAP, _grad_x_input),
        convention="toy: |gradient x input| of the target logit, summed over colours",
    )
    toy_features = ExplanationMethod(
        name=TOY_FEATURES,
        task="classification",
        run=counted(TOY_FEATURES, _meta_presence),
        yields_maps=False,
        default=False,
        applies=lambda net, ctx: None if ctx.meta_groups else "no clinical features",
        convention="toy: 1 where the feature is known",
    )
    monkeypatch.setattr(registry, "REGISTRY", [*registry.REGISTRY, toy_map, toy_features])
    return calls


def _batches(kit, n: int = 3):
    x, masks, labels = kit.lesion_batch(n, 3, kit.SIZE, seed=13)
    meta = kit.one_hot_meta(labels, seed=13)
    return [
        {"image": x[:2], "mask": masks[:2], "label": labels[:2], "meta": meta[:2], "sample_id": ["a", "b"]},
        {"image": x[2:], "mask": masks[2:], "label": labels[2:], "meta": meta[2:], "sample_id": ["c"]},
    ]


def test_a_registered_method_is_run_scored_and_written_with_no_other_edit(toys, fitted, kit, tmp_path):
    net = fitted("timm_cnn")
    assert default_methods(net, kit.GROUPS) == ["gradcam", TOY_MAP]  # default=True: picked for every classifier
    assert check_methods(net, [TOY_FEATURES], kit.GROUPS) == [TOY_FEATURES]
    with pytest.raises(ValueError, match=f"'{TOY_FEATURES}' does not fit .*no clinical features"):
        check_methods(net, [TOY_FEATURES], None)  # its own reason, through the same query

    report = explain_batches(
        net,
        _batches(kit),
        n=3,
        methods=["gradcam", TOY_MAP, TOY_FEATURES],
        meta_groups=kit.GROUPS,
        meta_names=kit.NAMES,
        settings=ExplainSettings(deletion_steps=4),
        progress=False,
    )
    assert toys == {TOY_MAP: 2 * 2, TOY_FEATURES: 2}  # 2 batches; maps also on the randomised net, features not
    assert report.map_names == ["gradcam/features", TOY_MAP]
    rows = [r for r in report.rows if r["map"] == TOY_MAP]
    assert [r["sample_id"] for r in rows] == ["a", "b", "c"]
    for row in rows:  # localisation, deletion and randomisation, like any built-in map
        for key in (
            "energy_in_mask",
            "pointing_hit",
            "mask_fraction",
            "deletion_auc",
            "deletion_auc_gain",
            "randomization_spearman",
        ):
            assert math.isfinite(row[key]), key
    assert report.means[TOY_MAP]["n_images"] == 3
    assert report.features[TOY_FEATURES]["names"] == kit.NAMES
    assert set(report.features[TOY_FEATURES]["per_image"]) == {"a", "b", "c"}

    written = write_report(report, tmp_path)
    assert written["figure:explanations"].name == "explanations.png" and written["figure:explanations"].is_file()
    assert list(report.figures["maps"]) == ["gradcam/features", TOY_MAP]  # a column of the grid, like any map
    assert written["figure:features"].is_file()
    payload = json.loads(written["json"].read_text())
    assert payload["methods"] == ["gradcam", TOY_MAP, TOY_FEATURES]
    assert payload["conventions"][TOY_MAP].startswith("toy: |gradient x input|")
    with written["csv_mean"].open() as fh:
        assert [r["map"] for r in csv.DictReader(fh)] == ["gradcam/features", TOY_MAP]
    with written["csv_features"].open() as fh:
        assert {r["method"] for r in csv.DictReader(fh)} == {TOY_FEATURES}
    assert method_names()[-2:] == [TOY_MAP, TOY_FEATURES]  # what --methods accepts and lists


def test_the_registry_lists_each_method_once_with_its_task_and_convention():
    names = method_names()
    assert names == [
        "gradcam",
        "vit_gradcam",
        "seg_gradcam",
        "relevancy",
        "rollout",
        "cross_attention",
        "kernel_shap",
        "shapley_sampling",
        "gradient_shap",
        "lime",
    ]
    assert TOY_MAP not in names  # the toys live in the fixture only
    assert len(set(names)) == len(names)
    for method in registry.REGISTRY:
        assert method.task in ("classification", "segmentation") and method.convention, method.name
    assert [m.name for m in registry.REGISTRY if not m.yields_maps] == [
        "kernel_shap",
        "shapley_sampling",
        "gradient_shap",
        "lime",
    ]
    assert [m.name for m in registry.REGISTRY if not m.default] == ["shapley_sampling", "gradient_shap"]
    assert list(conventions()) == [
        "target",
        *names,
        "feature_sign",
        "energy_in_mask",
        "pointing_hit",
        "deletion_auc",
        "empty",
        "randomization_spearman",
    ]


def test_unknown_and_wrong_task_methods_name_what_to_use_instead(kit):
    with pytest.raises(
        ValueError, match="'smoothgrad' is unknown \\(choose from gradcam, vit_gradcam, seg_gradcam, .*lime\\)"
    ):
        check_methods(kit.make_net("msvit"), ["smoothgrad"], None)
    with pytest.raises(
        ValueError, match="'seg_gradcam' does not fit MSViT: it is a classifier .*use vit_gradcam / relevancy / rol"
    ):
        check_methods(kit.make_net("msvit"), ["seg_gradcam"], None)
    with pytest.raises(ValueError, match="'rollout' does not fit DeepUNet: it is a segmentation net .*use seg_gradcam"):
        check_methods(kit.make_seg_net("deepunet"), ["rollout"], None)
    assert check_methods(kit.make_net("msvit"), ["rollout", "relevancy", "rollout"], None) == ["rollout", "relevancy"]
