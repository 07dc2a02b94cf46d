"""The figures as matplotlib objects: one compact grid (rows = images; columns = image | mask, only with masks |
one per map) with a colour bar, wrapped ids, predicted and true class, scores under each map and a legend of
them; all-zero maps flagged in the figure and in scores.json; the feature chart names the clinical features."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from dermfuse_data.transforms import denormalise
from dermfuse_xai import ExplainSettings, explain_batches, write_report
from dermfuse_xai.figures import (
    HEAT_ALPHA,
    HEAT_CMAP,
    MAX_WIDTH,
    PANEL,
    _unit,
    explanation_grid_figure,
    feature_bars_figure,
    stretch_to_unit,
    wrap_id,
)
from dermfuse_xai.scoring import SCORE_LEGEND


def _report(kit, n=3, methods=("gradcam", "kernel_shap")):
    x, masks, labels = kit.lesion_batch(n, 3, kit.SIZE, seed=5)
    meta = kit.one_hot_meta(labels, seed=5)
    ids = [f"Mass-Training_P_{i:05d}_RIGHT_MLO_1_a_long_publisher_id" for i in range(n)]
    batch = {"image": x, "label": labels, "meta": meta, "mask": masks, "sample_id": ids}
    return explain_batches(
        kit.make_net("mammo_xattn_co"),
        [batch],
        n=n,
        class_names=["benign", "malignant", "other"],
        meta_groups=kit.GROUPS,
        meta_names=kit.NAMES,
        methods=list(methods),
        settings=ExplainSettings(n_samples=16, deletion_steps=3, randomization=False),
        progress=False,
    )


def _grid(report, **kwargs):
    f = report.figures
    return explanation_grid_figure(
        f["image"],
        f["maps"],
        f["title"],
        ids=f["id"],
        masks=f["mask"],
        captions=f["captions"],
        empty=f["empty"],
        **kwargs,
    )


def test_grid_of_n_images_by_m_maps_is_compact_with_a_colour_bar_and_a_legend(kit):
    report = _report(kit, 3, ("gradcam", "cross_attention"))
    names = list(report.figures["maps"])
    assert len(names) == 2  # M = 2 maps: gradcam/image and the co-attention's image map
    fig = _grid(report, to_rgb=denormalise)
    images, masks = report.figures["image"], report.figures["mask"]
    n, cols = 3, 2 + len(names)
    *panels, colour_bar = fig.axes
    assert len(panels) == n * cols  # nothing else: no "no mask" column, no empty axes
    assert colour_bar.get_ylabel().startswith("relative saliency")
    assert fig.get_figwidth() <= MAX_WIDTH + 0.8 and fig.get_figheight() <= (PANEL + 0.55) * n + 1.4
    fig.canvas.draw()
    for ax in panels:  # square panels of about PANEL inches
        box = ax.get_position()
        width, height = box.width * fig.get_figwidth(), box.height * fig.get_figheight()
        assert width == pytest.approx(height, rel=0.02) and 0.6 * PANEL < width <= PANEL
    axes = np.array(panels).reshape(n, cols)  # row-major: one row per image
    for i in range(n):
        row = [r for r in report.rows if r["map"] == names[0]][i]
        image_ax, mask_ax, *map_axes = axes[i]
        assert image_ax.get_title(loc="left") == wrap_id(row["sample_id"])
        assert all(len(line) <= 20 for line in image_ax.get_title(loc="left").split("\n"))
        assert image_ax.get_xlabel() == f"pred {row['pred_name']} ({row['prob']:.2f})\ntrue {row['label_name']}"
        np.testing.assert_allclose(image_ax.images[0].get_array(), denormalise(images[i]))
        np.testing.assert_array_equal(mask_ax.images[0].get_array(), masks[i, 0].numpy())
        for ax, name in zip(map_axes, names, strict=True):
            assert ax.get_xlabel() == report.figures["captions"][name][i]
            if report.figures["empty"][name][i]:
                continue
            heat = ax.images[1]  # the image, and the heatmap over it
            np.testing.assert_allclose(heat.get_array(), _unit(report.figures["maps"][name][i].numpy()))
            assert heat.get_alpha() == HEAT_ALPHA and heat.get_cmap().name == HEAT_CMAP
    headers = [axes[0, c].get_title().replace("\n", "") for c in range(1, cols)]
    assert headers == ["lesion mask", *names]  # column headers, once (long map names break after their "/")
    assert all(axes[1, c].get_title() == "" for c in range(1, cols))
    assert "Explanations of 3 images" in fig._suptitle.get_text()
    assert fig._supxlabel.get_text().replace("\n", " ") == SCORE_LEGEND
    assert "del. gain" in SCORE_LEGEND and "in-lesion" in SCORE_LEGEND


def test_without_masks_there_is_no_mask_column_and_many_rows_go_side_by_side(kit):
    images, maps = torch.zeros(8, 3, 16, 16), {"m": torch.rand(8, 16, 16)}
    fig = explanation_grid_figure(images, maps, [f"id{i}: pred a (0.90) | true a" for i in range(8)])
    *panels, _ = fig.axes
    assert len(panels) == 8 * 2 and not any(t.get_text() == "no mask" for ax in panels for t in ax.texts)
    blocks = int(MAX_WIDTH // (2 * PANEL))  # two columns per image: three blocks of rows fit the width
    assert fig.get_figwidth() == pytest.approx(PANEL * 2 * blocks + 0.8)
    # without to_rgb the image is min-max stretched (the figures know nothing of the data's normalisation)
    np.testing.assert_allclose(panels[0].images[0].get_array(), stretch_to_unit(images[0]))


def test_long_ids_wrap_onto_two_lines_and_end_in_an_ellipsis():
    assert wrap_id("ISIC_0000006") == "ISIC_0000006"
    assert wrap_id("Mass-Training_P_00104_RIGHT_CC_1") == "Mass-Training_P_0010\n4_RIGHT_CC_1"
    long = wrap_id("x" * 60)
    assert long.split("\n") == ["x" * 20, "x" * 19 + "…"]


class _SignedRedNet(nn.Module):
    """Grad-CAM at ``features`` is the image's red channel for class 0 (its logit is mean(ReLU(r)) - mean(ReLU(-r))),
    and exactly zero for class 1 (a constant logit): an all-red-negative image has no positive evidence."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Identity()

    def forward(self, image, meta=None, mask=None):
        red = image[:, :1]
        acts = self.features(torch.cat([red.relu(), (-red).relu()], 1))
        pooled = acts.mean(dim=(2, 3))
        class0 = pooled[:, :1] - pooled[:, 1:]
        return {"logits": torch.cat([class0, torch.zeros_like(class0)], 1)}

    def cam_layers(self) -> dict[str, nn.Module]:
        return {"red": self.features}


