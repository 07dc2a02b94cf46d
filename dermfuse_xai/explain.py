"""Explain a batch stream with every method that fits the net, score the maps, write figures and tables.

The Python API behind ``python -m dermfuse_models.runner explain``: :func:`explain_batches` runs the methods
on the first ``n`` images of any iterable of dermfuse batches (dicts with ``image``, ``label``, and
optionally ``meta``, ``mask``, ``sample_id``) and returns an :class:`ExplainReport`;
:func:`write_report` writes it into a folder:

* ``<method>.png``: one row per image: image | mask | heatmap overlay, predicted and true class
  (segmentation nets: the predicted lesion's Dice against the mask, and its outline on the overlay);
* ``clinical_features.png``: mean attribution per clinical feature, one panel per feature method;
* ``scores.json``: settings, conventions, per-image scores, per-method means, feature attributions;
* ``scores.csv`` (one row per image and map), ``scores_mean.csv`` (one row per map) and
  ``feature_attributions.csv`` (one row per image, method and clinical feature).

Scores per heatmap (see :mod:`dermfuse_xai.metrics`): ``energy_in_mask``, ``pointing_hit`` and
their chance level ``mask_fraction`` (images with masks), ``deletion_auc`` /
``deletion_auc_random`` / ``deletion_auc_gain``, and ``randomization_spearman`` (the same map from
the re-initialised model, :mod:`dermfuse_xai.sanity`).

Segmentation nets (EAM-Net, DualNet's Deep-UNet: ``output_kind = "mask_logits"``; logits ``(B, 1, H, W)``)
are explained by Seg-Grad-CAM (:mod:`dermfuse_xai.segmentation`): the target is the sum of the lesion
logits over the predicted lesion (``target="pred"``; all pixels when the prediction is empty) or over
the ground-truth mask (``target="label"``); the deletion curve tracks the mean lesion probability over
that region; the randomised model is explained for the same region. Rows carry ``dice`` (predicted
lesion vs mask) and ``pred_area`` instead of class names.
"""
from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from dermfuse_xai.cross_attention import cross_attention_maps, has_cross_attention
from dermfuse_xai.feature_attribution import FEATURE_METHODS, clinical_attributions
from dermfuse_xai.figures import save_feature_bars, save_heatmap_grid
from dermfuse_xai.gradcam import grad_cam
from dermfuse_xai.metrics import deletion_scores, energy_in_mask, mask_fraction, pointing_hit, spearman
from dermfuse_xai.model_io import LogitsModel, cam_layers_of, has_attention_capture, meta_names_of
from dermfuse_xai.relevancy import attention_rollout, transformer_relevancy
from dermfuse_xai.sanity import randomized_copy
from dermfuse_xai.segmentation import (
    dice,
    is_segmentation_net,
    lesion_logits,
    predicted_region,
    seg_cam_layers_of,
    seg_grad_cam,
)

MAP_METHODS = ("gradcam", "seg_gradcam", "relevancy", "rollout", "cross_attention")
ALL_METHODS = MAP_METHODS + FEATURE_METHODS
SCORE_KEYS = ("energy_in_mask", "pointing_hit", "mask_fraction", "deletion_auc", "deletion_auc_random",
              "deletion_auc_gain", "randomization_spearman")

CONVENTIONS = {
    "target": "maps and attributions explain the class given by settings.target ('pred' = the predicted class)",
    "gradcam": "captum LayerGradCam on the target logit at each cam_layers() layer, ReLU, bilinear upsampling",
    "seg_gradcam": "Seg-Grad-CAM (Vinogradova et al. 2020): LayerGradCam of the sum of the lesion logits over the "
                   "target region (predicted lesion, all pixels if empty; 'label': the mask) at each "
                   "seg_cam_layers() layer, ReLU, bilinear upsampling; deletion tracks the mean lesion "
                   "probability over the region",
    "relevancy": "TMME (Chefer et al. 2021): R=I; R += mean_heads(clamp(dlogit/dA * A, min=0)) @ R over all "
                 "blocks; class-token row; patches -> heatmap, metadata tokens -> feature scores",
    "rollout": "attention rollout (Abnar & Zuidema 2020): R = prod rownorm(0.5 A_mean + 0.5 I); class-token row",
    "cross_attention": "fusion attention weights averaged over heads and queries = attention received per key",
    "kernel_shap": "captum KernelShap, one group per clinical feature, image fixed; sum ~= f(x) - f(baseline)",
    "shapley_sampling": "captum ShapleyValueSampling, one group per clinical feature; sum == f(x) - f(baseline)",
    "gradient_shap": "captum GradientShap (stdevs=0) summed per feature block; "
                     "sum ~= f(x) - f(baseline) in expectation",
    "lime": "captum Lime, ridge (alpha=1) on feature presence, LIME-tabular kernel; local linear effect, no sum rule",
    "feature_sign": "> 0: the feature's value raises f (target probability or logit) relative to the baseline",
    "energy_in_mask": "share of positive saliency inside the lesion mask; chance = mask_fraction",
    "pointing_hit": "1 if the map's maximum is inside the lesion mask; chance = mask_fraction; NaN for a "
                    "constant map (no maximum to point with)",
    "deletion_auc": "AUC of the target probability while the most salient pixels are replaced first (lower = "
                    "more faithful); deletion_auc_gain = random-order AUC - deletion_auc (> 0 beats random)",
    "randomization_spearman": "Spearman rank correlation with the same method's map on the re-initialised "
                              "model (Adebayo et al. 2018); near 1 = the map does not depend on the weights",
}


