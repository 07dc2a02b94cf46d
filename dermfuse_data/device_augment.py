"""The device backend of :mod:`dermfuse_data.augment`: a whole uint8 batch augmented on the GPU with
per-sample randomness (kornia), then normalised.

Workers then only index the memory-mapped cache and collate uint8 (a quarter of float32's bytes);
:meth:`DeviceBatchTransform.__call__` runs in the DataModule's ``on_after_batch_transfer``. kornia draws
every parameter per sample (``same_on_batch=False``) from the same ranges as the CPU backend, with two
documented differences: colour jitter's random order of the four adjustments is drawn once per batch
(per sample on the CPU), and the affine translation is continuous (torchvision rounds it to whole pixels).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import kornia.augmentation as K
import torch
from kornia.enhance import normalize

from dermfuse_data.augment import AugmentStep, parse_augment
from dermfuse_data.transforms import IMAGENET_MEAN, IMAGENET_STD

#: kornia draws ``times`` uniformly and rounds it: (-1.5, 2.5) gives -1, 0, 1, 2 quarter turns with 1/4 each
QUARTER_TURNS = (-1.5, 2.5)


def device_step(step: AugmentStep, size: tuple[int, int]) -> list[K.AugmentationBase2D]:
    """The kornia augmentations of one recipe step, per-sample parameters, for (H, W) = ``size`` batches."""
    q = step.params
    if step.name == "flip":
        flips = [K.RandomHorizontalFlip(p=q["p"])] if q["horizontal"] else []
        return flips + ([K.RandomVerticalFlip(p=q["p"])] if q["vertical"] else [])
    if step.name == "rotate90":
        return [K.RandomRotation90(times=QUARTER_TURNS, p=1.0)]
    if step.name == "rotate":
        return [K.RandomRotation(q["degrees"], p=1.0)]
    if step.name == "affine":
        translate = tuple(q["translate"]) if q["translate"] is not None else None
        return [K.RandomAffine(q["degrees"], translate=translate, scale=tuple(q["scale"]), shear=q["shear"], p=q["p"])]
    if step.name == "color_jitter":
        return [K.ColorJitter(q["brightness"], q["contrast"], q["saturation"], q["hue"], p=q["p"])]
    if step.name == "random_resized_crop":
        return [K.RandomResizedCrop(size, scale=tuple(q["scale"]), ratio=tuple(q["ratio"]), p=1.0)]
    raise ValueError(f"no device augmentation for step {step.name!r}")


class DeviceBatchTransform:
    """uint8 batch -> float, the recipe's augmentation (training only), ImageNet normalisation; masks follow.

    Args:
        augment: a preset or list of steps (:func:`~dermfuse_data.augment.parse_augment`).
        size: (H, W) of the batches (the cache's image size).
    """

    def __init__(self, augment: str | Sequence[Mapping[str, Any]] | None, size: tuple[int, int]):
        self.steps = parse_augment(augment)
        augs = [aug for step in self.steps for aug in device_step(step, size)]
        self.image_only = K.AugmentationSequential(*augs, data_keys=["input"]) if augs else None
        self.with_mask = K.AugmentationSequential(*augs, data_keys=["input", "mask"]) if augs else None
        self.mean, self.std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)

    def __call__(self, batch: dict, train: bool) -> dict:
        """The batch with ``image`` (B,3,H,W) float normalised and ``mask`` (B,1,H,W) float 0/1, on their device."""
        image = batch["image"]
        if image.dtype != torch.uint8:  # already transformed (the CPU backend)
            return batch
        out = dict(batch)
        image = image.float().div_(255.0)
        mask = batch.get("mask")
        mask = mask.float() if mask is not None else None
        if train and self.steps:
            if mask is not None:
                image, mask = self.with_mask(image, mask)
            else:
                image = self.image_only(image)
        out["image"] = normalize(image, self.mean.to(image.device), self.std.to(image.device))
        if mask is not None:
            out["mask"] = mask
        return out