def test_all_zero_maps_are_flagged_in_the_figure_and_in_scores_json(tmp_path):
    image = torch.zeros(3, 3, 8, 8)
    image[0, 0] = -1.0  # class 0: negative evidence everywhere
    image[1, 0, :4] = 1.0  # class 0: positive evidence in the top half
    image[2, 0] = 1.0  # class 1: a logit that does not depend on the layer
    batch = {"image": image, "label": torch.tensor([0, 0, 1]), "sample_id": ["neg", "pos", "flat"]}
    report = explain_batches(
        _SignedRedNet(),
        [batch],
        n=3,
        methods=["gradcam"],
        class_names=["benign", "malignant"],
        settings=ExplainSettings(target="label", deletion_steps=2, randomization=False),
        progress=False,
    )
    assert report.figures["empty"] == {"gradcam/red": [True, False, True]}
    written = write_report(report, tmp_path, caption="toy · test split")
    payload = json.loads(written["json"].read_text())
    assert payload["empty_map_counts"] == {"gradcam/red": "2 of 3"}
    neg, flat = payload["empty_maps"]
    assert {k: neg[k] for k in ("sample_id", "map", "method", "layer", "grid", "target", "target_name")} == {
        "sample_id": "neg",
        "map": "gradcam/red",
        "method": "gradcam",
        "layer": "features",
        "grid": [8, 8],
        "target": 0,
        "target_name": "benign",
    }
    assert neg["signed_max"] < 0 and neg["reason"].startswith("no positive evidence: the signed Grad-CAM at features")
    assert flat["sample_id"] == "flat" and flat["target_name"] == "malignant" and flat["signed_max"] == 0
    assert flat["reason"].startswith("zero gradient")
    rows = {r["sample_id"]: r for r in payload["per_image"]}
    assert rows["neg"]["empty"] is True and rows["neg"]["note"] == neg["reason"]
    assert rows["neg"]["deletion_auc_gain"] is None and rows["pos"]["empty"] is False and rows["pos"]["note"] == ""
    assert rows["pos"]["deletion_auc_gain"] is not None

    fig = _grid(report)
    *panels, _ = fig.axes
    maps = np.array(panels).reshape(3, 2)[:, 1]
    assert [[t.get_text() for t in ax.texts] for ax in maps] == [["all zero"], [], ["all zero"]]
    assert [ax.get_xlabel() for ax in (maps[0], maps[2])] == ["no positive evidence", "zero gradient"]
    assert len(maps[0].images) == 1 and len(maps[1].images) == 2  # grey image only vs image + heatmap
    assert "toy · test split" not in fig._suptitle.get_text()  # the caption is write_report's, not the grid's
    assert _grid(report, caption="toy · test split")._suptitle.get_text().endswith("\ntoy · test split")