@dataclass
class ExplainSettings:
    """Knobs of :func:`explain_batches`.

    Attributes:
        target: explain the predicted class (``"pred"``) or the true label (``"label"``).
        deletion_steps: points of each deletion curve minus one. deletion_fill: ``"mean"`` |
            ``"blur"`` | constant (see :func:`dermfuse_xai.metrics.deletion_curve`).
        n_samples: samples per image for KernelShap / Lime / GradientShap / Shapley sampling.
        feature_output: ``"probability"`` or ``"logit"`` explained by feature methods.
        feature_baseline: ``"missing"`` or ``"zeros"`` (see :mod:`dermfuse_xai.feature_attribution`).
        randomization: also run the model-randomisation test (doubles the map cost).
        perturbation_batch: perturbed copies per forward pass (KernelShap / Lime).
        max_figure_rows: images shown per heatmap figure.
        seed: seeds sampling, random deletion orders and the re-initialised model.
    """

    target: str = "pred"
    deletion_steps: int = 20
    deletion_fill: str | float = "mean"
    n_samples: int = 200
    feature_output: str = "probability"
    feature_baseline: str = "missing"
    randomization: bool = True
    perturbation_batch: int = 64
    max_figure_rows: int = 16
    seed: int = 0


@dataclass
class ExplainReport:
    """What :func:`explain_batches` found (JSON-ready apart from the figure tensors)."""

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
        return {"task": self.task, "methods": self.methods, "maps": self.map_names, "class_names": self.class_names,
                "settings": self.settings, "conventions": CONVENTIONS, "mean": self.means,
                "per_image": self.rows, "feature_attributions": self.features}


def default_methods(net: nn.Module, meta_groups: list[int] | None = None,
                    segmentation: bool | None = None) -> list[str]:
    """The methods that fit ``net``: Grad-CAM for CNNs with cam layers, relevancy + rollout for ViTs
    with attention capture, cross-attention where the fusion keeps (spatial or feature) maps,
    KernelShap + LIME where the net takes clinical features; Seg-Grad-CAM only for segmentation nets
    (``segmentation=None``: :func:`~dermfuse_xai.segmentation.is_segmentation_net`)."""
    model = LogitsModel(net)
    seg = is_segmentation_net(net) if segmentation is None else segmentation
    if seg:
        return ["seg_gradcam"] if seg_cam_layers_of(model.net) else []
    methods = []
    if cam_layers_of(model.net):
        methods.append("gradcam")
    if has_attention_capture(model.net):
        methods += ["relevancy", "rollout"]
    if has_cross_attention(model.net):
        methods.append("cross_attention")
    if meta_groups and model.uses_meta:
        methods += ["kernel_shap", "lime"]
    return methods


