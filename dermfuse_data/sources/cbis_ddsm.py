"""CBIS-DDSM (Lee et al., Sci Data 2017; TCIA doi:10.7937/K9/TCIA.2016.7O02S9CY).

Scanned-film mammograms with one row per annotated abnormality (mass or calcification), BI-RADS
descriptors and biopsy-proven pathology, as TCIA ships them::

    <root>/mass_case_description_train_set.csv     1318 rows   (official train)
    <root>/mass_case_description_test_set.csv       378 rows   (official test)
    <root>/calc_case_description_train_set.csv     1546 rows
    <root>/calc_case_description_test_set.csv       326 rows
    <root>/CBIS-DDSM/<case folder>/<date>-DDSM-<n>/<series folder>/1-1.dcm   (NBIA Data Retriever)

The CSVs have CRLF line ends; their path columns hold ``<case folder>/<StudyUID>/<SeriesUID>/
00000x.dcm`` (the names of an older TCIA download) and one of them per row ends in a newline inside
quotes (stripped here). Mass CSVs spell ``breast_density``, calc CSVs ``breast density``; both become
``meta_breast_density``. Missing descriptors are written ``NA`` (kept raw; missing to the encoder).

**Finding the images.** The case folder is the first component of a CSV path:
``Mass-Training_P_00001_LEFT_CC`` holds the full mammogram, ``Mass-Training_P_00001_LEFT_CC_1`` (the
abnormality id appended) holds the abnormality's cropped image *and* its ROI mask, either as
``1-1.dcm`` and ``1-2.dcm`` of one series or as one file in each of two series. Case folders are
looked up in ``<root>/CBIS-DDSM/`` and then in ``<root>/`` (so the CSV paths taken literally, relative
to ``<root>``, work too), and every ``.dcm`` below the case folder is a candidate. Crop and mask are
told apart **by image size** read from the DICOM headers (``Rows``/``Columns``, pixels not read): the
mask has the full mammogram's size, the crop is a small box. File numbers are not used: the CSVs
swap them (mass rows list the mask as ``000001.dcm`` in 1226 of 1318 training rows and as
``000000.dcm`` in the other 92; calc rows the other way round).

**Rows, labels, splits.** One row per CSV row (abnormality), in file order (mass train, mass test,
calc train, calc test). ``sample_id`` = the abnormality's case folder name ``<case folder>_<abnormality
id>`` (unique over all four files); ``label`` 1 = ``MALIGNANT``, 0 = ``BENIGN`` or
``BENIGN_WITHOUT_CALLBACK`` (classes ``("BENIGN", "MALIGNANT")``; the raw value stays in
``meta_pathology``); ``official_split`` = ``train``/``test`` from the file name; ``group_id`` = the
patient (``P_00001``). The official split is by abnormality type, not by patient: 31 patients have
a mass in one split and a calcification in the other (13 mass-train & calc-test, 18 calc-train &
mass-test; 45 more are in both training files), see :func:`official_split_overlap`. ``check`` warns
with that count; ``make_splits(use_official=False)`` / ``use_official_split=False`` regroup them.

**Tabular features** (:data:`FEATURES`): ``breast_density`` (one-hot; the two calc-test rows with
density ``0``, outside BI-RADS 1-4, count as missing), ``mass_shape``, ``mass_margins``,
``calc_type``, ``calc_distribution`` (multi-hot over ``-``: ``IRREGULAR-ARCHITECTURAL_DISTORTION`` =
{IRREGULAR, ARCHITECTURAL_DISTORTION}; single values such as ``ROUND_AND_REGULAR`` keep their
underscores), and ``assessment`` (BI-RADS; leaks the label, refused by default). With the five
default features, fitted on the real official training rows of both abnormality types, the encoder
is **41** columns wide: density 4+1, shape 8+1, margins 5+1, calc type 14+1, distribution 5+1
(categories + missing indicator). The paper (arXiv 2508.16000) one-hot encoded the same five features
into 36 dimensions (paper: "5 Categorical Features -> One-Hot Encoding (36d)"), which is exactly our
4+8+5+14+5 = 36 categories; per its summary it kept single-label values only and set absent features
to zero (paper: "When features are absent, the associated vectors are set to zero"), whereas we split
compound values into their parts (multi-hot) and add one explicit missing indicator per feature (a mass has no calc
type, ``NA`` is common), hence 36 + 5. The raw calc types spell one category two ways
(``LUCENT_CENTER`` in 175, ``LUCENT_CENTERED`` in 44 training rows, alone or in compounds); both are
kept as written, so they are two of the 14 calc-type columns.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import pyarrow as pa

from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import build_table, sample_row
from dermfuse_data.sources.base import MISSING_TOKENS, DatasetSource, MetaFeature
from dermfuse_data.sources.publisher_files import choice_option, dataset_root, read_csv, shown

CLASSES = ("BENIGN", "MALIGNANT")
#: raw ``pathology`` value -> label index into :data:`CLASSES`
PATHOLOGY_LABELS = {"BENIGN": 0, "BENIGN_WITHOUT_CALLBACK": 0, "MALIGNANT": 1}
ABNORMALITY_TYPES = ("mass", "calc")
OFFICIAL_SPLITS = ("train", "test")
#: the 14 columns of the mass / calc case-description CSVs, in the publisher's order
_SIDE_VIEW_ID_TYPE = ("left or right breast", "image view", "abnormality id", "abnormality type")
_ASSESSMENT_TO_FILES = (
    "assessment",
    "pathology",
    "subtlety",
    "image file path",
    "cropped image file path",
    "ROI mask file path",
)
# the publisher spells the density column differently in the two files
MASS_COLUMNS = (
    "patient_id",
    "breast_density",
    *_SIDE_VIEW_ID_TYPE,
    "mass shape",
    "mass margins",
    *_ASSESSMENT_TO_FILES,
)
CALC_COLUMNS = (
    "patient_id",
    "breast density",
    *_SIDE_VIEW_ID_TYPE,
    "calc type",
    "calc distribution",
    *_ASSESSMENT_TO_FILES,
)
COLUMNS = {"mass": MASS_COLUMNS, "calc": CALC_COLUMNS}
#: the density column's two published spellings (either is accepted in either file)
DENSITY_SPELLINGS = ("breast_density", "breast density")
PATH_COLUMNS = ("image file path", "cropped image file path", "ROI mask file path")
#: ``meta_*`` columns of the table (raw header lower-cased, spaces -> ``_``), same for every option
META_COLUMNS = (
    "breast_density",
    "left_or_right_breast",
    "image_view",
    "abnormality_id",
    "abnormality_type",
    "mass_shape",
    "mass_margins",
    "calc_type",
    "calc_distribution",
    "assessment",
    "pathology",
    "subtlety",
    "image_file_path",
    "cropped_image_file_path",
    "roi_mask_file_path",
)
IMAGE_TREE = "CBIS-DDSM"
ABNORMALITY_CHOICES = ("mass", "calc", "both")
VIEW_CHOICES = ("full", "roi")
OPTIONS = {
    "abnormality": "mass | calc | both (default both): which case-description CSVs to read "
    "(both = all four files, one row per abnormality)",
    "view": "full (default) | roi: full = image_path is the full mammogram and mask_path the "
    "abnormality's ROI mask (same size); roi = image_path is the cropped ROI image and "
    "mask_path is null (the crop's position in the mammogram is not published, so no "
    "cropped mask exists)",
}
DOWNLOAD_HINT = (
    "download CBIS-DDSM from TCIA (doi:10.7937/K9/TCIA.2016.7O02S9CY) with the NBIA "
    "Data Retriever into <root>/CBIS-DDSM/, and put the four case-description CSVs "
    "(mass/calc x train/test) from the same page directly in <root>"
)
WHY_ASSESSMENT_LEAKS = (
    "the BI-RADS assessment is the radiologist's malignancy call that led to the biopsy: in the "
    "published training CSVs 98% of assessment-5 abnormalities are malignant (450 of 458) and "
    "0.2% of assessment-2 ones (1 of 559), so it predicts the label without the image"
)

FEATURES = (
    MetaFeature("breast_density", "breast_density", "categorical", missing=MISSING_TOKENS + ("0",)),
    MetaFeature("mass_shape", "mass_shape", "multi", separator="-"),
    MetaFeature("mass_margins", "mass_margins", "multi", separator="-"),
    MetaFeature("calc_type", "calc_type", "multi", separator="-"),
    MetaFeature("calc_distribution", "calc_distribution", "multi", separator="-"),
    MetaFeature("assessment", "assessment", "categorical", leaks_label=True, why_leaks=WHY_ASSESSMENT_LEAKS),
)


def csv_name(abnormality: str, split: str) -> str:
    """File name of the case-description CSV of ``abnormality`` (mass/calc) and ``split``."""
    return f"{abnormality}_case_description_{split}_set.csv"


def meta_name(column: str) -> str:
    """``meta_*`` name of a raw CSV column: lower-cased, spaces as ``_`` (unifies the density)."""
    return "_".join(column.strip().lower().split())


# ---------------------------------------------------------------------------------------------
# the case-description CSVs
# ---------------------------------------------------------------------------------------------
def _read_case_csv(path: Path, kind: str) -> tuple[dict[str, int], list[tuple[int, list[str]]]]:
    """Column index by raw name (density spelling unified to the file type's) and data rows."""
    density = COLUMNS[kind][1]
    table = read_csv(
        path,
        COLUMNS[kind],
        aliases={density: [s for s in DENSITY_SPELLINGS if s != density]},
        what=f"{kind} case-description CSV",
        download_hint=DOWNLOAD_HINT,
    )
    return table.col, table.rows


@dataclass
class _Abnormality:
    """One CSV row, parsed; image files are resolved later."""

    csv_path: Path
    row: int
    sample_id: str
    patient: str
    split: str
    label: int
    full_case: str
    roi_cases: tuple[str, ...]
    csv_paths: dict[str, str]
    meta: dict[str, str | None] = field(default_factory=dict)


def _parse_row(path: Path, kind: str, split: str, col: dict[str, int], row: int, cells: list[str]) -> _Abnormality:
    """Validate one CSV row: ids, pathology, path columns; keep every column as raw meta."""

    def cell(name: str) -> str:
        return cells[col[name]].strip()

    patient = cell("patient_id")
    if not patient:
        raise DatasetError(
            "empty patient_id",
            path=path,
            row=row,
            hint="every row needs its patient_id (P_xxxxx); fix or delete that row",
        )
    abnormality_id = cell("abnormality id")
    if not abnormality_id.isdigit():
        raise DatasetError(
            f"abnormality id {abnormality_id!r} of patient {patient} is not a positive integer",
            path=path,
            row=row,
            hint="the abnormality id numbers the patient's findings in one image (1, 2, ...); restore the value",
        )
    pathology = cell("pathology")
    label = PATHOLOGY_LABELS.get(pathology.upper())
    if label is None:
        raise DatasetError(
            f"unknown pathology {pathology!r} in column 'pathology' (patient {patient}, abnormality {abnormality_id})",
            path=path,
            row=row,
            hint=f"CBIS-DDSM pathologies are {list(PATHOLOGY_LABELS)}; fix the value or drop the row",
        )
    paths = {name: cell(name).replace("\\", "/") for name in PATH_COLUMNS}
    empty = [name for name, value in paths.items() if not value]
    if empty:
        raise DatasetError(
            f"empty {empty} for patient {patient}, abnormality {abnormality_id}",
            path=path,
            row=row,
            hint="restore the file paths of that row from the original CSV",
        )
    full_case = paths["image file path"].split("/")[0]
    roi_cases = tuple(dict.fromkeys(paths[name].split("/")[0] for name in PATH_COLUMNS[1:]))
    meta: dict[str, str | None] = {name: None for name in META_COLUMNS}
    for name, index in col.items():
        if name and name != "patient_id":
            value = cells[index].strip()
            meta[meta_name(name)] = value if value else None
    return _Abnormality(
        path, row, f"{full_case}_{abnormality_id}", patient, split, label, full_case, roi_cases, paths, meta
    )


def _csv_path(root: Path, kind: str, split: str, abnormality: str) -> Path:
    """The CSV of ``kind``/``split`` in ``root``, or a DatasetError listing what is there."""
    path = root / csv_name(kind, split)
    if path.is_file():
        return path
    present = sorted(p.name for p in root.iterdir() if p.name.endswith(".csv"))
    others = [k for k in ABNORMALITY_TYPES if all((root / csv_name(k, s)).is_file() for s in OFFICIAL_SPLITS)]
    hint = DOWNLOAD_HINT
    if abnormality == "both" and others:
        hint += f"; or read only the complete type with the option abnormality={others[0]}"
    raise DatasetError(f"{path.name} not found (CSV files in the folder: {present})", path=path, hint=hint)


# ---------------------------------------------------------------------------------------------
# finding the DICOMs
# ---------------------------------------------------------------------------------------------
#: (path, mtime_ns, size in bytes) -> (rows, columns): header sizes already read in this process
_HEADER_SIZES: dict[tuple[str, int, int], tuple[int, int]] = {}


def dicom_rows_columns(path: Path) -> tuple[int, int] | str:
    """``(Rows, Columns)`` of a DICOM read from its header only, or why it cannot be read.

    Remembered per process, keyed by path, modification time and byte size, so reading the same
    dataset again (``check`` then training, several options) costs no second header parse.
    """
    try:
        stat = os.stat(path)
    except OSError as exc:
        return f"cannot open ({exc.strerror or exc})"
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _HEADER_SIZES:
        import pydicom

        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Rows", "Columns"])
            _HEADER_SIZES[key] = (int(ds.Rows), int(ds.Columns))
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
    return _HEADER_SIZES[key]


class _CaseFolders:
    """Case folders under ``<root>/CBIS-DDSM`` then ``<root>``; DICOM header sizes, cached."""

    def __init__(self, root: Path):
        self.root = root
        self.bases = [b for b in (root / IMAGE_TREE, root) if b.is_dir()]
        self._dicoms: dict[str, list[Path]] = {}
        self._sizes: dict[Path, tuple[int, int] | str] = {}

    @property
    def image_base(self) -> Path:
        """Where the images are expected (for messages)."""
        tree = self.root / IMAGE_TREE
        return tree if tree.is_dir() else self.root

    def has_any(self, cases: Iterable[str]) -> bool:
        """Whether at least one of ``cases`` exists as a folder."""
        return any((base / case).is_dir() for case in cases for base in self.bases)

    def dicoms(self, case: str) -> list[Path]:
        """Every ``.dcm`` below the first folder named ``case`` (sorted; macOS ``._`` files skipped)."""
        if case not in self._dicoms:
            found: list[Path] = []
            for base in self.bases:
                folder = base / case
                if folder.is_dir():
                    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
                        dirnames.sort()
                        found += [
                            Path(dirpath) / f
                            for f in sorted(filenames)
                            if f.lower().endswith(".dcm") and not f.startswith("._")
                        ]
                    break
            self._dicoms[case] = found
        return self._dicoms[case]

    def size(self, path: Path) -> tuple[int, int] | str:
        """``(rows, columns)`` from the DICOM header, or the reason it cannot be read."""
        if path not in self._sizes:
            self._sizes[path] = dicom_rows_columns(path)
        return self._sizes[path]

    def full_image(self, rec: _Abnormality) -> Path | None:
        """The full mammogram: the CSV's own path if present, the only DICOM, or the largest."""
        for base in self.bases:
            literal = base / rec.csv_paths["image file path"]
            if literal.is_file():
                return literal
        candidates = self.dicoms(rec.full_case)
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        sized = [(s[0] * s[1], str(p), p) for p in candidates if not isinstance(s := self.size(p), str)]
        return max(sized)[2] if sized else candidates[0]

    def crop_and_mask(self, rec: _Abnormality, full: Path | None) -> tuple[Path | None, Path | None]:
        """``(cropped image, ROI mask)`` of the abnormality, told apart by image size.

        The largest candidate is the mask (a mammogram-sized image), the smallest the crop. A lone
        DICOM is the mask if it has at least 80% of the full mammogram's area (a few masks are a
        few pixels off their mammogram's size), else the crop; without a readable full mammogram
        a lone DICOM is neither (it is reported absent rather than guessed). Unreadable headers are
        listed by :meth:`unreadable_headers`.
        """
        candidates = [p for case in rec.roi_cases for p in self.dicoms(case)]
        sized = sorted((s[0] * s[1], str(p), p) for p in candidates if not isinstance(s := self.size(p), str))
        if not sized:
            return None, None
        if len(sized) == 1:
            area, _, only = sized[0]
            full_size = self.size(full) if full is not None else None
            if not isinstance(full_size, tuple):
                return None, None
            return (None, only) if area >= 0.8 * full_size[0] * full_size[1] else (only, None)
        (small, _, crop), (large, _, mask) = sized[0], sized[-1]
        if small == large:
            raise DatasetError(
                f"cannot tell the cropped image from the ROI mask of {rec.sample_id}: its "
                f"{len(sized)} DICOMs all have the size {self.size(crop)} (rows, columns)",
                path=crop.parent,
                hint="the mask has the full mammogram's size and the crop is a "
                "small box; re-download this case folder from TCIA",
            )
        return crop, mask

    def unreadable_headers(self) -> list[tuple[str, str]]:
        """``(path, reason)`` of every DICOM whose header could not be read, sorted."""
        return sorted((str(p), reason) for p, reason in self._sizes.items() if isinstance(reason, str))


def _resolve_files(records: list[_Abnormality], folders: _CaseFolders, view: str) -> list[tuple[Path, Path | None]]:
    """``(image_path, mask_path)`` per record for ``view``; DatasetError for absent files."""
    out, absent_images, absent_masks = [], [], []
    for rec in records:
        full = folders.full_image(rec)
        crop, mask = folders.crop_and_mask(rec, full)
        image = full if view == "full" else crop
        if image is None:
            absent_images.append(rec)
        elif view == "full" and mask is None:
            absent_masks.append(rec)
        out.append((image, mask if view == "full" else None))
    unreadable = folders.unreadable_headers()
    if unreadable:
        examples = "; ".join(f"{p} ({r})" for p, r in unreadable[:3])
        raise DatasetError(
            f"{len(unreadable)} DICOM header(s) cannot be read, so crop and ROI mask cannot be told "
            f"apart by size: {examples}{' ...' if len(unreadable) > 3 else ''}",
            path=folders.image_base,
            hint="re-download these series from TCIA (a partial download leaves broken files)",
        )
    what = "full mammograms" if view == "full" else "cropped ROI images"
    for kind, recs in ((what, absent_images), ("ROI masks", absent_masks)):
        if not recs:
            continue
        first = recs[0]
        folder = first.full_case if kind == "full mammograms" else first.roi_cases[0]
        raise DatasetError(
            f"{len(recs)} of {len(records)} {kind} listed in the case-description CSVs are not on "
            f"disk ({shown([r.sample_id for r in recs])}); e.g. no "
            f"{'matching ' if kind != 'full mammograms' else ''}.dcm below "
            f"{folders.image_base / folder}",
            path=folders.image_base,
            hint=f"{DOWNLOAD_HINT}. Each case folder (e.g. Mass-Training_P_00001_LEFT_CC, and "
            "Mass-Training_P_00001_LEFT_CC_1 for abnormality 1's crop and mask) must be "
            "there with its DICOMs; resume the NBIA download or pass abnormality=mass/calc",
        )
    return out


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
def _option(name: str, value: object, choices: tuple[str, ...], root: object) -> str:
    text = "calc" if str(value).strip().lower() == "calcification" else value
    return choice_option(name, text, choices, root, hint=f"{name}: {OPTIONS[name]}")


def read(root: str | Path, abnormality: str = "both", view: str = "full") -> pa.Table:
    """Index CBIS-DDSM at ``root`` into the common sample table (pixels are never decoded).

    ``abnormality``: ``mass`` | ``calc`` | ``both``; ``view``: ``full`` | ``roi`` (see
    :data:`OPTIONS`). One row per abnormality with ``sample_id`` = ``<case folder>_<abnormality id>``,
    ``group_id`` = ``patient_id``, ``official_split`` from the file name, ``label`` 1 = MALIGNANT,
    and the CSV columns as ``meta_*`` (:data:`META_COLUMNS`; empty -> null, ``NA`` kept, paths
    without their trailing newline). DICOM headers of each abnormality's case folder are read to
    tell the crop from the mask (module docstring). Raises :class:`DatasetError` (file, row, what to
    do) for a missing root / CSV / column, a bad cell count, an unknown pathology, a non-numeric
    abnormality id, a duplicate id, an unreadable DICOM header, or images / masks not on disk.
    """
    abnormality = _option("abnormality", abnormality, ABNORMALITY_CHOICES, root)
    view = _option("view", view, VIEW_CHOICES, root)
    root = dataset_root(root, DOWNLOAD_HINT)
    kinds = ABNORMALITY_TYPES if abnormality == "both" else (abnormality,)
    files = [(kind, split, _csv_path(root, kind, split, abnormality)) for kind in kinds for split in OFFICIAL_SPLITS]

    records: list[_Abnormality] = []
    seen: dict[str, _Abnormality] = {}
    for kind, split, path in files:
        col, rows = _read_case_csv(path, kind)
        for row, cells in rows:
            rec = _parse_row(path, kind, split, col, row, cells)
            if rec.sample_id in seen:
                other = seen[rec.sample_id]
                where = f"row {other.row}" + ("" if other.csv_path == path else f" of {other.csv_path.name}")
                raise DatasetError(
                    f"duplicate abnormality {rec.sample_id!r} (patient_id, left or right breast, "
                    f"image view, abnormality id) (also on {where})",
                    path=path,
                    row=row,
                    hint="each abnormality must be listed once; delete the repeated row",
                )
            seen[rec.sample_id] = rec
            records.append(rec)

    if not records:
        raise DatasetError(
            "the case-description CSVs list no abnormalities (header only)",
            path=files[0][2],
            hint="restore the original CSVs; " + DOWNLOAD_HINT,
        )
    folders = _CaseFolders(root)
    if not folders.has_any(case for r in records for case in (r.full_case, *r.roi_cases)):
        raise DatasetError(
            f"no image folders: none of the CSVs' case folders (e.g. {records[0].full_case}) is in "
            f"{root / IMAGE_TREE} or {root}",
            path=root / IMAGE_TREE,
            hint=DOWNLOAD_HINT,
        )
    files_of = _resolve_files(records, folders, view)
    out = []
    for rec, (image, mask) in zip(records, files_of):
        out.append(sample_row(rec.sample_id, image, rec.label, CLASSES, rec.patient, mask, rec.split, rec.meta))
    extra = sorted({k for rec in records for k in rec.meta} - set(META_COLUMNS))
    return build_table(out, list(META_COLUMNS) + extra)


# ---------------------------------------------------------------------------------------------
# official split overlap
# ---------------------------------------------------------------------------------------------
def _subset_of(abnormality_type: str | None, sample_id: str) -> str:
    kind = (abnormality_type or "").strip().lower()
    if kind.startswith("mass") or (not kind and sample_id.lower().startswith("mass")):
        return "mass"
    return "calc"


def official_split_overlap(table: pa.Table) -> dict:
    """Patients shared by the official subsets (abnormality type x official split) of ``table``.

    Returns ``{"patients": {"mass-train": n, ...}, "pairs": {"mass-train & calc-train": n, ...},
    "crossing": [patient ids in both the official train and test split]}``. On the real CSVs
    (``abnormality=both``): mass-train & calc-train 45, mass-train & calc-test 13, mass-test &
    calc-train 18, mass-test & calc-test 3, none within one abnormality type, 31 crossing. The
    crossing patients are the official split's leak; ``check`` reports their count as a warning.
    """
    subsets: dict[str, set[str]] = {}
    for patient, kind, split, sample_id in zip(
        table.column("group_id").to_pylist(),
        table.column("meta_abnormality_type").to_pylist(),
        table.column("official_split").to_pylist(),
        table.column("sample_id").to_pylist(),
    ):
        if split is None:
            continue
        subsets.setdefault(f"{_subset_of(kind, sample_id)}-{split}", set()).add(patient)
    order = [f"{k}-{s}" for k in ABNORMALITY_TYPES for s in OFFICIAL_SPLITS]
    present = [name for name in order if name in subsets]
    pairs = {f"{a} & {b}": len(subsets[a] & subsets[b]) for a, b in combinations(present, 2)}
    by_split: dict[str, set[str]] = {}
    for name, patients in subsets.items():
        by_split.setdefault(name.split("-")[1], set()).update(patients)
    crossing = sorted(by_split.get("train", set()) & by_split.get("test", set()))
    return {"patients": {name: len(subsets[name]) for name in present}, "pairs": pairs, "crossing": crossing}


SOURCE = DatasetSource(
    name="cbis_ddsm",
    title="CBIS-DDSM (curated DDSM mammograms, masses and calcifications)",
    classes=CLASSES,
    read=read,
    features=FEATURES,
    group="patient",
    has_masks=True,
    tasks=("classification", "segmentation"),
    notes="Official train/test split per abnormality type; 31 patients cross it (mass in one split, "
    "calcification in the other): use_official_split=False regroups by patient. Crop and ROI "
    "mask are told apart by DICOM size (the CSV file numbers are swapped). 'assessment' "
    "(BI-RADS) leaks the label. view=roi serves the cropped image without a mask.",
    options=OPTIONS,
    extra={"official_split_overlap": official_split_overlap, "columns": COLUMNS, "pathology_labels": PATHOLOGY_LABELS},
)
