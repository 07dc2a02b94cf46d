"""The figures as matplotlib objects: the heatmap grid has image | mask | overlay columns and one row per image,
titled with the predicted and true class; the feature chart names the clinical features."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from dermfuse_data.transforms import denormalise
from dermfuse_xai import ExplainSettings, explain_batches
from dermfuse_xai.figures import _unit, feature_bars_figure, heatmap_grid_figure, stretch_to_unit


@pytest.fixture
def closing():
    figures = []
    yield figures.append
    for fig in figures:
        plt.close(fig)


def _report(kit, n=3):
    x, masks, labels = kit.lesion_batch(n, 3, kit.SIZE, seed=5)
    meta = kit.one_hot_meta(labels, seed=5)
    batch = {"image": x, "label": labels, "meta": meta, "mask": masks, "sample_id": [f"id{i}" for i in range(n)]}
    return explain_batches(
        kit.make_net("mammo_xattn"),
        [batch],
        n=n,
        class_names=["benign", "malignant", "other"],
        meta_groups=kit.GROUPS,
        meta_names=kit.NAMES,
        methods=["gradcam", "kernel_shap"],
        settings=ExplainSettings(n_samples=16, deletion_steps=3, randomization=False),
        progress=False,
    )


def test_heatmap_grid_has_image_mask_overlay_per_row_with_predicted_and_true_class(kit, closing):
    report = _report(kit)
    fig_data = report.figures
    titles = fig_data["title"]
    rows = [r for r in report.rows if r["map"] == "gradcam/image"]
    for title, row in zip(titles, rows, strict=True):  # the runner titles each row with both classes
        assert title.startswith(f"{row['sample_id']}: ")
        assert f"pred {row['pred_name']} ({row['prob']:.2f})" in title and f"true {row['label_name']}" in title

    images, masks, maps = fig_data["image"], fig_data["mask"], fig_data["maps"]["gradcam/image"]
    fig = heatmap_grid_figure(
        images,
        maps,
        titles,
        masks,
        method="gradcam/image",
        captions=fig_data["captions"]["gradcam/image"],
        to_rgb=denormalise,
    )
    closing(fig)
    axes = np.array(fig.axes).reshape(3, 3)  # one row per image, three columns
    assert fig._suptitle.get_text() == "gradcam/image: image | mask | heatmap"
    for i in range(3):
        image_ax, mask_ax, overlay_ax = axes[i]
        assert image_ax.get_title(loc="left") == titles[i]
        assert len(image_ax.images) == 1
        np.testing.assert_allclose(image_ax.images[0].get_array(), denormalise(images[i]))
        assert mask_ax.get_title() == "lesion mask" and len(mask_ax.images) == 1
        np.testing.assert_array_equal(mask_ax.images[0].get_array(), masks[i, 0].numpy())
        assert len(overlay_ax.images) == 2  # the image, and the heatmap over it
        heat = overlay_ax.images[1]
        np.testing.assert_allclose(heat.get_array(), _unit(maps[i].numpy()))  # min-max scaled per image
        assert heat.get_alpha() == 0.5 and heat.get_cmap().name == "jet"
        caption = overlay_ax.get_title()  # the map's name and its scores
        assert caption == fig_data["captions"]["gradcam/image"][i]
        assert caption.startswith("gradcam/image\n") and "del. gain" in caption

    no_mask = heatmap_grid_figure(images[:2], maps[:2], titles[:2], None, method="m")
    closing(no_mask)
    assert len(no_mask.axes) == 6
    assert [t.get_text() for t in no_mask.axes[1].texts] == ["no mask"] and not no_mask.axes[1].images
    # without to_rgb the image is min-max stretched (the figures know nothing of the data's normalisation)
    for i in range(2):
        for ax in (no_mask.axes[3 * i], no_mask.axes[3 * i + 2]):
            np.testing.assert_allclose(ax.images[0].get_array(), stretch_to_unit(images[i]))


def test_default_image_stretch_maps_each_image_onto_the_unit_range():
    image = torch.stack([torch.full((4, 5), -2.0), torch.zeros(4, 5), torch.full((4, 5), 3.0)])
    image[1, 0, 0] = 1.0
    rgb = stretch_to_unit(image)
    assert rgb.shape == (4, 5, 3) and rgb.min() == 0.0 and rgb.max() == 1.0
    np.testing.assert_allclose(rgb[..., 0], 0.0)  # the darkest channel value -> 0
    np.testing.assert_allclose(rgb[..., 2], 1.0)  # the brightest -> 1
    np.testing.assert_allclose(rgb[0, 0, 1], 0.6)  # (1 - -2) / 5: one stretch for all channels
    np.testing.assert_array_equal(stretch_to_unit(torch.ones(3, 2, 2)), np.zeros((2, 2, 3)))  # constant -> black


def test_feature_bar_chart_names_the_clinical_features_sorted_by_importance(kit, closing):
    report = _report(kit)
    names, values = report.figures["features"]["kernel_shap"]
    assert names == kit.NAMES and values.shape == (3, 3)
    runner = feature_bars_figure(report.figures["features"])  # what write_report draws
    closing(runner)
    assert [ax.get_title() for ax in runner.axes] == ["kernel_shap (n=3)"]
    assert sorted(t.get_text() for t in runner.axes[0].get_yticklabels()) == sorted(kit.NAMES)  # names, not columns
    values = np.array([[0.3, -0.05, 0.1], [0.1, -0.15, 0.0]])  # means: sex 0.2, smoke -0.1, region 0.05
    fig = feature_bars_figure({"kernel_shap": (names, values), "lime": (names, -values)})
    closing(fig)
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


def test_written_grid_png_has_one_row_per_image(kit, tmp_path):
    from PIL import Image

    from dermfuse_xai import write_report

    sizes = {}
    for n in (1, 3):
        report = _report(kit, n)
        path = write_report(report, tmp_path / str(n))["figure:gradcam/image"]
        with Image.open(path) as im:
            sizes[n] = im.size
    assert sizes[1][0] == sizes[3][0] == 750  # 7.5 in at 100 dpi: three columns
    assert sizes[3][1] == pytest.approx(sizes[1][1] + 2 * 260, abs=2)  # 2.6 in per extra row


def test_segmentation_titles_replace_classes(kit, closing):
    images = torch.zeros(2, 3, 16, 16)
    maps = torch.rand(2, 16, 16)
    outline = torch.zeros(2, 16, 16)
    outline[:, 4:10, 4:10] = 1
    fig = heatmap_grid_figure(
        images,
        maps,
        ["a: Dice 0.91 (pred area 0.14)", "b: Dice 0.50 (pred area 0.14)"],
        outline[:, None],
        method="seg_gradcam/decoder",
        outlines=outline,
    )
    closing(fig)
    assert [ax.get_title(loc="left") for ax in fig.axes[::3]] == [
        "a: Dice 0.91 (pred area 0.14)",
        "b: Dice 0.50 (pred area 0.14)",
    ]
    assert fig.axes[2].collections and fig.axes[5].collections  # predicted-lesion contour on each overlay
