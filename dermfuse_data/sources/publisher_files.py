"""Reading what publishers ship, with errors that say where and what to do (every reader uses it).

The dataset folder, files and folders that must be there, CSV files (header checked, aliases
resolved, rows numbered as a spreadsheet does), image folders indexed without decoding, the
challenges' official splits, and read options. Every problem a user can fix is a
:class:`~dermfuse_data.errors.DatasetError` naming the file, the row (header = row 1) or column,
and a hint.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import SPLITS

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
#: the ``splits`` read option's help, shared by the ISIC challenge sources
SPLITS_OPTION_HELP = (
    "comma-separated official splits to read, of train,val,test (default all "
    "three); e.g. splits=train when only the training part is downloaded"
)


def shown(items: Sequence[str], k: int = 5) -> str:
    """The first ``k`` items joined by commas, with ``...`` when there are more."""
    return ", ".join(items[:k]) + (", ..." if len(items) > k else "")


# ---------------------------------------------------------------------------------------------
# the dataset folder, its files and folders
# ---------------------------------------------------------------------------------------------
def dataset_root(root: str | Path, download_hint: str) -> Path:
    """``root`` resolved, or a :class:`DatasetError` if it does not exist or is a file."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError("dataset folder does not exist", path=root, hint=download_hint)
    if not root.is_dir():
        raise DatasetError("is a file, not the dataset folder", path=root, hint=download_hint)
    return root.resolve()


def folder_holds(folder: Path, k: int = 10) -> str:
    """``the folder holds [...]``: the first ``k`` names in ``folder``, sorted (for "not found" errors)."""
    present = sorted(p.name for p in folder.iterdir())
    return f"the folder holds {present[:k] + (['...'] if len(present) > k else [])}"


def required_path(root: Path, name: str, hint: str, *, folder: bool = False, what: str = "") -> Path:
    """``root / name`` (a file, or a folder with ``folder=True``), or a :class:`DatasetError` listing
    what ``root`` holds instead. ``what`` comes before the name in the message (``"image folder"``)."""
    path = root / name
    if not (path.is_dir() if folder else path.is_file()):
        raise DatasetError(f"{what + ' ' if what else ''}{name} not found ({folder_holds(root)})", path=path, hint=hint)
    return path


def absent_images_error(
    absent: list[str], listed: int, listed_in: str, where: Path, hint: str, kind: str = "images"
) -> DatasetError:
    """The error for ``kind`` listed in ``listed_in`` but not on disk: their count and the first five."""
    return DatasetError(
        f"{len(absent)} of {listed} {kind} listed in {listed_in} are not on disk ({shown(absent)})",
        path=where,
        hint=hint,
    )


# ---------------------------------------------------------------------------------------------
# CSV files
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CsvFile:
    """A parsed CSV: ``header`` (canonical names, aliases resolved), ``rows`` as ``(row, cells)``.

    ``row`` counts records as a spreadsheet does (header = row 1; a quoted cell spanning two lines
    is still one row). ``col`` maps a header name to its cell index; ``renamed`` records aliases
    found (``{"gender": "sex"}``).
    """

    path: Path
    header: list[str]
    rows: list[tuple[int, list[str]]]
    renamed: dict[str, str]

    @property
    def col(self) -> dict[str, int]:
        """Header name -> cell index."""
        return {name: i for i, name in enumerate(self.header)}


def _csv_records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(row, cells)`` of every record of ``path`` (header and blank lines included)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            row = 0
            try:
                for cells in csv.reader(fh):
                    row += 1
                    yield row, cells
            except csv.Error as exc:
                raise DatasetError(
                    f"not a valid CSV file: {exc}",
                    path=path,
                    row=row + 1,
                    hint=f"fix the quoting on that row or restore the original {path.name}",
                ) from None
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"not UTF-8 text ({exc.reason} at byte {exc.start})",
            path=path,
            hint=f"restore the original file {path.name} (a spreadsheet may have re-saved "
            "it in another encoding; save as CSV UTF-8)",
        ) from None


