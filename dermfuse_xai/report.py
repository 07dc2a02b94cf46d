"""What an explanation run found (:class:`ExplainReport`) and how it is written into a folder (:func:`write_report`).

* ``<map>.png``: one row per image: image | mask | heatmap overlay, predicted and true class
  (segmentation nets: the predicted lesion's Dice against the mask, and its outline on the overlay);
* ``clinical_features.png``: mean attribution per clinical feature, one panel per feature method;
* ``scores.json``: settings, conventions, per-image scores, per-map means, feature attributions;
* ``scores.csv`` (one row per image and map), ``scores_mean.csv`` (one row per map) and
  ``feature_attributions.csv`` (one row per image, method and clinical feature).
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dermfuse_xai import methods
from dermfuse_xai.figures import save_feature_bars, save_heatmap_grid
from dermfuse_xai.scoring import SCORE_CONVENTIONS, SCORE_KEYS
from dermfuse_xai.targets import ClassificationTargets, SegmentationTargets

ROW_COLUMNS = {"classification": list(ClassificationTargets.columns), "segmentation": list(SegmentationTargets.columns)}


def conventions() -> dict[str, str]:
    """How to read every number: the target, each registered method's ``convention``, the feature sign, the scores."""
    return {
        "target": "maps and attributions explain the class given by settings.target ('pred' = the predicted class)",
        **{m.name: m.convention for m in methods.REGISTRY},
        "feature_sign": "> 0: the feature's value raises f (target probability or logit) relative to the baseline",
        **SCORE_CONVENTIONS,
    }


@dataclass
class ExplainReport:
    """What :func:`dermfuse_xai.explain.explain_batches` found (JSON-ready apart from the figure tensors)."""

    methods: list[str]
    map_names: list[str]
    rows: list[dict[str, Any]]
    means: dict[str, dict[str, float]]
    features: dict[str, dict[str, Any]]
    settings: dict[str, Any]
    class_names: list[str]
    figures: dict[str, Any] = field(default_factory=dict, repr=False)
    task: str = "classification"

    def to_json(self) -> dict[str, Any]:
        """Everything except the figure tensors."""
        return {
            "task": self.task,
            "methods": self.methods,
            "maps": self.map_names,
            "class_names": self.class_names,
            "settings": self.settings,
            "conventions": conventions(),
            "mean": self.means,
            "per_image": self.rows,
            "feature_attributions": self.features,
        }


def write_report(
    report: ExplainReport,
    out_dir: str | Path,
    extra: Mapping[str, Any] | None = None,
    to_rgb: Callable[[torch.Tensor], np.ndarray] | None = None,
) -> dict[str, Path]:
    """Write figures, ``scores.json``, ``scores.csv``, ``scores_mean.csv`` and ``feature_attributions.csv``.

    ``extra`` is merged into ``scores.json`` (e.g. checkpoint path, run folder, split). ``to_rgb`` turns a
    normalised ``(3, H, W)`` image into ``(H, W, 3)`` floats in [0, 1] for the figures (the runner passes
    ``dermfuse_data.transforms.denormalise``; default :func:`dermfuse_xai.figures.stretch_to_unit`).
    Returns the written paths by kind.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    fig = report.figures
    for map_name, maps in fig.get("maps", {}).items():
        written[f"figure:{map_name}"] = save_heatmap_grid(
            out / f"{_file_safe(map_name)}.png",
            fig["image"],
            maps,
            fig["title"],
            fig.get("mask"),
            method=map_name,
            captions=fig.get("captions", {}).get(map_name),
            outlines=fig.get("outline"),
            to_rgb=to_rgb,
        )
    if fig.get("features"):
        written["figure:features"] = save_feature_bars(out / "clinical_features.png", fig["features"])
    payload = {**(dict(extra) if extra else {}), **report.to_json()}
    written["json"] = out / "scores.json"
    written["json"].write_text(json.dumps(_json_safe(payload), indent=2))
    written["csv"] = _write_csv(out / "scores.csv", [*ROW_COLUMNS[report.task], "map", *SCORE_KEYS], report.rows)
    mean_rows = [{"map": k, **v} for k, v in report.means.items()]
    mean_cols = ["map", "n_images", *SCORE_KEYS, "energy_above_chance"]
    written["csv_mean"] = _write_csv(out / "scores_mean.csv", mean_cols, mean_rows)
    feat_rows = [
        {"sample_id": sid, "method": method, "feature": name, "value": value}
        for method, entry in report.features.items()
        for sid, values in entry["per_image"].items()
        for name, value in zip(entry["names"], values, strict=True)
    ]
    written["csv_features"] = _write_csv(
        out / "feature_attributions.csv", ["sample_id", "method", "feature", "value"], feat_rows
    )
    return written


def _file_safe(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.-]+", "-", name).strip("-")


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _json_safe(value: Any) -> Any:
    """NaN/inf -> None (strict JSON), tuples -> lists, Paths -> str."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
