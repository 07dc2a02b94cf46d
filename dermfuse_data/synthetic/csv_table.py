"""The miniature of the ``csv`` source (:mod:`dermfuse_data.sources.csv_table`): a user's own table.

``samples.csv`` (LF line ends, one row per image: ``image_id, image, diagnosis, patient, mask, age, sex,
site, biopsy``), ``samples.yaml`` declaring those columns, JPEGs and PNGs (96-128 px) in
``images/`` and 0/255 PNG masks at image size in ``masks/``. Three classes with 1-3 images per
patient; nevus and keratosis share one lesion style and differ only in ``site`` (keratosis always
on the face, nevus never: :data:`METADATA_ONLY_PAIRS`); ``biopsy`` is ``yes`` for every melanoma
(declared leaky). Byte-identical for the same seed (the spec does not depend on it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dermfuse_data.sources.csv_table import DEFAULT_SPEC, DEFAULT_TABLE
from dermfuse_data.synthetic.files import save_image, write_csv
from dermfuse_data.synthetic.lesions import class_counts, draw_class_lesion, maybe_missing, random_size

CLASSES = ("nevus", "melanoma", "keratosis")
METADATA_ONLY_PAIRS = ((CLASSES.index("nevus"), CLASSES.index("keratosis")),)
SYNTHETIC_IMAGES = 72
COLUMNS = ("image_id", "image", "diagnosis", "patient", "mask", "age", "sex", "site", "biopsy")
SPEC = f"""# What the columns of {DEFAULT_TABLE} are (dermfuse csv source, dermfuse_data/sources/csv_table.py)
image: image
label: diagnosis
classes: [{", ".join(CLASSES)}]
id: image_id
group: patient
mask: mask
categorical: [sex, site]
numeric: [age]
leaky: {{biopsy: "biopsies are taken of suspected melanomas: every melanoma has biopsy=yes"}}
"""
_AGE = {"nevus": (15, 50), "melanoma": (40, 85), "keratosis": (50, 90)}
_SITES = ("back", "chest", "arm", "leg")


def _rows(rng: np.random.Generator, n_images: int) -> list[dict[str, str]]:
    """Table rows: class imbalance 3:2:2, 1-3 images per patient, some metadata missing."""
    rows: list[dict[str, str]] = []
    for name, count in zip(CLASSES, class_counts(n_images, [3, 2, 2], minimum=12)):
        left = count
        while left > 0:
            k = min(left, int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2])))
            lo, hi = _AGE[name]
            patient = {
                "patient": f"P{len(rows):04d}",
                "diagnosis": name,
                "age": maybe_missing(rng, str(int(rng.integers(lo, hi))), 0.05, "NA"),
                "sex": maybe_missing(rng, str(rng.choice(["female", "male"])), 0.05),
            }
            for _ in range(k):
                site = "face" if name == "keratosis" else str(rng.choice(_SITES))
                biopsy = "yes" if name == "melanoma" else str(rng.choice(["yes", "no"], p=[0.2, 0.8]))
                rows.append(dict(patient, site=site, biopsy=biopsy))
            left -= k
    order = rng.permutation(len(rows))
    return [
        dict(rows[j], image_id=f"S{i:04d}", image=f"images/S{i:04d}.{'png' if i % 4 == 0 else 'jpg'}")
        for i, j in enumerate(order)
    ]


def write_miniature(out: Path, seed: int = 0, n_images: int = SYNTHETIC_IMAGES) -> Path:
    """Write the csv-source miniature (module docstring) of ``n_images`` images into ``out``; returns ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([int(seed), 50])
    rows = _rows(rng, n_images)
    for i, row in enumerate(rows):
        img_rng = np.random.default_rng([int(seed), 51, i])
        rgb, mask = draw_class_lesion(
            img_rng, random_size(img_rng, 96, 129), CLASSES.index(row["diagnosis"]), len(CLASSES), METADATA_ONLY_PAIRS
        )
        save_image(out / row["image"], rgb, **({} if row["image"].endswith(".png") else {"quality": 90}))
        row["mask"] = f"masks/{row['image_id']}.png"
        save_image(out / row["mask"], mask)
    write_csv(out / DEFAULT_TABLE, COLUMNS, ([row[c] for c in COLUMNS] for row in rows), line_end="\n")
    (out / DEFAULT_SPEC).write_text(SPEC)
    return out