def check_methods(net: nn.Module, methods: Iterable[str], meta_groups: list[int] | None,
                  segmentation: bool | None = None) -> list[str]:
    """Validate ``methods`` for ``net``; raises ``ValueError`` saying which do not fit and why."""
    methods = list(dict.fromkeys(methods))
    model = LogitsModel(net)
    seg = is_segmentation_net(net) if segmentation is None else segmentation
    if seg:
        not_seg = "it is a segmentation net (pixel logits, no class score): use seg_gradcam"
        why = {m: (False, not_seg) for m in ALL_METHODS}
        why["seg_gradcam"] = (bool(seg_cam_layers_of(model.net)),
                              "the net is not EAM-Net / Deep-UNet and declares no seg_cam_layers()")
        if hasattr(model.net, "attention_maps"):
            why["cross_attention"] = (False, "its attention_maps are channel attention (CMAM), not spatial maps")
    else:
        why = {"gradcam": (bool(cam_layers_of(model.net)), "the net declares no cam_layers() and is not a timm CNN"),
               "seg_gradcam": (False, "it is a classifier: Seg-Grad-CAM explains segmentation nets (use gradcam)"),
               "relevancy": (has_attention_capture(model.net), "the net has no attention capture API"),
               "rollout": (has_attention_capture(model.net), "the net has no attention capture API"),
               "cross_attention": (has_cross_attention(model.net),
                                   "the net keeps no spatial or feature attention_maps")}
        for m in FEATURE_METHODS:
            why[m] = (bool(meta_groups) and model.uses_meta,
                      "the net uses no clinical features (meta) or the data has none")
    problems = []
    for m in methods:
        if m not in why:
            problems.append(f"{m!r} is unknown (choose from {', '.join(ALL_METHODS)})")
        elif not why[m][0]:
            problems.append(f"{m!r} does not fit {type(model.net).__name__}: {why[m][1]}")
    if problems:
        raise ValueError("cannot run the requested explanation methods: " + "; ".join(problems) + ".")
    return methods


def _maps_and_features(net: nn.Module, method: str, image: torch.Tensor, target: torch.Tensor,
                       meta: torch.Tensor | None, mask: torch.Tensor | None, settings: ExplainSettings,
                       meta_groups: list[int] | None, meta_names: list[str] | None):
    """Run one method on a batch: ``({map name: (B,H,W)}, {feature method: (names, (B,F), extra)})``."""
    maps: dict[str, torch.Tensor] = {}
    feats: dict[str, tuple[list[str], torch.Tensor, dict]] = {}
    if method == "seg_gradcam":  # target: (B, H, W) region whose lesion logits are summed
        for name, layer in seg_cam_layers_of(net).items():
            maps[f"seg_gradcam/{name}"] = seg_grad_cam(net, image, target, layer, meta=meta, mask=mask)
    elif method == "gradcam":
        shared: dict[int, list[str]] = {}  # one module under several names (shared encoders): one map
        layers = cam_layers_of(net)
        for name, layer in layers.items():
            shared.setdefault(id(layer), []).append(name)
        for names in shared.values():
            maps["gradcam/" + "+".join(names)] = grad_cam(net, image, target, layers[names[0]], meta=meta, mask=mask)
    elif method in ("relevancy", "rollout"):
        rel = (transformer_relevancy(net, image, target, meta=meta, mask=mask) if method == "relevancy"
               else attention_rollout(net, image, meta=meta, mask=mask))
        maps[method] = rel.image_map
        if rel.meta_scores is not None:
            feats[method] = (rel.meta_names, rel.meta_scores.cpu(), {})
    elif method == "cross_attention":
        for name, summary in cross_attention_maps(net, image, meta=meta, mask=mask).items():
            if summary.kind == "image":
                maps[f"cross_attention/{name}"] = summary.image_map.to(image.device)
            else:
                feats[f"cross_attention/{name}"] = (summary.names, summary.feature_scores, {})
    elif method in FEATURE_METHODS:
        attr = clinical_attributions(net, image, meta, target, meta_groups, meta_names, method=method,
                                     baseline=settings.feature_baseline, output=settings.feature_output,
                                     n_samples=settings.n_samples, mask=mask,
                                     batch_size=settings.perturbation_batch, seed=settings.seed)
        extra = {"f_input": attr.f_input.tolist(), "f_baseline": attr.f_baseline.tolist(),
                 "output": attr.output, "baseline": attr.baseline}
        feats[method] = (attr.names, attr.values, extra)
    else:
        raise ValueError(f"unknown method {method!r}")
    return maps, feats


