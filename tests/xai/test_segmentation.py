"""Seg-Grad-CAM for the segmentation nets (EAM-Net, DualNet's stage-1 Deep-UNet): maps image-sized, finite and
varying per image, the target is the lesion logits summed over the predicted mask, the maps of briefly trained
nets lie on the lesion and change under model randomisation, and the report/figures speak Dice, not classes.
EAM-Net's CMAM channel-attention maps are never shown as spatial heatmaps."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
import torch.nn as nn

from dermfuse_models.protocol import AttentionMap
from dermfuse_xai import (
    SCORE_KEYS,
    ExplainSettings,
    LogitsModel,
    RegionScore,
    check_methods,
    cross_attention_maps,
    default_methods,
    dice,
    energy_in_mask,
    explain_batches,
    grad_cam,
    is_segmentation_net,
    mask_fraction,
    pointing_hit,
    predicted_region,
    randomized_copy,
    seg_cam_layers_of,
    seg_grad_cam,
    spearman,
    write_report,
)
from dermfuse_xai.figures import explanation_grid_figure
from dermfuse_xai.methods.cross_attention import has_cross_attention, summarise_attention

SEG_KINDS = ["eamnet", "deepunet"]


@pytest.fixture(scope="module")
def held_out(kit):
    x, masks, labels = kit.lesion_batch(6, 3, kit.SIZE, seed=21)
    return x, masks, labels


@pytest.mark.parametrize("kind", SEG_KINDS)
def test_segmentation_nets_get_seg_gradcam_only(kind, kit):
    net = kit.make_seg_net(kind)
    assert is_segmentation_net(net)
    assert default_methods(net, kit.GROUPS) == ["seg_gradcam"]
    assert set(seg_cam_layers_of(net)) == {"bottleneck", "decoder"}
    cross_reason = "channel attention" if kind == "eamnet" else "segmentation net"
    for method, reason in (
        ("gradcam", "segmentation net"),
        ("cross_attention", cross_reason),
        ("kernel_shap", "segmentation net"),
        ("relevancy", "segmentation net"),
    ):
        with pytest.raises(ValueError, match=f"'{method}' does not fit {type(net).__name__}: .*{reason}"):
            check_methods(net, [method], kit.GROUPS)
    assert check_methods(net, ["seg_gradcam"], None) == ["seg_gradcam"]
    # and a classifier is refused Seg-Grad-CAM
    with pytest.raises(ValueError, match="'seg_gradcam' does not fit MSViT"):
        check_methods(kit.make_net("msvit"), ["seg_gradcam"], None)
    assert not is_segmentation_net(kit.make_net("timm_cnn"))


def test_a_segmentation_task_is_recognised_through_its_wrapper(kit):
    from dermfuse_models.tasks.segmentation import SegmentationTask

    task = SegmentationTask(net=kit.make_seg_net("eamnet"))
    assert is_segmentation_net(task) and default_methods(task) == ["seg_gradcam"]


def test_eamnet_channel_attention_is_not_a_spatial_heatmap(fitted, held_out, kit):
    net = fitted("eamnet")
    x, _, _ = held_out
    assert not has_cross_attention(net)
    assert cross_attention_maps(net, x) == {}  # the forward filled attention_maps, none is spatial
    # decoder1's CMAM map is (B, heads, 4, 4): K = 4 fits a 2x2 grid of a 64 px image, which a grid
    # heuristic would have upsampled into a "heatmap"; its keys say "channels", whatever its name, and
    # the same weights declared as an image grid do become a heatmap
    attn = net.attention_maps["decoder1/spatial_to_channel"]
    assert attn.keys == "channels" and attn.weights.shape[-1] == 4
    assert all(m.keys == "channels" for m in net.attention_maps.values())
    for name in ("decoder1/spatial_to_channel", "decoder1/channel_to_spatial", "cross"):
        assert summarise_attention(name, attn, (kit.SIZE, kit.SIZE)) is None
    as_grid = AttentionMap(attn.weights, keys="image_grid", grid=(2, 2))
    assert summarise_attention("decoder1/spatial_to_channel", as_grid, (kit.SIZE, kit.SIZE)).kind == "image"


@pytest.mark.parametrize("kind", SEG_KINDS)
def test_seg_gradcam_maps_are_image_sized_finite_and_vary_per_image(kind, fitted, held_out, kit):
    net = fitted(kind)
    x, masks, _ = held_out
    with torch.no_grad():
        logits = LogitsModel(net)(x)
    assert dice((logits >= 0).float(), masks).mean() > 0.8  # the brief fit segments the lesions
    for layer in seg_cam_layers_of(net):
        cam = seg_grad_cam(net, x, layer=layer)
        assert cam.shape == (6, kit.SIZE, kit.SIZE), layer
        assert torch.isfinite(cam).all() and (cam >= 0).all(), layer
        spread = cam.flatten(1).std(1)
        assert (spread > 1e-8).all(), f"{kind} {layer}: constant for image(s) {(spread <= 1e-8).nonzero().tolist()}"


def test_seg_gradcam_target_is_the_sum_of_lesion_logits_over_the_predicted_mask(fitted, held_out, kit):
    net = fitted("deepunet")
    x, _, _ = held_out
    with torch.no_grad():
        logits = LogitsModel(net)(x)
        region = predicted_region(logits)
        score = RegionScore(net, region)(x)["logits"]  # a one-class protocol net
    assert torch.equal(region, (logits[:, 0] >= 0).float())  # sigmoid >= 0.5 <=> logit >= 0
    assert score.shape == (6, 1)
    torch.testing.assert_close(score[:, 0], (logits[:, 0] * region).sum((1, 2)))
    # an empty prediction falls back to every pixel
    assert torch.equal(predicted_region(torch.full((2, 1, 8, 8), -3.0)), torch.ones(2, 8, 8))
    # the default region is the predicted one; another region gives another map
    default = seg_grad_cam(net, x, layer="decoder")
    torch.testing.assert_close(default, seg_grad_cam(net, x, region, layer="decoder"))
    assert not torch.allclose(default, seg_grad_cam(net, x, 1 - region, layer="decoder"))
    # Seg-Grad-CAM is Grad-CAM of that region score: one implementation
    decoder = seg_cam_layers_of(net)["decoder"]
    torch.testing.assert_close(default, grad_cam(RegionScore(net, region), x, 0, decoder))
    with pytest.raises(ValueError, match="unknown seg cam layer 'nope'"):
        seg_grad_cam(net, x, layer="nope")
    with pytest.raises(ValueError, match="declares no Seg-Grad-CAM layer.*seg_cam_layers"):
        seg_grad_cam(kit.make_net("timm_cnn"), x)


@pytest.mark.parametrize("kind", SEG_KINDS)
def test_seg_gradcam_of_a_trained_segmenter_lies_on_the_lesion_and_fails_randomisation(kind, fitted, held_out):
    net = fitted(kind)
    x, masks, _ = held_out
    with torch.no_grad():
        region = predicted_region(LogitsModel(net)(x))
    cam = seg_grad_cam(net, x, region, layer="decoder")
    random_cam = seg_grad_cam(randomized_copy(net, seed=0), x, region, layer="decoder")
    energy, chance = energy_in_mask(cam, masks).nanmean(), mask_fraction(masks).mean()
    # measured (decoder layer): energy 0.99 (EAM-Net) / 0.97 (Deep-UNet) vs chance 0.15; rho 0.16 / -0.41
    assert energy > chance + 0.3
    assert pointing_hit(cam, masks).nanmean() > chance + 0.4
    assert spearman(cam, random_cam).nanmean() < 0.5


def test_explaining_an_eamnet_end_to_end_reports_dice_and_scores(fitted, kit, tmp_path):
    net = fitted("eamnet")
    x, masks, labels = kit.lesion_batch(3, 3, kit.SIZE, seed=31)
    batches = [
        {"image": x[:2], "mask": masks[:2], "label": labels[:2], "sample_id": ["a", "b"]},
        {"image": x[2:], "mask": masks[2:], "label": labels[2:], "sample_id": ["c"]},
    ]
    report = explain_batches(
        net, batches, n=3, class_names=["x", "y", "z"], settings=ExplainSettings(deletion_steps=5), progress=False
    )
    assert report.task == "segmentation" and report.methods == ["seg_gradcam"]
    assert report.map_names == ["seg_gradcam/bottleneck", "seg_gradcam/decoder"]
    assert len(report.rows) == 3 * 2
    with torch.no_grad():
        expected_dice = dice((LogitsModel(net)(x) >= 0).float(), masks)
    for row in report.rows:
        assert "pred_name" not in row and "label_name" not in row
        assert row["dice"] == pytest.approx(float(expected_dice["abc".index(row["sample_id"])]), abs=1e-6)
        assert 0.0 <= row["pred_area"] <= 1.0
        for key in ("energy_in_mask", "mask_fraction", "deletion_auc", "deletion_auc_random"):
            assert math.isfinite(row[key]), (row["map"], key)
        if row["map"] == "seg_gradcam/decoder":  # (a random net's bottleneck map may be all zero: NaN)
            assert -1.0 <= row["randomization_spearman"] < 0.9
    decoder = report.means["seg_gradcam/decoder"]
    assert decoder["energy_in_mask"] > decoder["mask_fraction"]  # localisation scored against the GT mask
    titles = report.figures["title"]
    assert titles[0].startswith("a: Dice ") and f"{float(expected_dice[0]):.2f}" in titles[0]

    written = write_report(report, tmp_path / "explain")
    assert {k for k in written if k.startswith("figure:")} == {"figure:explanations"}
    assert list(report.figures["maps"]) == ["seg_gradcam/bottleneck", "seg_gradcam/decoder"]  # its two columns
    payload = json.loads(written["json"].read_text())
    assert payload["task"] == "segmentation" and "seg_gradcam" in payload["conventions"]
    with written["csv"].open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and {"sample_id", "dice", "pred_area", "map", *SCORE_KEYS} <= set(rows[0])
    assert "pred_name" not in rows[0]

    fig = explanation_grid_figure(
        report.figures["image"],
        {"seg_gradcam/decoder": report.figures["maps"]["seg_gradcam/decoder"]},
        titles,
        masks=report.figures["mask"],
        outlines=report.figures["outline"],
    )
    *panels, _ = fig.axes
    assert len(panels) == 3 * 3  # image | mask | map, three images
    axes = [panels[3 * i : 3 * i + 3] for i in range(3)]
    assert all(row[0].get_xlabel().startswith("Dice ") for row in axes)
    assert len(axes[0][2].images) == 2  # image + heatmap
    if 0 < float(report.figures["outline"][0].mean()) < 1:
        assert axes[0][2].collections, "the predicted lesion's outline is drawn on the map"


def test_label_target_explains_the_true_mask_and_needs_masks(fitted, kit):
    net = fitted("deepunet")
    x, masks, labels = kit.lesion_batch(2, 3, kit.SIZE, seed=41)
    settings = ExplainSettings(target="label", deletion_steps=3, randomization=False)
    report = explain_batches(
        net, [{"image": x, "mask": masks, "label": labels}], n=2, settings=settings, progress=False
    )
    assert {r["target"] for r in report.rows} == {"label"}
    cam = seg_grad_cam(net, x, masks, layer="decoder")
    got = report.figures["maps"]["seg_gradcam/decoder"]
    torch.testing.assert_close(got, cam)
    with pytest.raises(ValueError, match="needs ground-truth masks"):
        explain_batches(net, [{"image": x, "label": labels}], n=2, settings=settings, progress=False)


def test_an_undeclared_pixel_output_net_is_one_clear_error(kit):
    class PixelNet(nn.Module):  # (B, 1, H, W) logits but neither known nor declaring seg_cam_layers()
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 1, 3, padding=1)

        def forward(self, image, meta=None, mask=None):
            return {"logits": self.conv(image)}

        def cam_layers(self):
            return {"conv": self.conv}

    x, masks, labels = kit.lesion_batch(2, 3, kit.SIZE, seed=1)
    with pytest.raises(ValueError, match=r"not class logits \(B, K\).*seg_cam_layers"):
        explain_batches(PixelNet(), [{"image": x, "mask": masks, "label": labels}], n=2, progress=False)
    # told it is a segmentation net, it is refused Seg-Grad-CAM for want of seg_cam_layers()
    with pytest.raises(ValueError, match="'seg_gradcam' does not fit PixelNet: .*seg_cam_layers"):
        explain_batches(
            PixelNet(),
            [{"image": x, "mask": masks, "label": labels}],
            n=2,
            methods=["seg_gradcam"],
            task="segmentation",
            progress=False,
        )
