"""The ISIC 2017 miniature, in the challenge's layout (:mod:`dermfuse_data.sources.isic2017`).

Per split (:data:`SYNTHETIC_SPLIT_SIZES`, 165 images in all, the published class imbalance of each
split, at least 5 per class) the ``_Data`` folder with JPEGs (96-128 px), their ``_superpixels.png``
and the metadata CSV (LF, ``unknown`` for missing values), the ``_Part1_GroundTruth`` folder of 0/255
PNG masks at image size and the ``_Part3_GroundTruth.csv`` (CRLF, ``0.0``/``1.0`` as published).
Melanoma and the other two classes differ in the image; seborrheic keratosis vs nevus only in age
(:data:`METADATA_ONLY_PAIRS`). Byte-identical per seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dermfuse_data.schema import SPLITS
from dermfuse_data.sources.isic2017 import (
    CLASSES,
    LABEL_COLUMNS,
    METADATA_COLUMNS,
    REAL_COUNTS,
    data_dir,
    labels_csv,
    mask_dir,
    metadata_name,
)
from dermfuse_data.synthetic.files import save_image, write_csv
from dermfuse_data.synthetic.lesions import class_counts, draw_class_lesion, maybe_missing, random_size

#: seborrheic keratosis and nevus share one image distribution and differ only in
#: ``age_approximate`` (nevus 15-35, seborrheic keratosis 60-85; never ``unknown`` for these two)
METADATA_ONLY_PAIRS = ((CLASSES.index("seborrheic_keratosis"), CLASSES.index("nevus")),)
#: images per split in the miniature
SYNTHETIC_SPLIT_SIZES = {"train": 90, "val": 30, "test": 45}
_AGES = {0: range(30, 90, 5), 1: range(60, 90, 5), 2: range(15, 40, 5)}


def _superpixels(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A Part 2 style superpixel map: index of a jittered grid cell, packed into RGB (R + 256 G)."""
    h, w = size
    cells = int(rng.integers(6, 10))
    yy, xx = np.mgrid[0:h, 0:w]
    index = (yy * cells // h) * cells + (xx * cells // w)
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0], rgb[..., 1] = index % 256, index // 256
    return rgb


def write_miniature(out: Path, seed: int = 0) -> Path:
    """Write the ISIC 2017 miniature (module docstring) into ``out``; returns ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([int(seed), 2017])
    total = sum(SYNTHETIC_SPLIT_SIZES.values())
    numbers = np.sort(rng.choice(np.arange(0, 16000), total, replace=False))
    numbers = numbers[rng.permutation(total)]
    start = 0
    for split in SPLITS:
        n = SYNTHETIC_SPLIT_SIZES[split]
        counts = class_counts(n, REAL_COUNTS[split], minimum=5)
        labels = np.repeat(np.arange(len(CLASSES)), counts)[rng.permutation(n)]
        ids = [f"ISIC_{k:07d}" for k in sorted(numbers[start : start + n])]
        gt_rows, meta_rows = [], []
        for i, (image_id, label) in enumerate(zip(ids, labels), start=start):
            img_rng = np.random.default_rng([int(seed), 2017, i])
            size = random_size(img_rng, 96, 129)
            rgb, mask = draw_class_lesion(img_rng, size, int(label), len(CLASSES), METADATA_ONLY_PAIRS)
            save_image(data_dir(out, split) / f"{image_id}.jpg", rgb, quality=90)
            save_image(data_dir(out, split) / f"{image_id}_superpixels.png", _superpixels(img_rng, size))
            save_image(mask_dir(out, split) / f"{image_id}_segmentation.png", mask)
            gt_rows.append([image_id, "1.0" if label == 0 else "0.0", "1.0" if label == 1 else "0.0"])
            age = str(int(rng.choice(list(_AGES[int(label)]))))
            meta_rows.append(
                [
                    image_id,
                    maybe_missing(rng, age, 0.1 if label == 0 else 0.0, "unknown"),
                    maybe_missing(rng, str(rng.choice(["female", "male"])), 0.1, "unknown"),
                ]
            )
        start += n
        write_csv(labels_csv(out, split), LABEL_COLUMNS, gt_rows)
        write_csv(data_dir(out, split) / metadata_name(split), METADATA_COLUMNS, meta_rows, line_end="\n")
    return out
