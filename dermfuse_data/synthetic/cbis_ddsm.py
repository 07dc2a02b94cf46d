"""The CBIS-DDSM miniature: TCIA's CSVs and DICOM tree (:mod:`dermfuse_data.sources.cbis_ddsm`), with
learnable toy mammograms.

Written by :func:`write_miniature`::

    <out>/{mass,calc}_case_description_{train,test}_set.csv     exact headers, CRLF, quoted
                                                                  newline in one path column
    <out>/CBIS-DDSM/<case>/<MM-DD-YYYY>-DDSM-<n>/1.000000-full mammogram images-<n>/1-1.dcm
    <out>/CBIS-DDSM/<case>_<k>/<MM-DD-YYYY>-DDSM-<n>/1.000000-ROI mask images-<n>/1-1.dcm, 1-2.dcm
                     (or the mask there and the crop in 1.000000-cropped images-<n>/1-1.dcm)

Full mammograms are 128x96 16-bit ``MONOCHROME2`` DICOMs (a breast on a dark background, density-
dependent texture, pectoral muscle in MLO views), ROI masks the same size 8-bit 0/255, crops a small
16-bit box around the abnormality. Which of ``1-1.dcm``/``1-2.dcm`` is the crop is random per
case, and the CSV numbers the files like the real CSVs (mass: crop ``000000``, mask ``000001``,
swapped for some rows; calc the other way round), so only the image size tells them apart.

Classes (``MALIGNANT`` vs ``BENIGN``/``BENIGN_WITHOUT_CALLBACK``):

* learnable from the image: malignant masses are bright spiculated irregular blobs (shape
  ``IRREGULAR``..., margins ``SPICULATED``...), benign ones smooth round/oval (``CIRCUMSCRIBED``);
  malignant calcifications are tight clusters of many fine dots and short branching lines
  (``PLEOMORPHIC``/``FINE_LINEAR_BRANCHING``), benign ones a few coarse round dots;
* only from metadata (:data:`METADATA_ONLY_RULE`): a third of the masses are drawn as the same
  lobulated, medium-contrast blob whatever their class; among them (``mass shape`` = ``LOBULATED``)
  ``mass margins`` = ``ILL_DEFINED`` means malignant and ``OBSCURED`` benign.

Patients have masses, calcifications or both; some have a mass in one official split and a
calcification in the other (as 31 real patients do), and ``assessment`` leaks the label as in the
real data. Deterministic per seed (byte-identical files).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dermfuse_data.sources.cbis_ddsm import COLUMNS, IMAGE_TREE, csv_name
from dermfuse_data.synthetic.dicom import synthetic_uid, write_dicom
from dermfuse_data.synthetic.files import write_csv
from dermfuse_data.synthetic.lesions import smooth_noise

#: full mammogram size (rows, columns)
IMAGE_SHAPE = (128, 96)
N_PATIENTS = 40
METADATA_ONLY_RULE = (
    "masses with 'mass shape' LOBULATED look alike in both classes: 'mass margins' "
    "ILL_DEFINED = MALIGNANT, OBSCURED = BENIGN / BENIGN_WITHOUT_CALLBACK"
)
_PATHOLOGY_P = {"mass": (0.45, 0.43, 0.12), "calc": (0.38, 0.34, 0.28)}  # MAL, BEN, BWC
_PATHOLOGIES = ("MALIGNANT", "BENIGN", "BENIGN_WITHOUT_CALLBACK")
_MALIGNANT_SHAPES = ("IRREGULAR", "IRREGULAR", "IRREGULAR-ARCHITECTURAL_DISTORTION")
_MALIGNANT_MARGINS = ("SPICULATED", "SPICULATED", "ILL_DEFINED-SPICULATED")
_BENIGN_SHAPES = ("ROUND", "OVAL", "OVAL", "OVAL-LYMPH_NODE")
_MALIGNANT_CALC_TYPES = (
    "PLEOMORPHIC",
    "PLEOMORPHIC",
    "FINE_LINEAR_BRANCHING",
    "PLEOMORPHIC-FINE_LINEAR_BRANCHING",
    "AMORPHOUS",
)
_MALIGNANT_DISTRIBUTIONS = ("CLUSTERED", "CLUSTERED", "LINEAR", "SEGMENTAL", "CLUSTERED-LINEAR")
_BENIGN_CALC_TYPES = (
    "ROUND_AND_REGULAR",
    "COARSE",
    "LUCENT_CENTER",
    "VASCULAR",
    "ROUND_AND_REGULAR-LUCENT_CENTER",
    "PUNCTATE",
)
_BENIGN_DISTRIBUTIONS = ("NA", "NA", "REGIONAL", "DIFFUSELY_SCATTERED", "CLUSTERED")


@dataclass
class _Finding:
    """One abnormality of one breast, drawn in each of its views."""

    kind: str
    split: str
    patient: str
    density: int
    side: str
    abnormality_id: int
    pathology: str
    style: str
    descriptors: dict[str, str]
    views: tuple[str, ...]
    roi: dict[str, dict] = field(default_factory=dict)  # view -> files of the crop and mask


# ---------------------------------------------------------------------------------------------
# planning: patients, findings, descriptors
# ---------------------------------------------------------------------------------------------
def _kinds_and_splits(rng: np.random.Generator, i: int) -> list[tuple[str, str]]:
    """Abnormality types and official split of patient ``i`` (first ones fixed to cover crossings)."""
    fixed = {
        0: [("mass", "train"), ("calc", "test")],
        1: [("calc", "train"), ("mass", "test")],
        2: [("mass", "train"), ("calc", "train")],
        3: [("mass", "test"), ("calc", "test")],
    }
    if i in fixed:
        return fixed[i]
    split = "train" if rng.random() < 0.72 else "test"
    kinds = [("mass",), ("calc",), ("mass", "calc")][int(rng.choice(3, p=[0.42, 0.42, 0.16]))]
    return [(k, split) for k in kinds]


def _descriptors(rng: np.random.Generator, kind: str, pathology: str, style: str) -> dict[str, str]:
    malignant = pathology == "MALIGNANT"
    if kind == "mass":
        if style == "ambiguous":
            shape, margins = "LOBULATED", "ILL_DEFINED" if malignant else "OBSCURED"
        elif malignant:
            shape, margins = str(rng.choice(_MALIGNANT_SHAPES)), str(rng.choice(_MALIGNANT_MARGINS))
        else:
            shape = str(rng.choice(_BENIGN_SHAPES))
            margins = "NA" if rng.random() < 0.15 else "CIRCUMSCRIBED"
        out = {"mass shape": shape, "mass margins": margins}
    else:
        types, dists = (
            (_MALIGNANT_CALC_TYPES, _MALIGNANT_DISTRIBUTIONS)
            if malignant
            else (_BENIGN_CALC_TYPES, _BENIGN_DISTRIBUTIONS)
        )
        out = {"calc type": str(rng.choice(types)), "calc distribution": str(rng.choice(dists))}
    if malignant:
        assessment = rng.choice([4, 5, 0], p=[0.5, 0.44, 0.06])
    elif pathology == "BENIGN":
        assessment = rng.choice([2, 3, 4, 0], p=[0.3, 0.25, 0.35, 0.1])
    else:
        assessment = rng.choice([2, 3, 0], p=[0.7, 0.2, 0.1])
    out["assessment"] = str(int(assessment))
    out["subtlety"] = str(int(rng.choice([1, 2, 3, 4, 5], p=[0.05, 0.1, 0.25, 0.3, 0.3])))
    return out


def _plan(rng: np.random.Generator, n_patients: int) -> list[_Finding]:
    """Every finding of the miniature (patients with masses, calcifications or both)."""
    ids = sorted(rng.choice(np.arange(1, 2100), n_patients, replace=False))
    findings = []
    for i, number in enumerate(ids):
        patient, density = f"P_{number:05d}", int(rng.choice([1, 2, 3, 4], p=[0.15, 0.4, 0.3, 0.15]))
        for kind, split in _kinds_and_splits(rng, i):
            next_id: dict[str, int] = {}
            for _ in range(1 + int(rng.random() < 0.25)):
                side = str(rng.choice(["LEFT", "RIGHT"]))
                next_id[side] = next_id.get(side, 0) + 1
                pathology = _PATHOLOGIES[int(rng.choice(3, p=_PATHOLOGY_P[kind]))]
                if kind == "mass":
                    style = (
                        "ambiguous" if rng.random() < 1 / 3 else ("spiculated" if pathology == "MALIGNANT" else "round")
                    )
                else:
                    style = "fine_cluster" if pathology == "MALIGNANT" else "coarse"
                views = ("CC", "MLO") if rng.random() < 0.9 else (str(rng.choice(["CC", "MLO"])),)
                findings.append(
                    _Finding(
                        kind,
                        split,
                        patient,
                        density,
                        side,
                        next_id[side],
                        pathology,
                        style,
                        _descriptors(rng, kind, pathology, style),
                        views,
                    )
                )
    return findings


# ---------------------------------------------------------------------------------------------
# drawing
# ---------------------------------------------------------------------------------------------
def _breast(rng: np.random.Generator, side: str, view: str, density: int) -> tuple[np.ndarray, np.ndarray]:
    """(image in [0, 1], breast region) of an empty breast; the chest wall is on ``side``'s edge."""
    h, w = IMAGE_SHAPE
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    cx = 0.0 if side == "LEFT" else w - 1.0
    cy = h * (0.5 if view == "CC" else 0.56) + rng.uniform(-4, 4)
    ry, rx = h * rng.uniform(0.38, 0.45), w * rng.uniform(0.72, 0.86)
    r = np.hypot((xx - cx) / rx, (yy - cy) / ry)
    breast = r < 1.0
    edge = np.clip((1.0 - r) / 0.08, 0.0, 1.0)
    tissue = (0.26 + 0.05 * density + 0.07 * smooth_noise(rng, h, w, 5) + 0.035 * smooth_noise(rng, h, w, 14)) * (
        1.0 - 0.25 * r
    )
    image = 0.03 + edge * tissue
    if view == "MLO":  # pectoral muscle: a bright triangle at the chest wall's top
        depth, height = w * rng.uniform(0.25, 0.35), h * rng.uniform(0.35, 0.5)
        dist = np.abs(xx - cx)
        image = image + 0.16 * ((dist / depth + yy / height) < 1.0) * edge
    return image, breast


