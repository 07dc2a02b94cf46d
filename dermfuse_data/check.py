"""``python -m dermfuse_data check``: is a dataset on disk what its publisher ships, and what is in it?

Works for any :class:`~dermfuse_data.sources.base.DatasetSource`: indexes the dataset with the
source's ``read`` (which raises :class:`~dermfuse_data.errors.DatasetError` for what makes it
unreadable), then reports rows, per-class counts, groups, split sizes (official, else the default
grouped split of :func:`dermfuse_data.splits.make_splits`), missing values per metadata column and
problems: images or masks that are missing or cannot be decoded, masks of another size than their
image, labels outside the class list, duplicate ids; and warnings for images far off the dataset's
usual size or mode, or turned by EXIF (:mod:`dermfuse_data.image_survey`). It also reports the width
of the tabular encoding of the dataset's non-leaking metadata features (:func:`encoding_widths`).
Dataset-specific rules live in the source modules, not here.

Exit status (:func:`exit_code`): 0 no problems, 1 problems found, 2 the dataset could not be read.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dermfuse_data.errors import DatasetError
from dermfuse_data.image_survey import unusual_images
from dermfuse_data.images import image_header
from dermfuse_data.schema import META_PREFIX, SPLITS, validate_table
from dermfuse_data.sources import get_source
from dermfuse_data.sources.base import MISSING_TOKENS, DatasetSource
from dermfuse_data.splits import crossing_groups, make_splits
from dermfuse_data.tabular import TabularEncoder, select_features

#: show a progress bar when verifying more images than this
PROGRESS_THRESHOLD = 100
#: individual problems listed per kind before summarising the rest
MAX_LISTED = 10
#: what to do, appended to each listed problem of these kinds
UNREADABLE_HINT = "the file is truncated or not an image: re-download it, or remove its row"
NOT_A_NUMBER_HINT = "fix the cell in the metadata file, or leave it empty (missing)"
MISSING_HINT = "restore the file, or remove its row"
MASK_SIZE_HINT = "a mask must have its image's size: restore the publisher's mask or re-export it"


def verify_image(path: str | Path) -> str | None:
    """``None`` if the image file at ``path`` can be read, else a short reason.

    PNG: Pillow's ``verify`` (walks every chunk and checks its CRC, so truncation and corruption are
    caught without a full decode). JPEG/BMP/TIFF/...: ``verify`` plus a decode (JPEG at 1/8 scale
    via ``draft``). DICOM (``.dcm``): parsed with pydicom and must hold pixel data.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return "empty file"
    except OSError as exc:
        return f"cannot open ({exc.strerror or exc})"
    if path.suffix.lower() in (".dcm", ".dicom"):
        try:
            import pydicom

            ds = pydicom.dcmread(path)
            if "PixelData" not in ds:
                return "DICOM file has no pixel data"
            _ = ds.pixel_array  # short (truncated) pixel data only fails here
        except Exception as exc:
            return f"not a readable DICOM file ({type(exc).__name__}: {exc})"
        return None
    from PIL import Image

    try:
        with Image.open(path) as im:
            fmt = im.format
            im.verify()
        if fmt != "PNG":
            with Image.open(path) as im:
                if fmt == "JPEG":
                    im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _mask_size_problems(pairs: list[tuple[str, str]]) -> list[str]:
    """Masks whose upright size differs from their image's (read from headers only)."""
    wrong = []
    for image, mask in pairs:
        i, m = (getattr(image_header(p), "size", None) for p in (image, mask))
        if i and m and i != m:
            wrong.append(f"{mask} is {m[0]}x{m[1]} but its image {image} is {i[0]}x{i[1]}")
    return _listed("mask size differs from its image", wrong, hint=MASK_SIZE_HINT)


