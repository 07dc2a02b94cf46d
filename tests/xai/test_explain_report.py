"""The Python API behind ``python -m dermfuse_models.runner explain``: methods picked per net, scores per image and on
average, figures and tables written with the documented keys."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from PIL import Image

from dermfuse_xai import SCORE_KEYS, ExplainSettings, explain_batches, write_report

FAST = ExplainSettings(n_samples=16, deletion_steps=5, max_figure_rows=2)


def _batches(kit, n: int = 3, batch_size: int = 2, with_mask: bool = True):
    x, masks, labels = kit.lesion_batch(n, 3, kit.SIZE, seed=11)
    meta = kit.one_hot_meta(labels, seed=11)
    for start in range(0, n, batch_size):
        sl = slice(start, start + batch_size)
        batch = {
            "image": x[sl],
            "label": labels[sl],
            "meta": meta[sl],
            "sample_id": [f"s{i}" for i in range(start, min(n, start + batch_size))],
        }
        if with_mask:
            batch["mask"] = masks[sl]
        yield batch


def _read_csv(path):
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_vitatt_report_has_every_score_figure_and_named_feature(kit, tmp_path):
    net = kit.make_net("vitatt")
    report = explain_batches(
        net,
        _batches(kit),
        n=3,
        class_names=["a", "b", "c"],
        meta_groups=kit.GROUPS,
        meta_names=kit.NAMES,
        settings=FAST,
        progress=False,
    )
    assert report.methods == ["vit_gradcam", "relevancy", "rollout", "kernel_shap", "lime"]
    assert report.map_names == ["vit_gradcam/last_block", "relevancy", "rollout"]
    assert len(report.rows) == 3 * 3  # one row per image and heatmap, across the batch boundary
    for row in report.rows:
        assert set(SCORE_KEYS) <= set(row)
        for key in SCORE_KEYS:
            assert math.isfinite(row[key]), key  # masks given: localisation is scored too
        assert 0.0 <= row["energy_in_mask"] <= 1.0 and row["pointing_hit"] in (0.0, 1.0)
        assert row["label_name"] in ("a", "b", "c") and row["pred_name"] in ("a", "b", "c")
    assert report.means["relevancy"]["n_images"] == 3
    assert "energy_above_chance" in report.means["relevancy"]
    assert set(report.features) == {"relevancy", "rollout", "kernel_shap", "lime"}
    shap = report.features["kernel_shap"]
    assert shap["names"] == kit.NAMES and set(shap["per_image"]) == {"s0", "s1", "s2"}
    assert shap["output"] == "probability" and shap["baseline"] == "missing"
    assert shap["attribution_sum"] == pytest.approx(shap["output_delta"], abs=1e-3)

    written = write_report(report, tmp_path / "explain", extra={"checkpoint": "x.ckpt"})
    for name in (
        "explanations.png",  # one grid: a column per map (relevancy, rollout)
        "clinical_features.png",
        "scores.json",
        "scores.csv",
        "scores_mean.csv",
        "feature_attributions.csv",
    ):
        assert (tmp_path / "explain" / name).is_file(), name
    assert list(report.figures["maps"]) == ["vit_gradcam/last_block", "relevancy", "rollout"]
    with Image.open(written["figure:explanations"]) as im:
        assert im.size[0] > 300 and im.size[1] > 300
    payload = json.loads(written["json"].read_text())
    assert {
        "checkpoint",
        "methods",
        "maps",
        "settings",
        "conventions",
        "mean",
        "per_image",
        "feature_attributions",
    } <= set(payload)
    assert payload["settings"]["n_samples"] == 16 and "kernel_shap" in payload["conventions"]
    rows = _read_csv(written["csv"])
    assert len(rows) == 9 and {"sample_id", "map", "pred_name", "label_name", *SCORE_KEYS} <= set(rows[0])
    means = _read_csv(written["csv_mean"])
    assert [r["map"] for r in means] == ["vit_gradcam/last_block", "relevancy", "rollout"]
    feats = _read_csv(written["csv_features"])
    assert {r["feature"] for r in feats} == set(kit.NAMES)
    assert {r["method"] for r in feats} == {"relevancy", "rollout", "kernel_shap", "lime"}


def test_dualnet_report_names_one_map_per_branch_and_handles_no_masks(kit, fitted, tmp_path):
    net = kit.make_net("dualnet")
    report = explain_batches(
        net,
        _batches(kit, n=2),
        n=2,
        meta_groups=kit.GROUPS,
        methods=["gradcam", "cross_attention"],
        settings=ExplainSettings(deletion_steps=4, randomization=False),
        progress=False,
    )
    assert report.map_names == ["gradcam/image", "gradcam/segmented", "cross_attention/cross"]
    assert all(math.isnan(r["randomization_spearman"]) for r in report.rows)
    written = write_report(report, tmp_path)
    assert {p.name for k, p in written.items() if k.startswith("figure:")} == {"explanations.png"}
    assert list(report.figures["maps"]) == report.map_names  # one column per branch map and the attention map
    payload = json.loads(written["json"].read_text())
    assert payload["per_image"][0]["randomization_spearman"] is None  # strict JSON: NaN -> null

    mammo = fitted("mammo_xattn")  # (an unfitted net's Grad-CAM can be all zero: no deletion order, NaN)
    no_mask = explain_batches(
        mammo,
        _batches(kit, n=2, with_mask=False),
        n=2,
        meta_groups=kit.GROUPS,
        methods=["gradcam"],
        settings=ExplainSettings(deletion_steps=4, randomization=False),
        progress=False,
    )
    row = no_mask.rows[0]
    assert not row["empty"] and math.isnan(row["energy_in_mask"]) and math.isfinite(row["deletion_auc"])
    assert write_report(no_mask, tmp_path / "nomask")["figure:explanations"].is_file()


def test_explaining_nothing_or_the_wrong_method_is_a_clear_error(kit):
    net = kit.make_net("msvit")
    with pytest.raises(ValueError, match="no images"):
        explain_batches(net, [], n=2, settings=FAST, progress=False)
    with pytest.raises(ValueError, match="'lime' does not fit MSViT"):
        explain_batches(net, _batches(kit), n=2, methods=["lime"], meta_groups=kit.GROUPS, progress=False)
    batch = next(_batches(kit))
    report = explain_batches(net, [batch], n=1, settings=ExplainSettings(deletion_steps=3), progress=False)
    assert report.map_names == ["vit_gradcam/last_block", "relevancy", "rollout"] and len(report.rows) == 3
    relevancy = next(r for r in report.rows if r["map"] == "relevancy")
    assert torch.isfinite(torch.tensor(relevancy["randomization_spearman"]))
