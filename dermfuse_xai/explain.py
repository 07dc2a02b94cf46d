"""Explain a batch stream with every registered method that fits the net, score the maps, collect the features.

The Python API behind ``python -m dermfuse_models.runner explain``: :func:`explain_batches` runs the methods
of :data:`dermfuse_xai.methods.REGISTRY` on the first ``n`` images of any iterable of dermfuse batches
(dicts with ``image``, ``label``, and optionally ``meta``, ``mask``, ``sample_id``) and returns an
:class:`~dermfuse_xai.report.ExplainReport`; :func:`~dermfuse_xai.report.write_report` writes it.

Per chunk of a batch: the task's strategy (:mod:`dermfuse_xai.targets`) says what the maps explain, every
chosen method runs (:mod:`dermfuse_xai.methods`), the map methods run again on the re-initialised net for
the same targets, and the maps are scored (:mod:`dermfuse_xai.scoring`).

Segmentation nets (EAM-Net, DualNet's Deep-UNet: ``output_kind = "mask_logits"``; logits ``(B, 1, H, W)``)
are explained by Seg-Grad-CAM: the target is the sum of the lesion logits over the predicted lesion
(``target="pred"``; all pixels when the prediction is empty) or over the ground-truth mask
(``target="label"``); the deletion curve tracks the mean lesion probability over that region; the
randomised model is explained for the same region. Rows carry ``dice`` (predicted lesion vs mask) and
``pred_area`` instead of class names.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from dermfuse_xai.methods import check_methods, default_methods, method_named, task_of
from dermfuse_xai.methods.base import ExplanationMethod, MethodInputs, MethodResult, Task
from dermfuse_xai.model_io import LogitsModel, meta_names_of
from dermfuse_xai.report import ExplainReport
from dermfuse_xai.sanity import randomized_copy
from dermfuse_xai.scoring import caption, mean_scores, score_maps
from dermfuse_xai.settings import ExplainSettings
from dermfuse_xai.targets import BatchTargets, Chunk, targets_for


def explain_batches(
    model: nn.Module,
    batches: Iterable[Mapping[str, Any]],
    n: int = 16,
    methods: list[str] | None = None,
    class_names: list[str] | None = None,
    meta_groups: list[int] | None = None,
    meta_names: list[str] | None = None,
    device: str | torch.device = "cpu",
    settings: ExplainSettings | None = None,
    progress: bool = True,
    task: Task | None = None,
) -> ExplainReport:
    """Explain the first ``n`` images of ``batches`` with ``methods`` (default: the registry's defaults that fit).

    Args:
        model: a ``ClassificationTask`` / ``SegmentationTask`` or a dermfuse net (dict output,
            optional meta/mask inputs); segmentation nets get Seg-Grad-CAM (module doc).
        batches: dermfuse batches (e.g. a DataLoader over an evaluation split).
        n: images to explain. methods: names from :func:`~dermfuse_xai.methods.method_names`.
        class_names: names for the figures and tables (default ``"0".."K-1"``; unused for segmentation).
        meta_groups / meta_names: the DataModule's clinical feature blocks and names (feature
            methods need ``meta_groups``).
        device: where to run (batches are moved there).
        settings: :class:`ExplainSettings`. progress: show a progress bar over images.
        task: ``"classification"`` or ``"segmentation"``; default what ``protocol.is_segmentation_net`` says.
    """
    settings = settings or ExplainSettings()
    wrapper = LogitsModel(model)
    task = task_of(model, task)
    net = wrapper.net.to(device).eval()
    meta_names = list(meta_names) if meta_names else meta_names_of(net) or None
    names = default_methods(net, meta_groups, task) if methods is None else methods
    chosen = [method_named(m) for m in check_methods(net, names, meta_groups, task)]
    if not chosen:
        raise ValueError(f"no explanation method fits {type(net).__name__}; give --methods explicitly.")
    random_net = randomized_copy(net, seed=settings.seed).eval() if settings.randomization else None
    strategy = targets_for(task, settings, class_names)
    collected = _Collected(settings.max_figure_rows)
    bar = tqdm(total=n, desc="explaining", unit="img", disable=not progress)
    for chunk in _chunks(batches, n, device):
        with torch.no_grad():
            output = wrapper(chunk.image, chunk.meta, chunk.mask).float()
        targets = strategy.of(wrapper, chunk, output)
        inputs = MethodInputs(chunk.image, targets.target, chunk.meta, chunk.mask, settings, meta_groups, meta_names)
        result = _run(chosen, net, inputs)
        random_maps = _run([m for m in chosen if m.yields_maps], random_net, inputs).maps if random_net else {}
        rows = score_maps(result.maps, random_maps, chunk, targets, settings, result.notes)
        collected.add(chunk, targets, result, rows)
        bar.update(len(chunk.ids))
    bar.close()
    if collected.n_images == 0:
        raise ValueError("explain_batches got no images (empty split or loader).")
    return collected.report([m.name for m in chosen], settings, strategy.class_names, task)


def _chunks(batches: Iterable[Mapping[str, Any]], n: int, device: str | torch.device) -> Iterator[Chunk]:
    """The first ``n`` images of ``batches``, batch by batch, moved to ``device`` (float)."""
    seen = 0
    for batch in batches:
        if seen >= n:
            break
        take = min(n - seen, int(batch["image"].shape[0]))
        image, meta, mask = (
            None if batch.get(k) is None else batch[k][:take].to(device).float() for k in ("image", "meta", "mask")
        )
        labels = batch.get("label")
        ids = [str(s) for s in (batch.get("sample_id") or [seen + j for j in range(take)])[:take]]
        yield Chunk(image, meta, mask, None if labels is None else labels[:take], ids, seen)
        seen += take


def _run(chosen: list[ExplanationMethod], net: nn.Module, inputs: MethodInputs) -> MethodResult:
    """Every method of ``chosen`` on one chunk, their maps and feature scores merged (registry order)."""
    merged = MethodResult()
    for method in chosen:
        result = method.run(net, inputs)
        merged.maps.update(result.maps)
        merged.features.update(result.features)
        merged.notes.update(result.notes)
    return merged


class _Collected:
    """Rows, feature scores and figure rows gathered chunk by chunk, and the report they make."""

    def __init__(self, max_figure_rows: int) -> None:
        self.max_figure_rows = max_figure_rows
        self.n_images = 0
        self.rows: list[dict[str, Any]] = []
        self.empty_maps: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self.features: dict[str, dict[str, Any]] = {}
        self.images: list[torch.Tensor] = []
        self.masks: list[torch.Tensor | None] = []
        self.outlines: list[torch.Tensor | None] = []
        self.titles: list[str] = []
        self.maps: dict[str, list[torch.Tensor]] = {}
        self.captions: dict[str, list[str]] = {}
        self.empty: dict[str, list[bool]] = {}

    def add(
        self, chunk: Chunk, targets: BatchTargets, result: MethodResult, rows_per_image: list[list[dict[str, Any]]]
    ) -> None:
        """Keep one chunk's scored rows, feature scores and (up to ``max_figure_rows``) figure rows."""
        self.n_images += len(chunk.ids)
        for key, (names, values, extra) in result.features.items():
            entry = self.features.setdefault(
                key, {"names": list(names), "values": [], "sample_id": [], "f_input": [], "f_baseline": []}
            )
            entry["values"].append(values.float().cpu())
            entry["sample_id"] += chunk.ids
            entry["f_input"] += extra.get("f_input", [])
            entry["f_baseline"] += extra.get("f_baseline", [])
            entry.update({k: v for k, v in extra.items() if k in ("output", "baseline")})
        for j, rows in enumerate(rows_per_image):
            for row in rows:
                detail = row.pop("note_detail", None)
                if detail is not None:
                    self.empty_maps.append(
                        {"sample_id": row["sample_id"], "map": row["map"], "target": row["target"], **detail}
                    )
            self.rows += rows
            if len(self.images) >= self.max_figure_rows:
                continue
            self.ids.append(chunk.ids[j])
            self.images.append(chunk.image[j].cpu())
            self.masks.append(None if chunk.mask is None else chunk.mask[j].cpu())
            self.titles.append(targets.titles[j])
            self.outlines.append(None if targets.outlines is None else targets.outlines[j].cpu())
            for row in rows:
                self.maps.setdefault(row["map"], []).append(result.maps[row["map"]][j].detach().cpu())
                self.captions.setdefault(row["map"], []).append(caption(row))
                self.empty.setdefault(row["map"], []).append(row["empty"])

    def report(
        self, methods: list[str], settings: ExplainSettings, class_names: list[str], task: Task
    ) -> ExplainReport:
        """The :class:`ExplainReport` of everything added."""
        map_names = list(dict.fromkeys(r["map"] for r in self.rows))
        means = {name: mean_scores([r for r in self.rows if r["map"] == name]) for name in map_names}
        report = ExplainReport(
            methods=methods,
            map_names=map_names,
            rows=self.rows,
            means=means,
            features={k: _feature_summary(v) for k, v in self.features.items()},
            settings=asdict(settings),
            class_names=class_names,
            task=task,
            empty_maps=[_named_target(e, class_names, task) for e in self.empty_maps],
        )
        report.figures = {
            "id": self.ids,
            "empty": self.empty,
            "image": torch.stack(self.images),
            "mask": _stack_all(self.masks),
            "outline": _stack_all(self.outlines),
            "title": self.titles,
            "maps": {k: torch.stack(v) for k, v in self.maps.items()},
            "captions": self.captions,
            "features": {k: (v["names"], torch.cat(v["values"]).numpy()) for k, v in self.features.items()},
        }
        return report


