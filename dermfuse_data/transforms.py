"""Augmentation applied jointly to image and mask (torchvision ``transforms.v2``), then normalised."""

from __future__ import annotations

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_transform(train: bool, augment: str = "standard") -> v2.Compose:
    """Transform for ``(image uint8 CHW tv Image, mask tv Mask)`` pairs.

    ``augment``: ``none`` | ``light`` (flips) | ``standard`` (flips, 90-degree turns, small affine,
    colour jitter). Geometric steps move image and mask together; colour steps touch the image only.
    Evaluation transforms never augment.
    """
    steps: list = []
    if train and augment != "none":
        steps += [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]
        if augment == "standard":
            steps += [
                v2.RandomChoice([v2.RandomRotation((a, a)) for a in (0, 90, 180, 270)]),
                v2.RandomAffine(degrees=15, translate=(0.05, 0.05), scale=(0.9, 1.1)),
                v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02),
            ]
        elif augment != "light":
            raise ValueError(f"augment must be none, light or standard, not {augment!r}")
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
