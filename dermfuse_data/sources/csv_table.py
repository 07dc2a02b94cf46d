"""Your own data: one CSV table of samples plus a few lines of YAML saying what its columns are.

The way in for a dataset no publisher layout covers (``dataset: csv``). The folder holds::

    <root>/samples.csv      one row per image (another name: source option ``table``)
    <root>/samples.yaml     which column is what (another name: source option ``spec``)
    <root>/...              the images (and masks), at the paths the CSV gives

``samples.csv`` has a header row; paths are relative to the CSV's folder (or absolute). The spec::

    image: image                  # column: image file (JPEG, PNG, BMP, DICOM)
    label: diagnosis              # column: class name
    classes: [nevus, melanoma]    # the class names in label order; every label must be one of them
    id: image_id                  # optional column: sample id (default: the image path without suffix)
    group: patient                # optional column: the unit that never crosses splits (default: the sample)
    mask: mask                    # optional column: binary lesion mask at image size (empty = none)
    split: split                  # optional column: your own train/val/test split (every row filled)
    categorical: [sex, site]      # metadata features, one-hot (+ a missing indicator each)
    numeric: [age]                # metadata features, standardised (+ a missing indicator each)
    leaky: {biopsy: "ordered for suspected cancers"}   # features that encode the label: refused as
                                  # model inputs unless allow_leaky_metadata=true (a list works too;
                                  # a leaky column not under categorical/numeric is categorical)
    missing: ["", NA, unknown]    # optional: cells that mean "missing" (default: "", UNK, unknown, NA, nan, None)

Everything downstream is the same as for a publisher's layout: ``python -m dermfuse_data check
--dataset csv --root DIR`` reports counts and problems, the grouped split is made and saved once,
the encoder is fitted on the training split, the images are decoded once into the cache. Other
columns are kept as raw ``meta_*`` cells (not model inputs). Train with
``--data.dataset=csv --data.root=DIR`` (``--data.source_options={table: my.csv, spec: my.yaml}``
for other file names), e.g. ``make train-vitatt DATA_ROOT=DIR ARGS=--data.dataset=csv``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import yaml

from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import SPLITS, build_table, sample_row
from dermfuse_data.sources.base import MISSING_TOKENS, DatasetSource, MetaFeature
from dermfuse_data.sources.publisher_files import (
    CsvFile,
    absent_images_error,
    dataset_root,
    listed_ids,
    meta_cells,
    read_csv,
    reject_unknown_options,
    required_cell,
    required_path,
)

DEFAULT_TABLE = "samples.csv"
DEFAULT_SPEC = "samples.yaml"
OPTIONS = {
    "table": f"the samples CSV, relative to the root or absolute (default {DEFAULT_TABLE})",
    "spec": f"the YAML declaring the CSV's columns, relative to the root or absolute (default {DEFAULT_SPEC})",
}
#: spec keys: the three every spec needs, the optional column roles, the feature declarations
REQUIRED_KEYS = ("image", "label", "classes")
COLUMN_KEYS = ("image", "label", "id", "group", "mask", "split")
SPEC_KEYS = (*COLUMN_KEYS, "classes", "categorical", "numeric", "leaky", "missing")
SPEC_EXAMPLE = "image: image, label: diagnosis, classes: [nevus, melanoma], categorical: [sex], numeric: [age]"
DOWNLOAD_HINT = (
    f"put your table in {DEFAULT_TABLE} (one row per image) and declare its columns in {DEFAULT_SPEC} "
    f"({SPEC_EXAMPLE}; see dermfuse_data/sources/csv_table.py), then pass their folder as the root"
)


@dataclass(frozen=True)
class Spec:
    """A parsed spec file: the column of each role (``None`` where not declared), classes, features."""

    path: Path
    columns: dict[str, str | None]
    classes: tuple[str, ...]
    features: tuple[MetaFeature, ...]

    @property
    def required_columns(self) -> list[str]:
        """Every column the CSV must have."""
        named = [c for c in self.columns.values() if c]
        return list(dict.fromkeys(named + [f.column for f in self.features]))


def _names(spec: dict, key: str, path: Path) -> list[str]:
    """A spec entry that lists column names (a list, or one name)."""
    value = spec.get(key) or []
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        raise DatasetError(f"{key} must be a list of column names, got {value!r}", path=path, hint=DOWNLOAD_HINT)
    return [n.strip() for n in names]


def _leaky(spec: dict, path: Path) -> dict[str, str]:
    """``leaky`` as column -> reason (a list gets a generic reason naming the spec)."""
    value = spec.get("leaky") or {}
    if isinstance(value, dict):
        return {str(k): str(v or f"declared leaky in {path.name}") for k, v in value.items()}
    return {name: f"declared leaky in {path.name}" for name in _names(spec, "leaky", path)}


def parse_spec(path: Path) -> Spec:
    """Read and check a spec file (module docstring); every problem is a :class:`DatasetError` naming it."""
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise DatasetError(f"not valid YAML: {err}", path=path, hint=DOWNLOAD_HINT) from None
    if not isinstance(spec, dict):
        raise DatasetError("the spec must be a YAML mapping", path=path, hint=DOWNLOAD_HINT)
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    lacking = [k for k in REQUIRED_KEYS if not spec.get(k)]
    if unknown or lacking:
        raise DatasetError(
            (f"unknown key(s) {unknown}" if unknown else f"missing key(s) {lacking}") + f"; the keys are {SPEC_KEYS}",
            path=path,
            hint=f"e.g. {SPEC_EXAMPLE}",
        )
    columns = {key: (str(spec[key]).strip() if spec.get(key) else None) for key in COLUMN_KEYS}
    classes = tuple(_names(spec, "classes", path))
    if len(set(classes)) != len(classes):
        raise DatasetError(f"classes {list(classes)} name a class twice", path=path, hint="list each class once")
    missing = tuple(str(m) for m in spec.get("missing", MISSING_TOKENS))
    leaky = _leaky(spec, path)
    kinds = {name: "categorical" for name in _names(spec, "categorical", path)}
    kinds.update({name: "numeric" for name in _names(spec, "numeric", path)})
    kinds.update({name: "categorical" for name in leaky if name not in kinds})
    roles = {c: key for key, c in columns.items() if c}
    clash = sorted(name for name in kinds if name in roles)
    if clash:
        raise DatasetError(
            f"column(s) {clash} are both a metadata feature and the {[roles[c] for c in clash]} column",
            path=path,
            hint="a feature must be another column than image/label/id/group/mask/split",
        )
    features = tuple(
        MetaFeature(name, name, kind, missing=missing, leaks_label=name in leaky, why_leaks=leaky.get(name, ""))
        for name, kind in kinds.items()
    )
    return Spec(path, columns, classes, features)


def _file(root: Path, name: str, what: str) -> Path:
    """``name`` (absolute, or relative to ``root``), which must be a file."""
    path = Path(name).expanduser()
    if path.is_absolute():
        if not path.is_file():
            raise DatasetError(f"{what} not found", path=path, hint=DOWNLOAD_HINT)
        return path
    return required_path(root, name, f"{DOWNLOAD_HINT}; pass data.root=<the folder holding it>", what=what)


def _spec_of(root: str | Path, options: dict) -> tuple[Path, Spec]:
    reject_unknown_options("csv", options, OPTIONS)
    root = dataset_root(root, DOWNLOAD_HINT)
    return root, parse_spec(_file(root, str(options.get("spec", DEFAULT_SPEC)), "spec"))


def declare(root: str | Path, options: dict) -> DatasetSource:
    """The csv source as the spec at ``root`` declares it: its classes, features, group, masks."""
    _, spec = _spec_of(root, options)
    return dataclasses.replace(
        SOURCE,
        title=f"{SOURCE.title}: {spec.path.parent.name}",
        classes=spec.classes,
        features=spec.features,
        group=spec.columns["group"] or "image",
        has_masks=spec.columns["mask"] is not None,
        declare=None,
    )


def _path_cell(table: CsvFile, cells: list[str], column: str | None, base: Path) -> Path | None:
    """The file a path cell names (relative to the CSV's folder), ``None`` for an empty cell or no column."""
    if column is None or not cells[table.col[column]].strip():
        return None
    path = Path(cells[table.col[column]].strip()).expanduser()
    return path if path.is_absolute() else base / path


def _label(table: CsvFile, row: int, cells: list[str], column: str, classes: tuple[str, ...], sample: str) -> int:
    value = cells[table.col[column]].strip()
    if value not in classes:
        raise DatasetError(
            f"unknown label {value!r} in column {column!r} ({sample})",
            path=table.path,
            row=row,
            hint=f"the spec's classes are {list(classes)}; fix the cell or add the class to the spec",
        )
    return classes.index(value)


def _split(table: CsvFile, row: int, cells: list[str], column: str | None) -> str | None:
    if column is None:
        return None
    value = required_cell(table, row, cells, column).lower()
    if value not in SPLITS:
        raise DatasetError(
            f"split {value!r} in column {column!r} is not one of {list(SPLITS)}",
            path=table.path,
            row=row,
            hint="write train, val or test in every row, or drop 'split' from the spec",
        )
    return value


def read(root: str | Path, **options) -> pa.Table:
    """Index the CSV table at ``root`` into the common sample table (images are not decoded).

    One row per CSV row, in file order: ``sample_id`` from the ``id`` column (else the image path
    without its suffix), ``label`` the index of the ``label`` cell in the spec's ``classes``,
    ``group_id`` from ``group`` (else the sample), ``mask_path`` from ``mask``, ``official_split``
    from ``split``, every other column as raw ``meta_*`` strings (empty cells null). Raises
    :class:`DatasetError` for a missing root / table / spec, a bad spec, a declared column absent from
    the header, a wrong cell count, an empty or repeated id or image, an unknown label or split, or
    listed images or masks that are not on disk. Options: :data:`OPTIONS`.
    """
    root, spec = _spec_of(root, options)
    table_path = _file(root, str(options.get("table", DEFAULT_TABLE)), "table")
    table = read_csv(table_path, spec.required_columns, what=f"samples table (columns declared in {spec.path.name})")
    col = spec.columns
    roles = {c for c in col.values() if c}
    meta_names = [c for c in table.header if c and c not in roles]
    base = table_path.parent.resolve()
    out, absent, absent_masks = [], [], []
    for row, listed, cells in listed_ids(table, col["id"] or col["image"]):  # an empty or repeated id names its rows
        image_cell = required_cell(table, row, cells, col["image"])
        sample_id = listed if col["id"] else str(Path(image_cell).with_suffix(""))
        label = _label(table, row, cells, col["label"], spec.classes, f"sample {sample_id}")
        group = required_cell(table, row, cells, col["group"]) if col["group"] else None
        image = _path_cell(table, cells, col["image"], base)
        mask = _path_cell(table, cells, col["mask"], base)
        if not os.path.isfile(image):
            absent.append(sample_id)
        if mask is not None and not os.path.isfile(mask):
            absent_masks.append(sample_id)
        meta = meta_cells(table, cells, meta_names)
        split = _split(table, row, cells, col["split"])
        out.append(sample_row(sample_id, image, label, spec.classes, group, mask, split, meta))
    for missing, kind in ((absent, "images"), (absent_masks, "masks")):
        if missing:
            raise absent_images_error(
                missing,
                len(out),
                table_path.name,
                base,
                hint=f"{kind} are read at the path in their column, relative to {base}: fix the paths or add files",
                kind=kind,
            )
    return build_table(out, meta_names)


SOURCE = DatasetSource(
    name="csv",
    title="Your own data (one CSV table + a YAML spec of its columns)",
    classes=(),
    read=read,
    notes="Classes, features, group and masks are declared by the spec file (samples.yaml); no publisher "
    "layout. The split is the spec's split column if every row has one, else grouped stratified.",
    options=OPTIONS,
    declare=declare,
)