def _non_numbers(table: pa.Table, source: DatasetSource) -> list[str]:
    """``<sample_id>: column 'age' holds 'forty'`` for every numeric metadata cell (any split) that
    is neither a number nor one of the feature's missing tokens."""
    ids, bad = table.column("sample_id").to_pylist(), []
    for f in source.features:
        if f.kind == "numeric" and META_PREFIX + f.column in table.column_names:
            bad += [f"{ids[i]}: column {f.column!r} holds {cell!r}" for i, cell in TabularEncoder.non_numbers(table, f)]
    return bad


def encoding_widths(table: pa.Table, source: DatasetSource) -> dict[str, int]:
    """Encoded width of each non-leaking metadata feature of ``source``, in order ({} if none).

    The :class:`~dermfuse_data.tabular.TabularEncoder` is fitted as the DataModule fits it by
    default: on the training rows of :func:`~dermfuse_data.splits.make_splits` (seed 0), so the
    widths are those a model's metadata input gets. Raises :class:`DatasetError` for a cell the
    encoder cannot read (e.g. a word in a numeric column).
    """
    features = select_features(source, "all")
    if not features:
        return {}
    split = make_splits(table, seed=0).column("split")
    encoder = TabularEncoder(features).fit(table.filter(pc.equal(split, "train")))
    return dict(zip(encoder.feature_names, encoder.group_widths))


def _missing_counts(table: pa.Table, source: DatasetSource) -> dict[str, int]:
    """Per raw metadata column: cells that are null or one of the feature's missing tokens."""
    tokens = {f.column.removeprefix(META_PREFIX): set(f.missing) for f in source.features}
    out = {}
    for name in table.column_names:
        if not name.startswith(META_PREFIX):
            continue
        raw = name[len(META_PREFIX) :]
        missing = tokens.get(raw, set(MISSING_TOKENS))
        out[raw] = sum(1 for v in table.column(name).to_pylist() if v is None or v.strip() in missing)
    return out


def _split_summary(table: pa.Table, warnings: list[str]) -> tuple[str, dict[str, int]]:
    """(kind, counts): the official split where the source has one, else the default grouped one."""
    official = table.column("official_split").to_pylist()
    if any(s is not None for s in official):
        counts = Counter("unassigned" if s is None else s for s in official)
        kind = "official"
        split_table = table.append_column(
            "split", pa.array(["unassigned" if s is None else s for s in official], pa.string())
        )
    else:
        try:
            split_table = make_splits(table, seed=0)
        except Exception as exc:
            warnings.append(f"no official split, and the default grouped split failed: {exc}")
            return "no official split", {}
        counts = Counter(split_table.column("split").to_pylist())
        kind = "grouped (no official split; make_splits seed=0)"
    crossing = crossing_groups(split_table)
    if crossing:
        warnings.append(
            f"{len(crossing)} groups appear in more than one {kind} split "
            f"(e.g. {next(iter(crossing))}); a leak-free split regroups them"
        )
    ordered = {s: counts.get(s, 0) for s in SPLITS}
    ordered.update({s: n for s, n in counts.items() if s not in ordered})
    return kind, ordered


def _listed(kind: str, items: list[str], hint: str | None = None) -> list[str]:
    """One problem line per item (the first :data:`MAX_LISTED`), each ending in ``-> hint``."""
    suffix = f"\n  -> {hint}" if hint else ""
    lines = [f"{kind}: {item}{suffix}" for item in items[:MAX_LISTED]]
    if len(items) > MAX_LISTED:
        lines.append(f"{kind}: ... and {len(items) - MAX_LISTED} more ({len(items)} in all)")
    return lines


