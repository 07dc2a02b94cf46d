"""The CPU backend of :mod:`dermfuse_data.augment`: per-sample torchvision ``transforms.v2`` steps,
applied jointly to image and mask (masks: nearest neighbour), then normalised."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2

from dermfuse_data.augment import AugmentStep, parse_augment

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BILINEAR = InterpolationMode.BILINEAR


def _with_p(transform: v2.Transform, p: float) -> v2.Transform:
    return transform if p >= 1.0 else v2.RandomApply([transform], p=p)


def cpu_step(step: AugmentStep, size: tuple[int, int] | None = None) -> list[v2.Transform]:
    """The torchvision transforms of one recipe step (``size`` = (H, W), needed by ``random_resized_crop``)."""
    q = step.params
    if step.name == "flip":
        flips = [v2.RandomHorizontalFlip(q["p"])] if q["horizontal"] else []
        return flips + ([v2.RandomVerticalFlip(q["p"])] if q["vertical"] else [])
    if step.name == "rotate90":
        return [v2.RandomChoice([v2.RandomRotation((a, a)) for a in (0, 90, 180, 270)])]
    if step.name == "rotate":
        return [v2.RandomRotation(q["degrees"], interpolation=BILINEAR)]
    if step.name == "affine":
        affine = v2.RandomAffine(
            q["degrees"], translate=q["translate"], scale=q["scale"], shear=q["shear"], interpolation=BILINEAR
        )
        return [_with_p(affine, q["p"])]
    if step.name == "color_jitter":
        return [_with_p(v2.ColorJitter(q["brightness"], q["contrast"], q["saturation"], q["hue"]), q["p"])]
    if step.name == "random_resized_crop":
        if size is None:
            raise ValueError("random_resized_crop needs the image size: build_transform(..., size=(H, W))")
        return [v2.RandomResizedCrop(size, scale=q["scale"], ratio=q["ratio"], antialias=True)]
    raise ValueError(f"no CPU transform for augmentation step {step.name!r}")


def build_transform(
    train: bool,
    augment: str | Sequence[Mapping[str, Any]] | None = "standard",
    size: tuple[int, int] | None = None,
) -> v2.Compose:
    """Transform for ``(image uint8 CHW tv Image, mask tv Mask)`` pairs: the recipe (train only), float, normalise.

    ``augment``: a preset (``none`` | ``light`` = flips | ``standard`` = flips, 90-degree turns, small affine,
    colour jitter) or a list of steps (:func:`~dermfuse_data.augment.parse_augment`). Evaluation transforms
    never augment.
    """
    steps: list = []
    if train:
        for step in parse_augment(augment):
            steps += cpu_step(step, size)
    steps += [
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ]
    return v2.Compose(steps)


def denormalise(image: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """``(3, H, W)`` normalised tensor -> ``(H, W, 3)`` float RGB in [0, 1]: the inverse of the
    normalisation above, for figures."""
    x = image.detach().float().cpu() * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    return x.clamp(0, 1).permute(1, 2, 0).numpy()
