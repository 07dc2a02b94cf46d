"""What the maps of one batch explain, per task: the two strategies of the explain loop.

* :class:`ClassificationTargets`: the predicted class (or the label); rows carry label / prediction /
  probability, the deletion curve tracks the target probability.
* :class:`SegmentationTargets`: a region, the predicted lesion (or the ground-truth mask), whose lesion
  logits Seg-Grad-CAM sums; rows carry ``dice`` and ``pred_area``, the deletion curve tracks the mean
  lesion probability over the region, figures outline the predicted lesion.

Both turn a :class:`Chunk` and the net's output into :class:`BatchTargets`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from dermfuse_xai.methods.base import Task
from dermfuse_xai.model_io import LogitsModel
from dermfuse_xai.regions import dice, lesion_logits, mask_region, predicted_region
from dermfuse_xai.settings import ExplainSettings

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Chunk:
    """The images of one batch that are explained, on the device.

    Attributes:
        image: ``(B, 3, H, W)``; meta: ``(B, F_cols)`` or ``None``; mask: ``(B, 1, H, W)`` or ``None``.
        labels: the batch's ``label`` entries (``None`` when it has none). ids: one sample id per image.
        first: how many images were explained before this chunk (seeds the deletion orders).
    """

    image: torch.Tensor
    meta: torch.Tensor | None
    mask: torch.Tensor | None
    labels: Any
    ids: list[str]
    first: int


@dataclass
class BatchTargets:
    """What a chunk's maps explain and how its rows read.

    Attributes:
        target: ``(B,)`` classes or ``(B, H, W)`` regions (what the methods get as ``inputs.target``).
        rows: one dict per image with the columns that precede the map name and its scores.
        titles: one figure title per image. outlines: ``(B, H, W)`` predicted lesions to outline, or ``None``.
        score_fns: per image, ``(N, 3, H, W) -> (N,)`` the score its deletion curve tracks.
    """

    target: torch.Tensor
    rows: list[dict[str, Any]]
    titles: list[str]
    outlines: torch.Tensor | None
    score_fns: list[ScoreFn]


def _one_image_inputs(chunk: Chunk, j: int, k: int):
    """Image ``j``'s metadata and mask, repeated for ``k`` perturbed copies."""
    meta = None if chunk.meta is None else chunk.meta[j : j + 1].expand(k, -1)
    mask = None if chunk.mask is None else chunk.mask[j : j + 1].expand(k, -1, -1, -1)
    return meta, mask


class ClassificationTargets:
    """Targets of a classifier: the predicted class (``settings.target="pred"``) or the label."""

    task: Task = "classification"
    columns = ("sample_id", "label", "label_name", "pred", "pred_name", "prob", "target")

    def __init__(self, settings: ExplainSettings, class_names: Sequence[str] | None = None) -> None:
        self.settings = settings
        self.given_names = list(class_names or [])
        self.class_names = list(self.given_names)

    def of(self, model: LogitsModel, chunk: Chunk, output: torch.Tensor) -> BatchTargets:
        """Targets, rows and titles of ``chunk`` from the net's class logits ``output`` ``(B, K)``."""
        if output.ndim != 2:
            raise ValueError(
                f"{type(model.net).__name__} returns outputs of shape {tuple(output.shape)}, not class logits (B, K); "
                "a segmentation net is explained when it sets output_kind = 'mask_logits' "
                "(dermfuse_models.protocol) and declares seg_cam_layers()."
            )
        if chunk.labels is None:
            raise ValueError("explaining a classifier needs a 'label' in every batch (the true class of each image).")
        labels = torch.as_tensor(chunk.labels).long()
        probs = output.softmax(-1).cpu()
        preds = probs.argmax(-1)
        target = (preds if self.settings.target == "pred" else labels).to(chunk.image.device)
        names = self.class_names = self.given_names or [str(k) for k in range(probs.shape[1])]
        rows, titles = [], []
        for j, sid in enumerate(chunk.ids):
            label, pred, prob = int(labels[j]), int(preds[j]), float(probs[j, preds[j]])
            rows.append(
                {
                    "sample_id": sid,
                    "label": label,
                    "label_name": names[label],
                    "pred": pred,
                    "pred_name": names[pred],
                    "prob": prob,
                    "target": int(target[j]),
                }
            )
            titles.append(f"{sid}: pred {names[pred]} ({prob:.2f}) | true {names[label]}")
        score_fns = [self._probability(model, chunk, j, int(target[j])) for j in range(len(chunk.ids))]
        return BatchTargets(target, rows, titles, None, score_fns)

    @staticmethod
    def _probability(model: LogitsModel, chunk: Chunk, j: int, target: int) -> ScoreFn:
        """Target probability of perturbed copies of image ``j`` (its metadata and mask held fixed)."""

        def score(images: torch.Tensor) -> torch.Tensor:
            meta, mask = _one_image_inputs(chunk, j, images.shape[0])
            return model(images, meta, mask).float().softmax(-1)[:, target]

        return score


class SegmentationTargets:
    """Targets of a segmentation net: the predicted lesion (``settings.target="pred"``) or the ground-truth mask."""

    task: Task = "segmentation"
    columns = ("sample_id", "dice", "pred_area", "target")

    def __init__(self, settings: ExplainSettings, class_names: Sequence[str] | None = None) -> None:
        self.settings = settings
        self.class_names = list(class_names or [])

    def of(self, model: LogitsModel, chunk: Chunk, output: torch.Tensor) -> BatchTargets:
        """Regions, rows (Dice, predicted area) and titles of ``chunk`` from the lesion logits ``output``."""
        logits = lesion_logits(output)
        predicted = (logits.sigmoid() >= 0.5).float()
        mask = chunk.mask
        if self.settings.target == "label":
            if mask is None:
                raise ValueError("target='label' on a segmentation net needs ground-truth masks in the batches.")
            region = mask_region(mask)
        else:
            region = predicted_region(logits)
        scores = dice(predicted, mask) if mask is not None else torch.full((len(chunk.ids),), float("nan"))
        area = predicted.flatten(1).mean(1)
        rows, titles = [], []
        for j, sid in enumerate(chunk.ids):
            d, a = float(scores[j]), float(area[j])
            rows.append({"sample_id": sid, "dice": d, "pred_area": a, "target": self.settings.target})
            titles.append(
                f"{sid}: Dice {d:.2f} (pred area {a:.2f})"
                if mask is not None
                else f"{sid}: pred area {a:.2f} (no mask)"
            )
        score_fns = [self._region_probability(model, chunk, j, region[j]) for j in range(len(chunk.ids))]
        return BatchTargets(region, rows, titles, predicted, score_fns)

    @staticmethod
    def _region_probability(model: LogitsModel, chunk: Chunk, j: int, region: torch.Tensor) -> ScoreFn:
        """Mean lesion probability over ``region`` (H, W) of perturbed copies of image ``j``."""
        weights = region.float() / region.float().sum().clamp_min(1)

        def score(images: torch.Tensor) -> torch.Tensor:
            meta, mask = _one_image_inputs(chunk, j, images.shape[0])
            prob = lesion_logits(model(images, meta, mask).float()).sigmoid()
            return (prob * weights.to(prob)).flatten(1).sum(1)

        return score


def targets_for(
    task: Task, settings: ExplainSettings, class_names: Sequence[str] | None = None
) -> ClassificationTargets | SegmentationTargets:
    """The strategy of ``task``."""
    return (SegmentationTargets if task == "segmentation" else ClassificationTargets)(settings, class_names)