def read_csv(
    path: Path,
    required: Iterable[str],
    *,
    aliases: Mapping[str, Iterable[str]] = {},
    what: str = "",
    download_hint: str = "",
) -> CsvFile:
    """Parse ``path`` and check that its header has every ``required`` column.

    ``aliases`` maps a canonical column to other names some copies use (ISIC 2019 ``sex`` is
    ``gender`` in some); an alias found is renamed to the canonical name in ``header``. Blank lines
    are skipped; a row with another cell count than the header, an empty file, a repeated or
    missing column raise :class:`DatasetError` (missing columns are listed with the header present).
    ``what`` names the file's role in hints (e.g. "ISIC 2019 ground truth"); ``download_hint`` is
    added to the hint for an empty file.
    """
    what = what or path.name
    records = _csv_records(path)
    header: list[str] | None = None
    for header_row, cells in records:  # noqa: B007 (the header row number is used after the loop)
        if any(c.strip() for c in cells):
            header = [c.strip() for c in cells]
            break
    if header is None:
        raise DatasetError(
            f"{path.name} is empty",
            path=path,
            hint=f"restore the original {what} file" + (f"; {download_hint}" if download_hint else ""),
        )
    renamed = {}
    for canonical, others in aliases.items():
        if canonical in header:
            continue
        for other in others:
            if other in header:
                header[header.index(other)] = canonical
                renamed[other] = canonical
                break
    dupes = sorted({c for c in header if c and header.count(c) > 1})
    if dupes:
        raise DatasetError(
            f"column(s) {dupes} appear more than once in the header",
            path=path,
            row=header_row,
            hint=f"remove the repeated columns or restore the original {what}",
        )
    required = list(required)
    missing = [c for c in required if c not in header]
    if missing:
        also = {c: list(aliases[c]) for c in missing if c in aliases}
        alias_text = "".join(f" ('{c}' may also be called {o})" for c, o in also.items())
        raise DatasetError(
            f"missing column(s) {missing}{alias_text}; the header has {header}",
            path=path,
            row=header_row,
            hint=f"the {what} has these columns: {required}; restore the original file or rename the columns back",
        )
    rows = []
    for row, cells in records:
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise DatasetError(
                f"has {len(cells)} cells but the header has {len(header)} columns",
                path=path,
                row=row,
                hint=f"a value probably contains an unquoted comma, or the row was cut; "
                f"fix that row or restore the original {what}",
            )
        rows.append((row, cells))
    return CsvFile(path, header, rows, renamed)


def required_cell(table: CsvFile, row: int, cells: list[str], column: str) -> str:
    """The stripped cell of ``column``, or a :class:`DatasetError` when it is empty."""
    value = cells[table.col[column]].strip()
    if not value:
        raise DatasetError(
            f"empty {column}",
            path=table.path,
            row=row,
            hint=f"every row needs a value in column {column!r}; fix or delete that row",
        )
    return value


def class_cell(
    table: CsvFile, row: int, cells: list[str], column: str, classes: Sequence[str], sample: str, what: str
) -> int:
    """Index in ``classes`` of the ``column`` cell (case-insensitive for lower/upper-case class codes).

    An unknown value is a :class:`DatasetError` naming the file, row, column and sample, listing ``classes``
    (``what``: how the dataset calls them, e.g. ``"HAM10000 dx codes"``).
    """
    value = cells[table.col[column]]
    key = value.strip().upper() if all(c.isupper() for c in classes) else value.strip().lower()
    if key not in classes:
        raise DatasetError(
            f"unknown {column} {value!r} in column {column!r} ({sample})",
            path=table.path,
            row=row,
            hint=f"{what} are {list(classes)}; fix the value or drop the row",
        )
    return list(classes).index(key)


def listed_ids(table: CsvFile, column: str) -> Iterator[tuple[int, str, list[str]]]:
    """``(row, id, cells)`` of every row, the id being the stripped ``column`` cell; an empty or
    repeated id raises :class:`DatasetError` (a repeat names both rows)."""
    seen: dict[str, int] = {}
    for row, cells in table.rows:
        sample_id = required_cell(table, row, cells, column)
        if sample_id in seen:
            raise duplicate_error(column, sample_id, table.path, row, seen[sample_id])
        seen[sample_id] = row
        yield row, sample_id, cells


def duplicate_error(column: str, value: str, path: Path, line: int, first_line: int) -> DatasetError:
    """The error for an id listed twice (names both rows)."""
    return DatasetError(
        f"duplicate {column} {value!r} in column {column!r} (also on row {first_line})",
        path=path,
        row=line,
        hint="each image must be listed once; delete the repeated row",
    )


def meta_cells(table: CsvFile, cells: list[str], names: Iterable[str]) -> dict[str, str | None]:
    """``{"meta_<name>": cell}`` for ``names``, as written; empty cells and absent columns -> None."""
    col = table.col
    out = {}
    for name in names:
        value = cells[col[name]] if name in col else ""
        out["meta_" + name] = value if value.strip() else None
    return out