def explain_batches(model: nn.Module, batches: Iterable[Mapping[str, Any]], n: int = 16,
                    methods: list[str] | None = None, class_names: list[str] | None = None,
                    meta_groups: list[int] | None = None, meta_names: list[str] | None = None,
                    device: str | torch.device = "cpu", settings: ExplainSettings | None = None,
                    progress: bool = True) -> ExplainReport:
    """Explain the first ``n`` images of ``batches`` with ``methods`` (default :func:`default_methods`).

    Args:
        model: a ``ClassificationTask`` / ``SegmentationTask`` or a dermfuse net (dict output,
            optional meta/mask inputs); segmentation nets get Seg-Grad-CAM (module doc).
        batches: dermfuse batches (e.g. a DataLoader over an evaluation split).
        n: images to explain. methods: subset of :data:`ALL_METHODS`.
        class_names: names for the figures and tables (default ``"0".."K-1"``; unused for segmentation).
        meta_groups / meta_names: the DataModule's clinical feature blocks and names (feature
            methods need ``meta_groups``).
        device: where to run (batches are moved there).
        settings: :class:`ExplainSettings`. progress: show a progress bar over images.
    """
    settings = settings or ExplainSettings()
    wrapper = LogitsModel(model)
    segmentation = is_segmentation_net(model)
    net = wrapper.net.to(device).eval()
    meta_names = list(meta_names) if meta_names else meta_names_of(net) or None
    if methods is None:
        methods = default_methods(net, meta_groups, segmentation=segmentation)
    methods = check_methods(net, methods, meta_groups, segmentation=segmentation)
    if not methods:
        raise ValueError(f"no explanation method fits {type(net).__name__}; give --methods explicitly.")
    random_net = randomized_copy(net, seed=settings.seed).eval() if settings.randomization else None

    rows: list[dict[str, Any]] = []
    feature_values: dict[str, dict[str, Any]] = {}
    keep: dict[str, Any] = {"image": [], "mask": [], "title": [], "maps": {}, "captions": {}, "outline": []}
    names: list[str] = list(class_names or [])
    seen = 0
    bar = tqdm(total=n, desc="explaining", unit="img", disable=not progress)
    for batch in batches:
        if seen >= n:
            break
        take = min(n - seen, int(batch["image"].shape[0]))
        image = batch["image"][:take].to(device).float()
        meta = batch["meta"][:take].to(device).float() if batch.get("meta") is not None else None
        mask = batch["mask"][:take].to(device).float() if batch.get("mask") is not None else None
        ids = [str(s) for s in (batch.get("sample_id") or [seen + j for j in range(take)])[:take]]
        with torch.no_grad():
            output = wrapper(image, meta, mask).float()
        if segmentation:
            bases, target, outlines, titles = _segmentation_targets(output, mask, settings, ids)
            score_fns = [_region_score_fn(wrapper, meta, mask, j, target[j]) for j in range(take)]
        else:
            if output.ndim != 2:
                raise ValueError(
                    f"{type(net).__name__} returns outputs of shape {tuple(output.shape)}, not class logits (B, K); "
                    "a segmentation net is explained when it sets output_kind = 'mask_logits' "
                    "(dermfuse_models.protocol) and declares seg_cam_layers().")
            labels = torch.as_tensor(batch["label"][:take]).long()
            probs = output.softmax(-1).cpu()
            preds = probs.argmax(-1)
            target = (preds if settings.target == "pred" else labels).to(device)
            names = list(class_names or [str(k) for k in range(probs.shape[1])])
            bases = [{"sample_id": ids[j], "label": int(labels[j]), "label_name": names[int(labels[j])],
                      "pred": int(preds[j]), "pred_name": names[int(preds[j])], "prob": float(probs[j, preds[j]]),
                      "target": int(target[j])} for j in range(take)]
            titles = [f"{ids[j]}: pred {names[int(preds[j])]} ({float(probs[j, preds[j]]):.2f})"
                      f" | true {names[int(labels[j])]}" for j in range(take)]
            outlines = None
            score_fns = [_score_fn(wrapper, meta, mask, j, int(target[j])) for j in range(take)]

        maps: dict[str, torch.Tensor] = {}
        for method in methods:
            m, f = _maps_and_features(net, method, image, target, meta, mask, settings, meta_groups, meta_names)
            maps.update(m)
            for key, (fnames, values, extra) in f.items():
                entry = feature_values.setdefault(key, {"names": list(fnames), "values": [], "sample_id": [],
                                                        "f_input": [], "f_baseline": []})
                entry["values"].append(values.float().cpu())
                entry["sample_id"] += ids
                entry["f_input"] += extra.get("f_input", [])
                entry["f_baseline"] += extra.get("f_baseline", [])
                entry.update({k: v for k, v in extra.items() if k in ("output", "baseline")})
        random_maps: dict[str, torch.Tensor] = {}
        if random_net is not None:  # same target (class / region) as the trained model's
            for method in methods:
                if method in MAP_METHODS:
                    random_maps.update(_maps_and_features(random_net, method, image, target, meta, mask,
                                                          settings, meta_groups, meta_names)[0])

        for j in range(take):
            for map_name, sal in maps.items():
                row = {**bases[j], "map": map_name}
                row.update({k: float("nan") for k in SCORE_KEYS})
                if mask is not None:
                    row["energy_in_mask"] = float(energy_in_mask(sal[j:j + 1], mask[j:j + 1])[0])
                    row["pointing_hit"] = float(pointing_hit(sal[j:j + 1], mask[j:j + 1])[0])
                    row["mask_fraction"] = float(mask_fraction(mask[j:j + 1])[0])
                row.update(deletion_scores(score_fns[j], image[j], sal[j], settings.deletion_steps,
                                           settings.deletion_fill, settings.seed + seen + j))
                if map_name in random_maps:
                    row["randomization_spearman"] = float(spearman(sal[j:j + 1], random_maps[map_name][j:j + 1])[0])
                rows.append(row)
            if len(keep["image"]) < settings.max_figure_rows:
                keep["image"].append(image[j].cpu())
                keep["mask"].append(None if mask is None else mask[j].cpu())
                keep["title"].append(titles[j])
                keep["outline"].append(None if outlines is None else outlines[j].cpu())
                for map_name, sal in maps.items():
                    keep["maps"].setdefault(map_name, []).append(sal[j].detach().cpu())
                    keep["captions"].setdefault(map_name, []).append(_caption(rows, ids[j], map_name))
        seen += take
        bar.update(take)
    bar.close()
    if seen == 0:
        raise ValueError("explain_batches got no images (empty split or loader).")

    map_names = list(dict.fromkeys(r["map"] for r in rows))
    means = {name: _means([r for r in rows if r["map"] == name]) for name in map_names}
    features = {}
    for key, entry in feature_values.items():
        values = torch.cat(entry["values"]).numpy()
        out = {"names": entry["names"], "mean": np.nanmean(values, 0).tolist(),
               "mean_abs": np.nanmean(np.abs(values), 0).tolist(),
               "per_image": {sid: v.tolist() for sid, v in zip(entry["sample_id"], values, strict=True)}}
        if entry["f_input"]:
            delta = np.asarray(entry["f_input"]) - np.asarray(entry["f_baseline"])
            out.update({"output": entry.get("output"), "baseline": entry.get("baseline"),
                        "output_delta": delta.tolist(), "attribution_sum": values.sum(1).tolist()})
        features[key] = out
    report = ExplainReport(methods=methods, map_names=map_names, rows=rows, means=means, features=features,
                           settings=asdict(settings), class_names=names,
                           task="segmentation" if segmentation else "classification")
    report.figures = {"image": torch.stack(keep["image"]),
                      "mask": None if any(m is None for m in keep["mask"]) else torch.stack(keep["mask"]),
                      "outline": None if any(o is None for o in keep["outline"]) else torch.stack(keep["outline"]),
                      "title": keep["title"], "maps": {k: torch.stack(v) for k, v in keep["maps"].items()},
                      "captions": keep["captions"],
                      "features": {k: (v["names"], torch.cat(v["values"]).numpy()) for k, v in feature_values.items()}}
    return report


