"""The segmentation preview: a prediction colour that contrasts with real lesions, the predicted and true outlines,
a false-positive / false-negative view, and a caption naming the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import rgb_to_hsv, to_rgb, to_rgba

from dermfuse_models.figure_style import SYNTHETIC_MARK, FigureContext
from dermfuse_models.runner import figures

REAL_ISIC = Path(__file__).resolve().parents[3] / "shared" / "real_images" / "isic2018_task1"


def _hue_gap(a: np.ndarray, b: np.ndarray) -> float:
    gap = abs(float(rgb_to_hsv(a)[0]) - float(rgb_to_hsv(b)[0])) * 360
    return min(gap, 360 - gap)


def test_prediction_colour_is_opposite_the_hue_of_real_lesions():
    if not REAL_ISIC.is_dir():
        pytest.skip("../shared/real_images is absent (only the developers' checkout has it)")
    from PIL import Image

    masks = sorted((REAL_ISIC / "ISIC2018_Task1_Training_GroundTruth").glob("*_segmentation.png"))
    assert len(masks) >= 10
    for mask_path in masks:
        image = REAL_ISIC / "ISIC2018_Task1-2_Training_Input" / mask_path.name.replace("_segmentation.png", ".jpg")
        lesion = np.asarray(Image.open(image).convert("RGB"))[np.asarray(Image.open(mask_path)) > 127].mean(0) / 255
        assert _hue_gap(lesion, np.array(to_rgb(figures.PRED_COLOUR))) > 150, mask_path.name
        assert _hue_gap(lesion, np.array(to_rgb("#ff7f0e"))) < 30  # the former orange overlay: the lesion's own hue


def test_error_overlay_colours_true_false_positive_and_negative_pixels():
    pred = np.array([[1, 1, 0, 0]], dtype=bool)
    truth = np.array([[1, 0, 1, 0]], dtype=float)
    rgba = figures.error_overlay(pred, truth, alpha=0.8)
    colours = figures.ERROR_COLOURS
    np.testing.assert_allclose(rgba[0, 0], to_rgba(colours["true positive"], 0.8))
    np.testing.assert_allclose(rgba[0, 1], to_rgba(colours["false positive"], 0.8))
    np.testing.assert_allclose(rgba[0, 2], to_rgba(colours["false negative"], 0.8))
    assert rgba[0, 3, 3] == 0  # background in both: transparent
    assert len(set(colours.values()) | {figures.PRED_COLOUR}) == 4


def test_figure_draws_both_outlines_the_error_view_and_the_caption(tmp_path):
    yy, xx = np.mgrid[:32, :32]
    truth = ((yy - 16) ** 2 + (xx - 16) ** 2 < 64).astype(float)
    pred = (yy - 18) ** 2 + (xx - 16) ** 2 < 64
    image = np.full((32, 32, 3), 0.6)
    rows = [(image, truth, pred, "ISIC_0000006_a_very_long_identifier_from_a_publisher"), (image, None, pred, "b")]
    context = FigureContext("isic2018_task1", "test", "eamnet/run1", "best.ckpt", synthetic=True)
    assert figures.write_segmentation_figure(rows, tmp_path / "f" / "s.png", context).stat().st_size > 5000
    fig = figures.segmentation_figure(rows, context)
    axes = np.array(fig.axes).reshape(2, 3)
    image_ax, pred_ax, error_ax = axes[0]
    assert len(image_ax.get_title(loc="left")) <= 26 and "…" in image_ax.get_title(loc="left")
    outlines = [c for c in pred_ax.collections if hasattr(c, "levels")]
    assert len(outlines) == 2  # the predicted outline and the true outline
    dice = 2 * (pred & (truth > 0)).sum() / (pred.sum() + truth.sum())
    assert error_ax.get_title() == f"errors (Dice {dice:.2f})" and len(error_ax.images) == 2
    assert axes[1, 2].get_title() == "errors: no true mask"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"predicted lesion", "true outline", "false positive", "false negative"} <= set(legend)
    title = fig._suptitle.get_text()
    assert "isic2018_task1 · test split · run eamnet/run1" in title and SYNTHETIC_MARK in title