def test_feature_bar_chart_names_the_clinical_features_sorted_by_importance(kit):
    report = _report(kit)
    names, values = report.figures["features"]["kernel_shap"]
    assert names == kit.NAMES and values.shape == (3, 3)
    runner = feature_bars_figure(report.figures["features"], caption="pad_ufes_20 · SYNTHETIC")
    assert [ax.get_title() for ax in runner.axes] == ["kernel_shap (n=3)"]
    assert runner._suptitle.get_text() == "clinical feature importance\npad_ufes_20 · SYNTHETIC"
    assert sorted(t.get_text() for t in runner.axes[0].get_yticklabels()) == sorted(kit.NAMES)  # names, not columns
    values = np.array([[0.3, -0.05, 0.1], [0.1, -0.15, 0.0]])  # means: sex 0.2, smoke -0.1, region 0.05
    fig = feature_bars_figure({"kernel_shap": (names, values), "lime": (names, -values)})
    assert len(fig.axes) == 2
    shap_ax = fig.axes[0]
    assert shap_ax.get_title() == "kernel_shap (n=2)"
    labels = [t.get_text() for t in shap_ax.get_yticklabels()]
    assert labels == ["region", "smoke", "sex"]  # by mean |value|, largest at the top (last tick)
    widths = [bar.get_width() for bar in shap_ax.patches]
    np.testing.assert_allclose(widths, [0.05, -0.1, 0.2])
    red, blue = (0.752941, 0.223529, 0.168627), (0.180392, 0.525490, 0.756863)
    colours = [tuple(round(c, 6) for c in bar.get_facecolor()[:3]) for bar in shap_ax.patches]
    assert colours == [red, blue, red]  # red raises the output, blue lowers it
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["region", "smoke", "sex"]
    assert [bar.get_width() for bar in fig.axes[1].patches] == pytest.approx([-0.05, 0.1, -0.2])


def test_default_image_stretch_maps_each_image_onto_the_unit_range():
    image = torch.stack([torch.full((4, 5), -2.0), torch.zeros(4, 5), torch.full((4, 5), 3.0)])
    image[1, 0, 0] = 1.0
    rgb = stretch_to_unit(image)
    assert rgb.shape == (4, 5, 3) and rgb.min() == 0.0 and rgb.max() == 1.0
    np.testing.assert_allclose(rgb[..., 0], 0.0)  # the darkest channel value -> 0
    np.testing.assert_allclose(rgb[..., 2], 1.0)  # the brightest -> 1
    np.testing.assert_allclose(rgb[0, 0, 1], 0.6)  # (1 - -2) / 5: one stretch for all channels
    np.testing.assert_array_equal(stretch_to_unit(torch.ones(3, 2, 2)), np.zeros((2, 2, 3)))  # constant -> black


def test_written_grid_png_has_the_size_of_its_rows_and_blocks(kit, tmp_path):
    from PIL import Image

    sizes = {}
    for n in (1, 3):
        report = _report(kit, n, ("gradcam",))
        path = write_report(report, tmp_path / str(n))["figure:explanations"]
        assert path.name == "explanations.png"
        with Image.open(path) as im:
            sizes[n] = im.size
    # 150 dpi; three columns (image | mask | gradcam): one row, then two blocks of two rows side by side
    assert sizes[1] == (int(150 * (3 * PANEL + 0.8)), int(150 * ((PANEL + 0.55) + 1.4)))
    assert sizes[3] == (int(150 * (6 * PANEL + 0.8)), int(150 * (2 * (PANEL + 0.55) + 1.4)))


def test_segmentation_titles_replace_classes_and_outline_the_predicted_lesion():
    images = torch.zeros(2, 3, 16, 16)
    maps = {"seg_gradcam/decoder": torch.rand(2, 16, 16)}
    outline = torch.zeros(2, 16, 16)
    outline[:, 4:10, 4:10] = 1
    titles = ["a: Dice 0.91 (pred area 0.14)", "b: Dice 0.50 (pred area 0.14)"]
    fig = explanation_grid_figure(images, maps, titles, masks=outline[:, None], outlines=outline)
    *panels, _ = fig.axes
    axes = np.array(panels).reshape(2, 3)
    assert [ax.get_title(loc="left") for ax in axes[:, 0]] == ["a", "b"]
    assert [ax.get_xlabel() for ax in axes[:, 0]] == ["Dice 0.91 (pred area 0.14)", "Dice 0.50 (pred area 0.14)"]
    assert axes[0, 2].collections and axes[1, 2].collections  # predicted-lesion contour on each map