def _segmentation_targets(output: torch.Tensor, mask: torch.Tensor | None, settings: ExplainSettings,
                          ids: list[str]):
    """Seg-Grad-CAM targets of one batch: ``(row bases, regions (B, H, W), predicted masks, figure titles)``."""
    logits = lesion_logits(output)
    predicted = (logits.sigmoid() >= 0.5).float()
    if settings.target == "label":
        if mask is None:
            raise ValueError("target='label' on a segmentation net needs ground-truth masks in the batches.")
        region = (mask[:, 0] > 0.5).float()
        region = torch.where(region.flatten(1).any(1)[:, None, None], region, torch.ones_like(region))
    else:
        region = predicted_region(logits)
    scores = dice(predicted, mask) if mask is not None else torch.full((len(ids),), float("nan"))
    area = predicted.flatten(1).mean(1)
    bases, titles = [], []
    for j, sid in enumerate(ids):
        d, a = float(scores[j]), float(area[j])
        bases.append({"sample_id": sid, "dice": d, "pred_area": a, "target": settings.target})
        titles.append(f"{sid}: Dice {d:.2f} (pred area {a:.2f})" if mask is not None
                      else f"{sid}: pred area {a:.2f} (no mask)")
    return bases, region, predicted, titles


def _region_score_fn(model: LogitsModel, meta: torch.Tensor | None, mask: torch.Tensor | None, j: int,
                     region: torch.Tensor):
    """Mean lesion probability over ``region`` (H, W) of perturbed copies of image ``j``."""
    weights = region.float() / region.float().sum().clamp_min(1)

    def score(images: torch.Tensor) -> torch.Tensor:
        k = images.shape[0]
        m = None if meta is None else meta[j:j + 1].expand(k, -1)
        mk = None if mask is None else mask[j:j + 1].expand(k, -1, -1, -1)
        prob = lesion_logits(model(images, m, mk).float()).sigmoid()
        return (prob * weights.to(prob)).flatten(1).sum(1)

    return score