def _named_target(entry: dict[str, Any], class_names: list[str], task: Task) -> dict[str, Any]:
    """An ``empty_maps`` entry with the method's name and, for a classifier, the explained class's name."""
    method = entry["map"].split("/")[0]
    named = {"sample_id": entry["sample_id"], "map": entry["map"], "method": method, "target": entry["target"]}
    if task == "classification":
        named["target_name"] = class_names[int(entry["target"])]
    return {**named, **{k: v for k, v in entry.items() if k not in named}}


def _stack_all(items: list[torch.Tensor | None]) -> torch.Tensor | None:
    """The items stacked, or ``None`` when any is missing."""
    return None if any(x is None for x in items) else torch.stack(items)


def _feature_summary(entry: dict[str, Any]) -> dict[str, Any]:
    """Names, mean and mean |value| per feature, values per image; for SHAP-like methods the sum check too."""
    values = torch.cat(entry["values"]).numpy()
    out = {
        "names": entry["names"],
        "mean": np.nanmean(values, 0).tolist(),
        "mean_abs": np.nanmean(np.abs(values), 0).tolist(),
        "per_image": {sid: v.tolist() for sid, v in zip(entry["sample_id"], values, strict=True)},
    }
    if entry["f_input"]:
        delta = np.asarray(entry["f_input"]) - np.asarray(entry["f_baseline"])
        out.update(
            {
                "output": entry.get("output"),
                "baseline": entry.get("baseline"),
                "output_delta": delta.tolist(),
                "attribution_sum": values.sum(1).tolist(),
            }
        )
    return out
