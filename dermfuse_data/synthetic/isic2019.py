"""The ISIC 2019 training-set miniature, in the publisher's layout (:mod:`dermfuse_data.sources.isic2019`).

Both CSVs with the published headers (CRLF, one-hot as ``0.0``/``1.0``, rows sorted by image id,
missing metadata empty) and JPEGs (96-128 px) in ``ISIC_2019_Training_Input/``. The eight trained
classes with the published imbalance (at least 8 images each; ``UNK`` none); ids from the three
origins (HAM10000 range with ``HAM_`` lesions, BCN20000 range with ``BCN_`` lesions of 1-3 images,
older archive ids without ``lesion_id``, most of them ``_downsampled``). DF and VASC share one lesion
style and differ only in ``anatom_site_general`` (:data:`METADATA_ONLY_PAIRS`). Byte-identical for
the same seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dermfuse_data.sources.isic2019 import (
    CLASSES,
    DOWNSAMPLED_SUFFIX,
    GROUND_TRUTH_COLUMNS,
    GROUND_TRUTH_FILE,
    IMAGE_FOLDER,
    METADATA_COLUMNS,
    METADATA_FILE,
)
from dermfuse_data.synthetic.files import save_image, write_csv
from dermfuse_data.synthetic.lesions import class_counts, draw_class_lesion, maybe_missing, random_size

#: (DF, VASC) share one image distribution and differ only in ``anatom_site_general`` (DF always
#: lower extremity, VASC never; never missing for these two classes)
METADATA_ONLY_PAIRS = ((CLASSES.index("DF"), CLASSES.index("VASC")),)
SYNTHETIC_IMAGES = 160
#: published class frequencies of the training set (UNK has none)
_REAL_COUNTS = {"MEL": 4522, "NV": 12875, "BCC": 3323, "AK": 867, "BKL": 2624, "DF": 239, "VASC": 253, "SCC": 628}
_TRAINED = tuple(c for c in CLASSES if c != "UNK")
#: where lesions come from: HAM10000 (ids 24306-34320, HAM_ lesions), BCN20000 (ids 53xxx-73xxx,
#: BCN_ lesions), the older ISIC archive (ids < 16073, no lesion_id, often _downsampled)
_ORIGIN_P = {"ham": 0.35, "bcn": 0.4, "archive": 0.25}
_ID_RANGES = {"ham": (24306, 34321), "bcn": (53000, 73255), "archive": (0, 16073)}
_SITES = (
    "anterior torso",
    "lower extremity",
    "head/neck",
    "upper extremity",
    "posterior torso",
    "palms/soles",
    "oral/genital",
    "lateral torso",
)
_SITE_P = (0.30, 0.22, 0.20, 0.13, 0.12, 0.02, 0.005, 0.005)
_AGE_RANGE = {
    "MEL": (35, 85),
    "NV": (15, 60),
    "BCC": (45, 85),
    "AK": (55, 85),
    "BKL": (45, 85),
    "DF": (20, 60),
    "VASC": (10, 80),
    "SCC": (55, 85),
}


def _site(rng: np.random.Generator, name: str) -> str:
    if name == "DF":
        return "lower extremity"
    if name == "VASC":
        return str(rng.choice(["anterior torso", "head/neck", "posterior torso", "upper extremity"]))
    return maybe_missing(rng, str(rng.choice(_SITES, p=np.asarray(_SITE_P) / sum(_SITE_P))), 0.1)


def _synthetic_rows(rng: np.random.Generator, n_images: int) -> list[dict[str, str]]:
    """Ground-truth + metadata rows: published imbalance, 1-3 images per HAM_/BCN_ lesion."""
    counts = class_counts(n_images, [_REAL_COUNTS[c] for c in _TRAINED], minimum=8)
    lesions: list[tuple[str, str, int]] = []  # (class, origin, images)
    for name, count in zip(_TRAINED, counts):
        left = count
        while left > 0:
            origin = str(rng.choice(list(_ORIGIN_P), p=list(_ORIGIN_P.values())))
            k = 1 if origin == "archive" else min(left, int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2])))
            lesions.append((name, origin, k))
            left -= k
    used: set[int] = set()
    lesion_numbers = rng.choice(np.arange(0, 12000), len(lesions), replace=False)
    rows = []
    for (name, origin, k), lesion_number in zip(lesions, lesion_numbers):
        lo, hi = _AGE_RANGE[name]
        lesion = {
            "lesion_id": {"ham": f"HAM_{lesion_number:07d}", "bcn": f"BCN_{lesion_number:07d}", "archive": ""}[origin],
            "diagnosis": name,
            "age_approx": maybe_missing(rng, str(5 * int(rng.integers(lo // 5, hi // 5 + 1))), 0.02),
            "anatom_site_general": _site(rng, name),
            "sex": maybe_missing(rng, str(rng.choice(["male", "female"])), 0.02),
        }
        for _ in range(k):
            number = int(rng.integers(*_ID_RANGES[origin]))
            while number in used:
                number = int(rng.integers(*_ID_RANGES[origin]))
            used.add(number)
            image = f"ISIC_{number:07d}"
            if origin == "archive" and rng.random() < 0.6:
                image += DOWNSAMPLED_SUFFIX
            rows.append(dict(lesion, image=image))
    # as in the release: rows sorted by image id
    rows.sort(key=lambda r: r["image"])
    return rows


def write_miniature(out: Path, seed: int = 0, n_images: int = SYNTHETIC_IMAGES) -> Path:
    """Write the ISIC 2019 miniature (module docstring) of ``n_images`` images into ``out``; returns ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([int(seed), 40])
    rows = _synthetic_rows(rng, n_images)
    for i, row in enumerate(rows):
        img_rng = np.random.default_rng([int(seed), 41, i])
        rgb, _ = draw_class_lesion(
            img_rng, random_size(img_rng, 96, 129), CLASSES.index(row["diagnosis"]), len(_TRAINED), METADATA_ONLY_PAIRS
        )
        save_image(out / IMAGE_FOLDER / f"{row['image']}.jpg", rgb, quality=90)
    write_csv(
        out / GROUND_TRUTH_FILE,
        GROUND_TRUTH_COLUMNS,
        ([row["image"]] + ["1.0" if c == row["diagnosis"] else "0.0" for c in CLASSES] for row in rows),
    )
    write_csv(out / METADATA_FILE, METADATA_COLUMNS, ([row[c] for c in METADATA_COLUMNS] for row in rows))
    return out