def _verify_files(paths: list[tuple[str, str]], progress: bool | None) -> tuple[list[str], list[str]]:
    """(problems, warnings) for ``(kind, path)`` files: those that cannot be decoded, and those far off
    their kind's usual size or mode (:func:`~dermfuse_data.image_survey.unusual_images`); progress bar
    on stderr if many."""
    from tqdm import tqdm

    show = len(paths) > PROGRESS_THRESHOLD if progress is None else progress
    bad: dict[str, list[str]] = {}
    headers: dict[str, list] = {}
    for kind, path in tqdm(paths, desc="verifying images", unit="img", file=sys.stderr, disable=not show, leave=False):
        reason = verify_image(path)
        if reason is not None:
            bad.setdefault(kind, []).append(f"{path} ({reason})")
        elif (header := image_header(path)) is not None:
            headers.setdefault(kind, []).append((path, header))
    problems = []
    for kind, items in bad.items():
        problems += _listed(f"unreadable {kind}", items, hint=UNREADABLE_HINT)
    return problems, [w for kind, found in headers.items() for w in unusual_images(kind, found)]


def check_dataset(
    source: DatasetSource | str,
    root: str | Path,
    *,
    verify_images: bool = True,
    progress: bool | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Index ``root`` with ``source`` and return the report as a JSON-ready dict.

    Keys: ``dataset``, ``title``, ``root``, ``readable``, ``rows``, ``classes`` {name: count},
    ``groups``, ``group_unit``, ``split_kind``, ``splits`` {split: count}, ``missing``
    {raw column: count}, ``encoded_width`` (columns of the tabular encoding of the non-leaking
    metadata features; 0 without any), ``encoded_widths`` {feature: columns} (see
    :func:`encoding_widths`), ``images_verified``, ``problems`` [str], ``warnings`` [str]. A
    :class:`DatasetError` from ``read`` gives ``readable=False`` and its message as the only problem.
    ``options`` are passed to ``source.read`` (see :attr:`DatasetSource.options`).
    """
    source = get_source(source) if isinstance(source, str) else source
    report: dict[str, Any] = {
        "dataset": source.name,
        "title": source.title,
        "root": str(Path(root).expanduser().absolute()),
        "readable": False,
        "rows": None,
        "classes": {},
        "groups": None,
        "group_unit": source.group,
        "split_kind": None,
        "splits": {},
        "missing": {},
        "encoded_width": None,
        "encoded_widths": {},
        "images_verified": 0,
        "problems": [],
        "warnings": [],
    }
    try:
        unknown = sorted(set(options or {}) - set(source.options))
        if unknown:
            raise DatasetError(
                f"unknown option(s) {unknown} for {source.name}",
                path=root,
                hint=f"known options: {source.options or 'none'}",
            )
        source = source.for_data(root, options)
        table = source.read(Path(root), **(options or {}))
    except DatasetError as exc:
        report["problems"].append(str(exc))
        return report
    report["readable"] = True
    problems: list[str] = report["problems"]
    warnings: list[str] = report["warnings"]
    try:
        validate_table(table, source=f"{source.name} table")
    except DatasetError as exc:
        problems.append(str(exc))

    labels = table.column("label").to_pylist()
    classes = source.classes_with(options)
    n_classes = len(classes)
    counts = Counter(labels)
    report["rows"] = table.num_rows
    report["classes"] = {name: counts.get(i, 0) for i, name in enumerate(classes)}
    unknown = sorted({lab for lab in labels if not (isinstance(lab, int) and 0 <= lab < n_classes)}, key=str)
    if unknown:
        problems.append(f"unknown labels {unknown} (classes are 0..{n_classes - 1}: {list(classes)})")
    empty = [name for name, n in report["classes"].items() if n == 0]
    if empty:
        warnings.append(f"classes without samples: {empty}")
    report["groups"] = len(set(table.column("group_id").to_pylist()))
    report["split_kind"], report["splits"] = _split_summary(table, warnings)
    report["missing"] = _missing_counts(table, source)
    not_numbers = _non_numbers(table, source)
    problems.extend(_listed("not a number in a numeric metadata column", not_numbers, hint=NOT_A_NUMBER_HINT))
    try:
        report["encoded_widths"] = encoding_widths(table, source)
        report["encoded_width"] = sum(report["encoded_widths"].values())
    except DatasetError as exc:
        if not not_numbers:  # already listed, per sample
            problems.append(f"metadata cannot be encoded: {exc}")
    except Exception as exc:
        warnings.append(f"encoded metadata width unknown: {type(exc).__name__}: {exc}")

    files = [("image", p) for p in table.column("image_path").to_pylist()]
    files += [("mask", p) for p in table.column("mask_path").to_pylist() if p is not None]
    absent: dict[str, list[str]] = {}
    present = []
    for kind, path in files:
        if os.path.isfile(path):
            present.append((kind, path))
        else:
            absent.setdefault(kind, []).append(path)
    for kind, items in absent.items():
        problems.extend(_listed(f"missing {kind}", items, hint=MISSING_HINT))
    if verify_images:
        unreadable, unusual = _verify_files(present, progress)
        problems.extend(unreadable)
        warnings.extend(unusual)
        problems.extend(
            _mask_size_problems(
                [
                    (i, m)
                    for i, m in zip(table.column("image_path").to_pylist(), table.column("mask_path").to_pylist())
                    if m is not None and os.path.isfile(i) and os.path.isfile(m)
                ]
            )
        )
        report["images_verified"] = len(present)
    else:
        warnings.append("image decoding not verified (--no-verify-images)")
    return report


def exit_code(report: dict[str, Any]) -> int:
    """0 when the dataset is readable without problems, 1 with problems, 2 when unreadable."""
    if not report["readable"]:
        return 2
    return 1 if report["problems"] else 0


def print_json(report: dict[str, Any], file=None) -> None:
    """The report as one JSON object."""
    print(json.dumps(report, indent=2), file=file or sys.stdout)


def print_report(report: dict[str, Any], file=None) -> None:
    """The report as rich tables for humans (an unreadable dataset prints its error plainly)."""
    file = file or sys.stdout
    if not report["readable"]:
        print(f"error: cannot read {report['dataset']} at {report['root']}", file=sys.stderr)
        for problem in report["problems"]:
            print(problem, file=sys.stderr)
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=file, highlight=False)
    rows = report["rows"] or 0
    summary = Table(title=Text(f"{report['title']}  [{report['dataset']}]"), show_header=False)
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("root", Text(report["root"]))
    summary.add_row("rows", str(rows))
    summary.add_row(f"groups ({report['group_unit']})", str(report["groups"]))
    splits = ", ".join(f"{k} {v}" for k, v in report["splits"].items()) or "-"
    summary.add_row("split", Text(f"{report['split_kind']}: {splits}"))
    widths = report["encoded_widths"]
    summary.add_row(
        "encoded metadata",
        "unknown (see problems)"
        if report["encoded_width"] is None
        else f"{report['encoded_width']} columns, {len(widths)} features",
    )
    summary.add_row("images verified", str(report["images_verified"]))
    console.print(summary)
    if widths:
        console.print(
            Text("encoded metadata widths: " + ", ".join(f"{k} {v}" for k, v in widths.items())), soft_wrap=True
        )
    elif report["encoded_width"] == 0:
        console.print(Text("no non-leaking metadata features to encode"))

    def counts_table(title: str, key: str, value: str, counts: dict[str, int]) -> Table:
        table = Table(title=title)
        table.add_column(key)
        table.add_column(value, justify="right")
        table.add_column("share", justify="right")
        for name, n in counts.items():
            table.add_row(Text(name), str(n), f"{100 * n / max(rows, 1):.1f}%")
        return table

    console.print(counts_table("classes", "class", "rows", report["classes"]))
    if report["missing"]:
        console.print(counts_table("missing values per metadata column", "column", "missing", report["missing"]))

    for warning in report["warnings"]:
        console.print(Text(f"warning: {warning}", style="yellow"))
    if report["problems"]:
        console.print(Text(f"{len(report['problems'])} problem(s):", style="bold red"))
        for problem in report["problems"]:
            console.print(Text(f"  - {problem}", style="red"), soft_wrap=True)
    else:
        console.print(Text("no problems", style="bold green"))
