"""An evaluation's per-image segmentation rows hold each image's own scores."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from dermfuse_models.runner.eval_report import write_segmentation_predictions
from dermfuse_models.tasks.segmentation import METRIC_NAMES, segmentation_scores


def test_segmentation_predictions_rows_are_each_images_scores(tmp_path):
    stats = np.random.default_rng(0).integers(0, 50, (6, 4))
    stats[0] = [0, 0, 10, 0]  # empty target and prediction: every score 1
    path = write_segmentation_predictions(tmp_path, stats, {"sample_id": [f"s{i}" for i in range(6)]})
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["sample_id"] for r in rows] == [f"s{i}" for i in range(6)]
    for i, row in enumerate(rows):
        own = segmentation_scores(torch.as_tensor(stats[i : i + 1]))
        for name in METRIC_NAMES:
            assert float(row[name]) == pytest.approx(float(own[name]), abs=1e-7), (i, name)
    assert all(float(rows[0][name]) == 1.0 for name in ("dice", "iou", "precision", "sensitivity"))