def _score_fn(model: LogitsModel, meta: torch.Tensor | None, mask: torch.Tensor | None, j: int, target: int):
    """Target probability of perturbed copies of image ``j`` (its metadata and mask held fixed)."""

    def score(images: torch.Tensor) -> torch.Tensor:
        k = images.shape[0]
        m = None if meta is None else meta[j:j + 1].expand(k, -1)
        mk = None if mask is None else mask[j:j + 1].expand(k, -1, -1, -1)
        return model(images, m, mk).float().softmax(-1)[:, target]

    return score


def _caption(rows: list[dict[str, Any]], sample_id: str, map_name: str) -> str:
    """``"<map>\nin-lesion 0.63 (area 0.20), del. gain +0.12"`` for the heatmap column of a figure."""
    row = next(r for r in reversed(rows) if r["sample_id"] == sample_id and r["map"] == map_name)
    parts = []
    if math.isfinite(row["energy_in_mask"]):
        parts.append(f"in-lesion {row['energy_in_mask']:.2f} (area {row['mask_fraction']:.2f})")
    if math.isfinite(row["deletion_auc_gain"]):
        parts.append(f"del. gain {row['deletion_auc_gain']:+.2f}")
    return map_name + ("\n" + ", ".join(parts) if parts else "")


def _means(rows: list[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {"n_images": len(rows)}
    for key in SCORE_KEYS:
        vals = np.array([r[key] for r in rows], dtype=float)
        out[key] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
    if not math.isnan(out["energy_in_mask"]):
        out["energy_above_chance"] = out["energy_in_mask"] - out["mask_fraction"]
    return out


def _file_safe(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.-]+", "-", name).strip("-")


def write_report(report: ExplainReport, out_dir: str | Path, extra: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write figures, ``scores.json``, ``scores.csv``, ``scores_mean.csv`` and ``feature_attributions.csv``.

    ``extra`` is merged into ``scores.json`` (e.g. checkpoint path, run folder, split). Returns the
    written paths by kind.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    fig = report.figures
    for map_name, maps in fig.get("maps", {}).items():
        written[f"figure:{map_name}"] = save_heatmap_grid(out / f"{_file_safe(map_name)}.png", fig["image"], maps,
                                                         fig["title"], fig.get("mask"), method=map_name,
                                                         captions=fig.get("captions", {}).get(map_name),
                                                         outlines=fig.get("outline"))
    if fig.get("features"):
        written["figure:features"] = save_feature_bars(out / "clinical_features.png", fig["features"])
    payload = {**(dict(extra) if extra else {}), **report.to_json()}
    written["json"] = out / "scores.json"
    written["json"].write_text(json.dumps(_json_safe(payload), indent=2))
    columns = (["sample_id", "dice", "pred_area", "target", "map", *SCORE_KEYS] if report.task == "segmentation"
               else ["sample_id", "label", "label_name", "pred", "pred_name", "prob", "target", "map", *SCORE_KEYS])
    written["csv"] = _write_csv(out / "scores.csv", columns, report.rows)
    mean_rows = [{"map": k, **v} for k, v in report.means.items()]
    mean_cols = ["map", "n_images", *SCORE_KEYS, "energy_above_chance"]
    written["csv_mean"] = _write_csv(out / "scores_mean.csv", mean_cols, mean_rows)
    feat_rows = [{"sample_id": sid, "method": method, "feature": name, "value": value}
                 for method, entry in report.features.items()
                 for sid, values in entry["per_image"].items()
                 for name, value in zip(entry["names"], values, strict=True)]
    written["csv_features"] = _write_csv(out / "feature_attributions.csv", ["sample_id", "method", "feature", "value"],
                                         feat_rows)
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