# ---------------------------------------------------------------------------------------------
# image folders (indexed by name, never decoded)
# ---------------------------------------------------------------------------------------------
def index_images(folders: Iterable[Path], suffix: str) -> dict[str, str]:
    """File name -> path (str) of every ``*suffix`` file below ``folders`` (recursive, first wins).

    Folders are walked in the given order and names sorted, so duplicates (e.g. Kaggle's copy of
    HAM10000 ships each part twice) resolve deterministically. ``suffix`` ``""`` takes every file.
    """
    suffix = suffix.lower()
    found: dict[str, str] = {}
    for top in folders:
        for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
            dirnames.sort()
            for name in sorted(filenames):
                if name.lower().endswith(suffix) and name not in found:
                    found[name] = os.path.join(dirpath, name)
    return found


def index_folder(folder: Path, suffix: str, skip: tuple[str, ...] = ()) -> dict[str, Path]:
    """Sample id -> path of the files in ``folder`` whose name ends in ``suffix`` (any case).

    The id is the name without ``suffix``; names ending in one of ``skip`` (e.g. ``_superpixels.png``)
    and every other file (licences, ``.DS_Store``, CSVs) are ignored. Not recursive, except that a
    same-named single subfolder (``X/X/*.jpg``, a common unzip result) is entered. Two files for one
    id (``ISIC_1.jpg`` and ``ISIC_1.JPG``) raise :class:`DatasetError`.
    """
    found: dict[str, Path] = {}
    low_suffix, low_skip = suffix.lower(), tuple(s.lower() for s in skip)
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        low = entry.name.lower()
        if not low.endswith(low_suffix) or low.endswith(low_skip) or not entry.is_file():
            continue
        sample_id = entry.name[: -len(suffix)]
        if sample_id in found:
            raise DatasetError(
                f"two files for id {sample_id!r}: {found[sample_id].name} and {entry.name}",
                path=folder,
                hint="keep one file per image (delete the copy)",
            )
        found[sample_id] = Path(entry.path)
    nested = folder / folder.name
    if not found and nested.is_dir():
        return index_folder(nested, suffix, skip)
    return found


# ---------------------------------------------------------------------------------------------
# official splits (ISIC challenges: one folder / file per split)
# ---------------------------------------------------------------------------------------------
def parse_splits(value: str | Iterable[str] | None, root: Path) -> tuple[str, ...]:
    """The ``splits`` option (``"train,val"`` or a list) as split names in train/val/test order.

    Raises :class:`DatasetError` naming the bad value; ``None`` means all three splits.
    """
    if value is None:
        return SPLITS
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [str(n).strip().lower() for n in names if str(n).strip()]
    unknown = [n for n in names if n not in SPLITS]
    if unknown or not names:
        raise DatasetError(
            f"option splits={value!r} names no split or unknown split(s) {unknown}",
            path=root,
            hint=f"choose among {list(SPLITS)}, e.g. splits=train,val",
        )
    return tuple(s for s in SPLITS if s in names)


def check_cross_split_duplicates(ids_by_split: dict[str, list[str]], where: dict[str, Path]) -> None:
    """Raise :class:`DatasetError` if one id is in two splits (naming both files or folders)."""
    first: dict[str, str] = {}
    for split, ids in ids_by_split.items():
        for sample_id in ids:
            if sample_id in first:
                other = first[sample_id]
                raise DatasetError(
                    f"duplicate id {sample_id!r}: listed in the {other} split ({where[other].name}) "
                    f"and again in the {split} split",
                    path=where[split],
                    hint="an image belongs to one official split only; remove the copy",
                )
            first[sample_id] = split


# ---------------------------------------------------------------------------------------------
# read options
# ---------------------------------------------------------------------------------------------
def reject_unknown_options(dataset: str, options: Mapping[str, Any], known: Mapping[str, str]) -> None:
    """Raise :class:`DatasetError` naming ``options`` that ``dataset``'s ``read`` does not know."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise DatasetError(
            f"unknown option(s) {unknown} for {dataset}",
            path=f"{dataset} read()",
            hint=f"known options: {dict(known) or 'none'}",
        )


def bool_option(name: str, value: bool | str | int) -> bool:
    """A boolean read option given as a bool or a string from the command line (``true``/``false``)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise DatasetError(
        f"option {name}={value!r} is not a boolean", path=f"option {name}", hint=f"pass {name}=true or {name}=false"
    )


def choice_option(name: str, value: object, choices: Sequence[str], where: object, hint: str) -> str:
    """A read option that must be one of ``choices`` (compared lower-case), or a :class:`DatasetError`."""
    text = str(value).strip().lower()
    if text not in choices:
        raise DatasetError(f"option {name}={value!r} is not one of {list(choices)}", path=where, hint=hint)
    return text
