"""The HAM10000 synthetic miniature, in the publisher's layout (:mod:`dermfuse_data.sources.ham10000`).

``HAM10000_metadata.csv`` is the 8-column release (CRLF, ages as ``80``, missing age empty, missing
sex/localization ``unknown``) and the JPEGs (about 112-128 x 84-96 px, landscape like the real
600x450) go to ``HAM10000_images_part_1/`` or ``_part_2/`` by id number as in the release. All seven
classes with the published imbalance (at least 10 images each), 1-4 images per ``lesion_id``;
``dx_type`` and ``dataset`` follow the published per-class proportions (so they leak as in the real
file). Each class has its own lesion style (:func:`~dermfuse_data.synthetic.lesions.draw_lesion`)
except bkl vs df, which differ only in ``age`` (:data:`METADATA_ONLY_PAIRS`). Byte-identical for
the same seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dermfuse_data.sources.ham10000 import CLASSES, COLUMNS, IMAGE_FOLDERS, METADATA_FILE, PART_1_LAST
from dermfuse_data.synthetic.files import save_image, write_csv
from dermfuse_data.synthetic.lesions import class_counts, draw_class_lesion, maybe_missing

#: (bkl, df) share one image distribution and differ only in ``age`` (df <= 45, bkl >= 60, never
#: missing for these two classes)
METADATA_ONLY_PAIRS = ((CLASSES.index("bkl"), CLASSES.index("df")),)
SYNTHETIC_IMAGES = 150
#: published class frequencies (real metadata), used for the miniature's imbalance
_REAL_COUNTS = {"akiec": 327, "bcc": 514, "bkl": 1099, "df": 115, "mel": 1113, "nv": 6705, "vasc": 142}
_AGE_RANGE = {
    "akiec": (50, 85),
    "bcc": (45, 85),
    "bkl": (60, 85),
    "df": (20, 45),
    "mel": (35, 85),
    "nv": (15, 60),
    "vasc": (10, 80),
}
_LOCALIZATIONS = {
    "akiec": ("face", "scalp", "upper extremity", "ear", "neck", "hand"),
    "bcc": ("back", "face", "trunk", "chest", "neck", "lower extremity"),
    "bkl": ("face", "back", "trunk", "chest", "upper extremity", "lower extremity"),
    "df": ("lower extremity", "upper extremity", "trunk"),
    "mel": ("back", "lower extremity", "upper extremity", "trunk", "face", "chest", "abdomen"),
    "nv": ("back", "lower extremity", "trunk", "abdomen", "upper extremity", "chest", "foot", "genital", "acral"),
    "vasc": ("trunk", "lower extremity", "abdomen", "face", "back"),
}
#: how each class was confirmed (published proportions, rounded)
_DX_TYPE = {
    "akiec": {"histo": 1.0},
    "bcc": {"histo": 1.0},
    "mel": {"histo": 1.0},
    "bkl": {"histo": 0.7, "consensus": 0.24, "confocal": 0.06},
    "df": {"histo": 0.48, "consensus": 0.52},
    "nv": {"follow_up": 0.55, "histo": 0.37, "consensus": 0.08},
    "vasc": {"histo": 0.47, "consensus": 0.53},
}
#: acquisition cohort of non-follow-up images per class (follow_up -> vidir_molemax)
_COHORT = {
    "akiec": {"rosendahl": 0.9, "vidir_modern": 0.1},
    "bcc": {"rosendahl": 0.58, "vidir_modern": 0.41, "vienna_dias": 0.01},
    "bkl": {"rosendahl": 0.45, "vidir_modern": 0.43, "vidir_molemax": 0.11, "vienna_dias": 0.01},
    "df": {"rosendahl": 0.26, "vidir_modern": 0.44, "vidir_molemax": 0.26, "vienna_dias": 0.04},
    "mel": {"rosendahl": 0.31, "vidir_modern": 0.61, "vidir_molemax": 0.02, "vienna_dias": 0.06},
    "nv": {"rosendahl": 0.27, "vidir_modern": 0.61, "vidir_molemax": 0.01, "vienna_dias": 0.11},
    "vasc": {"rosendahl": 0.02, "vidir_modern": 0.58, "vidir_molemax": 0.38, "vienna_dias": 0.02},
}


def _pick(rng: np.random.Generator, probabilities: dict[str, float]) -> str:
    names = list(probabilities)
    p = np.asarray([probabilities[n] for n in names], float)
    return str(rng.choice(names, p=p / p.sum()))


def _synthetic_rows(rng: np.random.Generator, n_images: int) -> list[dict[str, str]]:
    """Metadata rows (8-column release) with the published imbalance, 1-4 images per lesion."""
    counts = class_counts(n_images, [_REAL_COUNTS[c] for c in CLASSES], minimum=10)
    lesions: list[tuple[str, int]] = []
    for name, count in zip(CLASSES, counts):
        left = count
        while left > 0:
            k = min(left, int(rng.choice([1, 2, 3, 4], p=[0.5, 0.3, 0.15, 0.05])))
            lesions.append((name, k))
            left -= k
    lesion_numbers = rng.choice(np.arange(0, 7800), len(lesions), replace=False)
    image_numbers = rng.choice(np.arange(24306, 34321), n_images, replace=False)
    rows, ii = [], 0
    for (name, k), number in zip(lesions, lesion_numbers):
        lo, hi = _AGE_RANGE[name]
        age = str(5 * int(rng.integers(lo // 5, hi // 5 + 1)))
        paired = any(CLASSES.index(name) in pair for pair in METADATA_ONLY_PAIRS)
        dx_type = _pick(rng, _DX_TYPE[name])
        lesion = {
            "lesion_id": f"HAM_{number:07d}",
            "dx": name,
            "dx_type": dx_type,
            "age": age if paired else maybe_missing(rng, age, 0.02),
            "sex": maybe_missing(rng, str(rng.choice(["male", "female"], p=[0.54, 0.46])), 0.02, "unknown"),
            "localization": maybe_missing(rng, str(rng.choice(_LOCALIZATIONS[name])), 0.04, "unknown"),
            "dataset": "vidir_molemax"
            if dx_type == "follow_up"
            else "vidir_modern"
            if dx_type == "confocal"
            else _pick(rng, _COHORT[name]),
        }
        for _ in range(k):
            rows.append(dict(lesion, image_id=f"ISIC_{image_numbers[ii]:07d}"))
            ii += 1
    return [rows[i] for i in rng.permutation(len(rows))]


def write_miniature(out: Path, seed: int = 0, n_images: int = SYNTHETIC_IMAGES) -> Path:
    """Write the HAM10000 miniature (module docstring) of ``n_images`` images into ``out``; returns ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([int(seed), 30])
    rows = _synthetic_rows(rng, n_images)
    for i, row in enumerate(rows):
        img_rng = np.random.default_rng([int(seed), 31, i])
        height = int(img_rng.integers(84, 97))
        rgb, _ = draw_class_lesion(
            img_rng, (height, round(height * 4 / 3)), CLASSES.index(row["dx"]), len(CLASSES), METADATA_ONLY_PAIRS
        )
        part = IMAGE_FOLDERS[0] if int(row["image_id"][5:]) <= PART_1_LAST else IMAGE_FOLDERS[1]
        save_image(out / part / f"{row['image_id']}.jpg", rgb, quality=90)
    write_csv(out / METADATA_FILE, COLUMNS, ([row[c] for c in COLUMNS] for row in rows))
    return out