def _place(rng: np.random.Generator, breast: np.ndarray, side: str, radius: float) -> tuple[float, float]:
    """A lesion centre well inside the breast."""
    h, w = IMAGE_SHAPE
    for _ in range(200):
        cy = rng.uniform(radius + 8, h - radius - 8)
        cx = rng.uniform(radius + 4, w * 0.6) if side == "LEFT" else rng.uniform(w * 0.4, w - radius - 4)
        iy, ix = int(cy), int(cx)
        pad = int(radius) + 2
        if breast[max(0, iy - pad) : iy + pad + 1, max(0, ix - pad) : ix + pad + 1].all():
            return cy, cx
    return h / 2, (w * 0.3 if side == "LEFT" else w * 0.7)


def _lesion(rng: np.random.Generator, style: str, cy: float, cx: float) -> tuple[np.ndarray, np.ndarray]:
    """(intensity to add, ROI mask) of one abnormality drawn in ``style`` at ``(cy, cx)``."""
    h, w = IMAGE_SHAPE
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    dy, dx = yy - cy, xx - cx
    add = np.zeros((h, w))
    if style in ("round", "spiculated", "ambiguous"):
        r = {"round": rng.uniform(5, 8), "spiculated": rng.uniform(4.5, 6.5), "ambiguous": rng.uniform(5, 7.5)}[style]
        stretch, theta = rng.uniform(0.8, 1.25), rng.uniform(0, math.pi)
        u = (dx * math.cos(theta) + dy * math.sin(theta)) / (r * stretch)
        v = (-dx * math.sin(theta) + dy * math.cos(theta)) / r
        angle, edge = np.arctan2(v, u), np.ones((h, w))
        harmonics = {"round": (0.02, (2,)), "spiculated": (0.22, (3, 4, 5, 7)), "ambiguous": (0.12, (3, 4))}[style]
        for k in harmonics[1]:
            edge += harmonics[0] * rng.uniform(0.5, 1.0) * np.cos(k * angle + rng.uniform(0, 6.3))
        rn = np.hypot(u, v) / edge
        mask = rn < 1.0
        softness, contrast = {"round": (0.12, 0.30), "spiculated": (0.2, 0.34), "ambiguous": (0.5, 0.2)}[style]
        add += contrast * np.clip((1.0 - rn) / softness + 0.5, 0.0, 1.0)
        if style == "spiculated":
            for phi in rng.uniform(0, 2 * math.pi, int(rng.integers(8, 13))):
                length = r * rng.uniform(1.8, 2.8)
                along = dx * math.cos(phi) + dy * math.sin(phi)
                across = np.abs(-dx * math.sin(phi) + dy * math.cos(phi))
                ray = (along > 0) & (along < length) & (across < 0.9)
                add += 0.22 * ray * (1.0 - along / length)
    else:
        spread = rng.uniform(5, 8) if style == "fine_cluster" else rng.uniform(8, 12)
        n = int(rng.integers(9, 15)) if style == "fine_cluster" else int(rng.integers(2, 5))
        for _ in range(n):
            py, px = cy + rng.normal(0, spread / 2.2), cx + rng.normal(0, spread / 2.2)
            size = rng.uniform(0.7, 1.1) if style == "fine_cluster" else rng.uniform(1.4, 2.2)
            dot = np.hypot(yy - py, xx - px) < size
            dot[int(np.clip(round(py), 0, h - 1)), int(np.clip(round(px), 0, w - 1))] = True
            add += (0.55 if style == "coarse" else 0.45) * dot
        if style == "fine_cluster":
            for _ in range(int(rng.integers(1, 4))):
                phi, length = rng.uniform(0, math.pi), rng.uniform(3, 6)
                py, px = cy + rng.normal(0, spread / 3), cx + rng.normal(0, spread / 3)
                along = (xx - px) * math.cos(phi) + (yy - py) * math.sin(phi)
                across = np.abs(-(xx - px) * math.sin(phi) + (yy - py) * math.cos(phi))
                add += 0.4 * ((np.abs(along) < length / 2) & (across < 0.6))
        mask = np.hypot(dy, dx) < spread + 2.0
    return add, mask


