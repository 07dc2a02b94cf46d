"""The PAD-UFES-20 synthetic miniature, in the publisher's layout (:mod:`dermfuse_data.sources.pad_ufes_20`).

``metadata.csv`` with the 26 published headers in order (LF line ends, missing cells empty or
``UNK`` as in the real file) and PNGs (88-128 px) spread over ``images/imgs_part_{1,2,3}/``; 1-2
lesions per patient, 1-3 images per lesion, all six classes with the published imbalance (at least
10 images each). The image shows BCC, MEL, ACK-or-SCC and NEV-or-SEK as four lesion styles
(:func:`~dermfuse_data.synthetic.lesions.draw_lesion`); ACK vs SCC differ only in ``bleed`` and NEV
vs SEK only in ``age`` (:data:`METADATA_ONLY_PAIRS`). Byte-identical for the same seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dermfuse_data.sources.pad_ufes_20 import CLASSES, COLUMNS, IMAGE_PARTS, METADATA_FILE
from dermfuse_data.synthetic.files import save_image, write_csv
from dermfuse_data.synthetic.lesions import class_counts, draw_class_lesion, maybe_missing, random_size

#: (ACK, SCC) share one image distribution and differ only in ``bleed`` (ACK never bleeds, SCC
#: always does); (NEV, SEK) share one and differ only in ``age`` (NEV < 40, SEK >= 60).
METADATA_ONLY_PAIRS = ((CLASSES.index("ACK"), CLASSES.index("SCC")), (CLASSES.index("NEV"), CLASSES.index("SEK")))
SYNTHETIC_IMAGES = 160
#: published class frequencies (real metadata.csv), used for the miniature's imbalance
_REAL_COUNTS = {"ACK": 730, "BCC": 845, "MEL": 52, "NEV": 244, "SCC": 192, "SEK": 235}
_AGE_RANGE = {"ACK": (45, 86), "BCC": (40, 91), "MEL": (28, 81), "NEV": (15, 40), "SCC": (50, 93), "SEK": (60, 89)}
_REGIONS = {
    "ACK": ("FACE", "FOREARM", "HAND", "NOSE", "ARM", "SCALP", "EAR"),
    "BCC": ("FACE", "NOSE", "BACK", "CHEST", "NECK", "EAR", "LIP"),
    "MEL": ("BACK", "CHEST", "ARM", "THIGH", "FACE"),
    "NEV": ("BACK", "CHEST", "ARM", "ABDOMEN", "THIGH", "FACE"),
    "SCC": ("FACE", "FOREARM", "HAND", "NOSE", "ARM", "SCALP", "EAR"),
    "SEK": ("BACK", "CHEST", "ABDOMEN", "FACE", "NECK", "THIGH"),
}
_BACKGROUNDS = ("POMERANIA", "GERMANY", "ITALY", "BRAZIL", "UNK", "NETHERLANDS", "PORTUGAL", "POLAND")
_BACKGROUND_P = (0.33, 0.29, 0.15, 0.06, 0.06, 0.04, 0.04, 0.03)
#: P(True) of the lesion questions per class (``bleed`` of ACK/SCC is fixed, see above)
_SYMPTOM_P = {
    "ACK": dict(itch=0.7, grew=0.3, hurt=0.1, changed=0.05, bleed=0.0, elevation=0.6),
    "BCC": dict(itch=0.6, grew=0.6, hurt=0.2, changed=0.1, bleed=0.55, elevation=0.8),
    "MEL": dict(itch=0.4, grew=0.6, hurt=0.1, changed=0.3, bleed=0.1, elevation=0.4),
    "NEV": dict(itch=0.2, grew=0.3, hurt=0.05, changed=0.1, bleed=0.05, elevation=0.4),
    "SCC": dict(itch=0.7, grew=0.7, hurt=0.5, changed=0.1, bleed=1.0, elevation=0.8),
    "SEK": dict(itch=0.4, grew=0.4, hurt=0.05, changed=0.05, bleed=0.05, elevation=0.6),
}
_P_UNK = dict(itch=0.01, grew=0.15, hurt=0.01, changed=0.15, bleed=0.01, elevation=0.01)
_P_BIOPSED = {"ACK": 0.25, "BCC": 1.0, "MEL": 1.0, "NEV": 0.25, "SCC": 1.0, "SEK": 0.07}


def _bool(rng: np.random.Generator, p: float) -> str:
    return "True" if rng.random() < p else "False"


def _synthetic_rows(rng: np.random.Generator, n_images: int) -> list[dict[str, str]]:
    """Metadata rows (publisher's columns) of a miniature with the published class imbalance."""
    counts = class_counts(n_images, [_REAL_COUNTS[c] for c in CLASSES], minimum=10)
    patients: list[tuple[str, list[int]]] = []  # (class, images per lesion)
    for name, count in zip(CLASSES, counts):
        left = count
        while left > 0:
            lesions = []
            for _ in range(1 + int(rng.random() < 0.4)):
                k = min(left, int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25])))
                if k:
                    lesions.append(k)
                    left -= k
            patients.append((name, lesions))
    n_lesions = sum(len(les) for _, les in patients)
    patient_ids = rng.choice(np.arange(1, 2100), len(patients), replace=False)
    lesion_ids = rng.choice(np.arange(1, 4200), n_lesions, replace=False)
    image_numbers = rng.choice(np.arange(1, 1101), n_images, replace=False)
    # as in the real file, lesion_id is not unique across patients: the last patient's first
    # lesion reuses the first patient's first lesion id
    lesion_ids[n_lesions - len(patients[-1][1])] = lesion_ids[0]

    rows, li, ii = [], 0, 0
    for (name, lesions), pid in zip(patients, patient_ids):
        complete = rng.random() > 0.35  # otherwise only the short questionnaire (empty block)
        lo, hi = _AGE_RANGE[name]
        patient = {
            "patient_id": f"PAT_{pid}",
            "age": str(int(rng.integers(lo, hi))),
            "smoke": _bool(rng, 0.13),
            "drink": _bool(rng, 0.25),
            "background_father": str(rng.choice(_BACKGROUNDS, p=_BACKGROUND_P)),
            "background_mother": str(rng.choice(_BACKGROUNDS, p=_BACKGROUND_P)),
            "pesticide": _bool(rng, 0.4),
            "gender": str(rng.choice(["FEMALE", "MALE"])),
            "skin_cancer_history": _bool(rng, 0.45),
            "cancer_history": _bool(rng, 0.5),
            "has_piped_water": _bool(rng, 0.6),
            "has_sewage_system": _bool(rng, 0.55),
            "fitspatrick": f"{int(rng.choice([1, 2, 3, 4, 5], p=[0.1, 0.55, 0.25, 0.07, 0.03]))}.0",
        }
        if not complete:
            for key in patient:
                if key not in ("patient_id", "age"):
                    patient[key] = ""
        for n_imgs in lesions:
            d1 = int(rng.integers(3, 21))
            lesion = dict(
                patient,
                lesion_id=str(lesion_ids[li]),
                diagnostic=name,
                region=str(rng.choice(_REGIONS[name])),
                diameter_1=f"{d1}.0" if complete else "",
                diameter_2=f"{int(rng.integers(2, d1 + 1))}.0" if complete else "",
                biopsed=_bool(rng, _P_BIOPSED[name]),
            )
            for q, p in _SYMPTOM_P[name].items():
                lesion[q] = _bool(rng, p)
                if not (q == "bleed" and name in ("ACK", "SCC")):
                    lesion[q] = maybe_missing(rng, lesion[q], _P_UNK[q], "UNK")
            li += 1
            for _ in range(n_imgs):
                rows.append(
                    dict(lesion, img_id=f"{lesion['patient_id']}_{lesion['lesion_id']}_{image_numbers[ii]}.png")
                )
                ii += 1
    return [rows[i] for i in rng.permutation(len(rows))]


def write_miniature(out: Path, seed: int = 0, n_images: int = SYNTHETIC_IMAGES) -> Path:
    """Write the PAD-UFES-20 miniature (module docstring) of ``n_images`` images into ``out``; returns ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([int(seed), 20])
    rows = _synthetic_rows(rng, n_images)
    parts = rng.permutation(len(rows)) % len(IMAGE_PARTS)
    for i, (row, part) in enumerate(zip(rows, parts)):
        img_rng = np.random.default_rng([int(seed), 21, i])
        rgb, _ = draw_class_lesion(
            img_rng, random_size(img_rng, 88, 129), CLASSES.index(row["diagnostic"]), len(CLASSES), METADATA_ONLY_PAIRS
        )
        save_image(out / "images" / IMAGE_PARTS[part] / row["img_id"], rgb)
    write_csv(out / METADATA_FILE, COLUMNS, ([row[c] for c in COLUMNS] for row in rows), line_end="\n")
    return out
