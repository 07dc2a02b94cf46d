"""What an explanation run found (:class:`ExplainReport`) and how it is written into a folder (:func:`write_report`).

* ``explanations.png``: one row per image: image | lesion mask (when there are masks) | one column per map,
  predicted and true class under the image (segmentation nets: the predicted lesion's Dice against the mask,
  and its outline on the maps), scores under each map, one colour bar, a legend of the scores; a map with
  nothing to show (an all-zero Grad-CAM) is drawn as "all zero" in red;
* ``clinical_features.png``: mean attribution per clinical feature, one panel per feature method;
* ``scores.json``: settings, conventions, per-image scores, per-map means, ``empty_map_counts`` and
  ``empty_maps`` (which image, map, method, layer and target class has an empty map, and why), feature
  attributions;
* ``scores.csv`` (one row per image and map, with ``empty`` and ``note``), ``scores_mean.csv`` (one row per map) and
  ``feature_attributions.csv`` (one row per image, method and clinical feature).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dermfuse_xai import methods
from dermfuse_xai.figures import save_explanation_grid, save_feature_bars
from dermfuse_xai.scoring import SCORE_CONVENTIONS, SCORE_KEYS
from dermfuse_xai.targets import ClassificationTargets, SegmentationTargets

EXPLANATIONS_PNG = "explanations.png"
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
    empty_maps: list[dict[str, Any]] = field(default_factory=list)

    def empty_counts(self) -> dict[str, str]:
        """``{map: "12 of 16"}`` for every map with all-zero (constant) images."""
        counts = {}
        for name in self.map_names:
            rows = [r for r in self.rows if r["map"] == name]
            empty = sum(bool(r.get("empty")) for r in rows)
            if empty:
                counts[name] = f"{empty} of {len(rows)}"
        return counts

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
            "empty_map_counts": self.empty_counts(),
            "empty_maps": self.empty_maps,
            "feature_attributions": self.features,
        }


def write_report(
    report: ExplainReport,
    out_dir: str | Path,
    extra: Mapping[str, Any] | None = None,
    to_rgb: Callable[[torch.Tensor], np.ndarray] | None = None,
    caption: str | None = None,
) -> dict[str, Path]:
    """Write figures, ``scores.json``, ``scores.csv``, ``scores_mean.csv`` and ``feature_attributions.csv``.

    ``extra`` is merged into ``scores.json`` (e.g. checkpoint path, run folder, split). ``to_rgb`` turns a
    normalised ``(3, H, W)`` image into ``(H, W, 3)`` floats in [0, 1] for the figures (the runner passes
    ``dermfuse_data.transforms.denormalise``; default :func:`dermfuse_xai.figures.stretch_to_unit`). ``caption``
    goes under every figure title (the runner: dataset, split, run, checkpoint, SYNTHETIC).
    Returns the written paths by kind.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    fig = report.figures
    if fig.get("maps"):
        written["figure:explanations"] = save_explanation_grid(
            out / EXPLANATIONS_PNG,
            fig["image"],
            fig["maps"],
            fig["title"],
            ids=fig.get("id"),
            masks=fig.get("mask"),
            captions=fig.get("captions"),
            empty=fig.get("empty"),
            outlines=fig.get("outline"),
            to_rgb=to_rgb,
            caption=caption,
        )
    if fig.get("features"):
        written["figure:features"] = save_feature_bars(out / "clinical_features.png", fig["features"], caption=caption)
    payload = {**(dict(extra) if extra else {}), **report.to_json()}
    written["json"] = out / "scores.json"
    written["json"].write_text(json.dumps(_json_safe(payload), indent=2))
    columns = [*ROW_COLUMNS[report.task], "map", *SCORE_KEYS, "empty", "note"]
    written["csv"] = _write_csv(out / "scores.csv", columns, report.rows)
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