def _to_uint16(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noisy = image + rng.normal(0.0, 0.008, image.shape)
    return np.clip(np.rint(1500 + noisy * 52000), 0, 65535).astype(np.uint16)


def _crop_box(mask: np.ndarray, margin: int = 4) -> tuple[slice, slice]:
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    return (
        slice(max(0, ys.min() - margin), min(h, ys.max() + margin + 1)),
        slice(max(0, xs.min() - margin), min(w, xs.max() + margin + 1)),
    )


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
def _date_folder(rng: np.random.Generator) -> str:
    return (
        f"{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}-"
        f"{int(rng.choice([2016, 2017]))}-DDSM-{int(rng.integers(1000, 100000)):05d}"
    )


def _series_folder(description: str, rng: np.random.Generator) -> str:
    return f"1.000000-{description}-{int(rng.integers(10000, 100000)):05d}"


def _tags(case: str, side: str, view: str, description: str, study: str, series: str, number: int) -> dict:
    return dict(
        PatientID=case,
        StudyInstanceUID=study,
        SeriesInstanceUID=series,
        SeriesDescription=description,
        InstanceNumber=number,
        Laterality=side[0],
        ViewPosition=view,
        BodyPartExamined="BREAST",
    )


def _write_images(out: Path, seed: int, findings: list[_Finding], rng: np.random.Generator) -> dict[tuple, str]:
    """Draw and write every full mammogram and ROI pair; returns the CSV path of each full image.

    Fills ``finding.roi[view]`` with the study / series UIDs and file numbers the CSV lists.
    """
    tree = out / IMAGE_TREE
    images: dict[tuple, list[_Finding]] = {}
    for f in findings:
        for view in f.views:
            images.setdefault((f.kind, f.split, f.patient, f.side, view), []).append(f)
    full_paths = {}
    for n, (key, members) in enumerate(sorted(images.items())):
        kind, split, patient, side, view = key
        img_rng = np.random.default_rng([seed, 41, n])
        case = (
            f"{'Mass' if kind == 'mass' else 'Calc'}-{'Training' if split == 'train' else 'Test'}_"
            f"{patient}_{side}_{view}"
        )
        image, breast = _breast(img_rng, side, view, members[0].density)
        masks = []
        for f in members:
            radius = 14.0 if f.kind == "calc" else 12.0
            add, mask = _lesion(img_rng, f.style, *_place(img_rng, breast, side, radius))
            image = image + add
            masks.append(mask & breast if (mask & breast).any() else mask)
        pixels = _to_uint16(image, img_rng)
        study, series = synthetic_uid(seed, case, "study"), synthetic_uid(seed, case, "series")
        write_dicom(
            tree / case / _date_folder(rng) / _series_folder("full mammogram images", rng) / "1-1.dcm",
            pixels,
            uid_key=(seed, case),
            **_tags(case, side, view, "full mammogram images", study, series, 1),
        )
        full_paths[key] = f"{case}/{study}/{series}/000000.dcm"
        for f, mask in zip(members, masks):
            _write_roi(tree, seed, f, view, case, pixels, mask, rng)
    return full_paths


def _write_roi(
    tree: Path,
    seed: int,
    f: _Finding,
    view: str,
    full_case: str,
    pixels: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """The crop and mask DICOMs of one finding in one view (one or two series, random order)."""
    case = f"{full_case}_{f.abnormality_id}"
    study = synthetic_uid(seed, case, "study")
    crop = np.ascontiguousarray(pixels[_crop_box(mask)])
    mask_pixels = mask.astype(np.uint8) * 255
    date = _date_folder(rng)
    crop_first = bool(rng.random() < 0.5)
    if rng.random() < 0.6:  # one "ROI mask images" series holding both, in random order
        series = synthetic_uid(seed, case, "series")
        folder = tree / case / date / _series_folder("ROI mask images", rng)
        files = {
            "crop": (folder / ("1-1.dcm" if crop_first else "1-2.dcm"), series),
            "mask": (folder / ("1-2.dcm" if crop_first else "1-1.dcm"), series),
        }
    else:  # two series, one file each (as CBIS-DDSM ships some cases)
        mask_series, crop_series = (synthetic_uid(seed, case, "mask"), synthetic_uid(seed, case, "crop"))
        files = {
            "mask": (tree / case / date / _series_folder("ROI mask images", rng) / "1-1.dcm", mask_series),
            "crop": (tree / case / date / _series_folder("cropped images", rng) / "1-1.dcm", crop_series),
        }
    for what, array, description in (("crop", crop, "cropped images"), ("mask", mask_pixels, "ROI mask images")):
        path, series = files[what]
        write_dicom(
            path,
            array,
            uid_key=(seed, case, what),
            **_tags(case, f.side, view, description, study, series, int(path.stem.split("-")[1])),
        )
    # the CSV's numbering: mass lists the crop as 000000 and the mask as 000001 (swapped for some
    # rows), calc the other way round; the file numbers do not follow the tree's 1-1/1-2
    if files["crop"][1] != files["mask"][1]:
        numbers = {"crop": 0, "mask": 0}
    elif f.kind == "mass":
        numbers = {"crop": 1, "mask": 0} if rng.random() < 0.15 else {"crop": 0, "mask": 1}
    else:
        numbers = {"crop": 1, "mask": 0}
    f.roi[view] = {what: f"{case}/{study}/{files[what][1]}/{numbers[what]:06d}.dcm" for what in ("crop", "mask")}


def _write_csvs(out: Path, findings: list[_Finding], full_paths: dict[tuple, str]) -> None:
    """The four case-description CSVs: exact headers, CRLF, newline inside one quoted path."""
    for kind in ("mass", "calc"):
        columns = COLUMNS[kind]
        for split in ("train", "test"):
            rows = []
            for f in findings:
                if (f.kind, f.split) != (kind, split):
                    continue
                for view in f.views:
                    crop, mask = f.roi[view]["crop"], f.roi[view]["mask"]
                    values = {
                        "patient_id": f.patient,
                        columns[1]: str(f.density),
                        "left or right breast": f.side,
                        "image view": view,
                        "abnormality id": str(f.abnormality_id),
                        "abnormality type": "mass" if kind == "mass" else "calcification",
                        "pathology": f.pathology,
                        **f.descriptors,
                        "image file path": full_paths[(kind, split, f.patient, f.side, view)],
                        # the publisher's quirk: one path per row ends in a newline inside quotes
                        "cropped image file path": crop if kind == "mass" else crop + "\n",
                        "ROI mask file path": mask + "\n" if kind == "mass" else mask,
                    }
                    rows.append(((f.patient, f.side, view, f.abnormality_id), [values[c] for c in columns]))
            rows.sort(key=lambda item: item[0])
            write_csv(out / csv_name(kind, split), columns, (cells for _, cells in rows))


def write_miniature(out: Path, seed: int = 0, n_patients: int = N_PATIENTS) -> Path:
    """Write the miniature (module docstring) into ``out``; byte-identical per ``seed``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([int(seed), 40])
    findings = _plan(rng, n_patients)
    full_paths = _write_images(out, int(seed), findings, np.random.default_rng([int(seed), 42]))
    _write_csvs(out, findings, full_paths)
    return out


__all__ = ["IMAGE_SHAPE", "METADATA_ONLY_RULE", "N_PATIENTS", "write_miniature"]
