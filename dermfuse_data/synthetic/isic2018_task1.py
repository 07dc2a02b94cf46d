"""The ISIC 2018 Task 1 miniature, in the challenge's layout (:mod:`dermfuse_data.sources.isic2018_task1`).

Per split (:data:`SYNTHETIC_SPLIT_SIZES`, 110 images) the ``_Input`` folder of JPEGs (96-128 px) and
the ``_GroundTruth`` folder of 0/255 PNG masks at image size, each with ``LICENSE.txt`` and
``ATTRIBUTION.txt`` as in the release. Lesions vary over all drawing styles (one class).
Byte-identical per seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dermfuse_data.schema import SPLITS
from dermfuse_data.sources.isic2018_task1 import IMAGE_SUFFIX, MASK_SUFFIX, ground_truth_dir, input_dir
from dermfuse_data.synthetic.files import save_image
from dermfuse_data.synthetic.lesions import STYLES, draw_lesion, random_size

SYNTHETIC_SPLIT_SIZES = {"train": 60, "val": 20, "test": 30}
#: lesion looks drawn in the miniature (all are the one class ``lesion``: variety for segmentation)
SYNTHETIC_STYLES = len(STYLES)
_LICENSE = (
    "This ISIC 2018 Task 1 stand-in is SYNTHETIC (dermfuse miniature). The real data is "
    "licensed CC-BY-NC by the International Skin Imaging Collaboration.\n"
)
_ATTRIBUTION = "Synthetic lesions drawn by dermfuse_data.synthetic.draw_lesion; no real patient data.\n"


def write_miniature(out: Path, seed: int = 0) -> Path:
    """Write the ISIC 2018 Task 1 miniature (module docstring) into ``out``; returns ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([int(seed), 2018])
    total = sum(SYNTHETIC_SPLIT_SIZES.values())
    numbers = rng.choice(np.arange(0, 17000), total, replace=False)
    start = 0
    for split in SPLITS:
        n = SYNTHETIC_SPLIT_SIZES[split]
        for folder in (input_dir(out, split), ground_truth_dir(out, split)):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "LICENSE.txt").write_text(_LICENSE)
            (folder / "ATTRIBUTION.txt").write_text(_ATTRIBUTION)
        for i, number in enumerate(numbers[start : start + n], start=start):
            img_rng = np.random.default_rng([int(seed), 2018, i])
            size = random_size(img_rng, 96, 129)
            rgb, mask = draw_lesion(img_rng, size, int(img_rng.integers(SYNTHETIC_STYLES)), SYNTHETIC_STYLES)
            save_image(input_dir(out, split) / f"ISIC_{number:07d}{IMAGE_SUFFIX}", rgb, quality=90)
            save_image(ground_truth_dir(out, split) / f"ISIC_{number:07d}{MASK_SUFFIX}", mask)
        start += n
    return out
