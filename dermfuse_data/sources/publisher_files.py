"""Reading a publisher's CSV files and image folders with errors that say where and what to do.

Shared by the HAM10000 and ISIC 2019 sources (same conventions as
:mod:`dermfuse_data.sources.pad_ufes_20`): every problem a user can fix is a
:class:`~dermfuse_data.errors.DatasetError` naming the file, the row (1-based line of the file,
header = row 1) or column, and a hint.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dermfuse_data.errors import DatasetError

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


@dataclass(frozen=True)
class CsvFile:
    """A parsed CSV: ``header`` (canonical names, aliases resolved), ``rows`` as ``(line, cells)``.

    ``col`` maps a header name to its cell index; ``renamed`` records aliases found
    (``{"gender": "sex"}``).
    """

    path: Path
    header: list[str]
    rows: list[tuple[int, list[str]]]
    renamed: dict[str, str]

    @property
    def col(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.header)}


def dataset_root(root: str | Path, download_hint: str) -> Path:
    """``root`` resolved, or a :class:`DatasetError` if it does not exist or is a file."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError("dataset folder does not exist", path=root, hint=download_hint)
    if not root.is_dir():
        raise DatasetError("is a file, not the dataset folder", path=root, hint=download_hint)
    return root.resolve()


def required_file(root: Path, name: str, download_hint: str) -> Path:
    """``root / name``, or a :class:`DatasetError` listing what the folder holds instead."""
    path = root / name
    if not path.is_file():
        present = sorted(p.name for p in root.iterdir())
        shown = present[:10] + (["..."] if len(present) > 10 else [])
        raise DatasetError(f"{name} not found (the folder holds {shown})", path=path,
                           hint=download_hint)
    return path


def _csv_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(line number, cells)`` of every line of ``path`` (header included)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            try:
                for cells in reader:
                    yield reader.line_num, cells
            except csv.Error as exc:
                raise DatasetError(f"not a valid CSV file: {exc}", path=path, row=reader.line_num,
                                   hint=f"fix the quoting on that line or restore the original "
                                        f"{path.name}") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path,
                           hint=f"restore the original {path.name} (a spreadsheet may have re-saved "
                                "it in another encoding; save as CSV UTF-8)") from None


def read_csv(path: Path, required: Iterable[str], *, aliases: Mapping[str, Iterable[str]] = {},
             what: str = "") -> CsvFile:
    """Parse ``path`` and check that its header has every ``required`` column.

    ``aliases`` maps a canonical column to other names some copies use (ISIC 2019 ``sex`` is
    ``gender`` in some); an alias found is renamed to the canonical name in ``header``. Blank lines
    are skipped; a row with another cell count than the header, an empty file, a repeated or
    missing column raise :class:`DatasetError` (missing columns are listed with the header present).
    ``what`` names the file's role in hints (e.g. "ISIC 2019 ground truth").
    """
    what = what or path.name
    lines = _csv_lines(path)
    header: list[str] | None = None
    for _, cells in lines:
        if any(c.strip() for c in cells):
            header = [c.strip() for c in cells]
            break
    if header is None:
        raise DatasetError(f"{path.name} is empty", path=path,
                           hint=f"restore the original {what} file")
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
        raise DatasetError(f"column(s) {dupes} appear more than once in the header", path=path,
                           row=1, hint=f"remove the repeated columns or restore the original {what}")
    required = list(required)
    missing = [c for c in required if c not in header]
    if missing:
        also = {c: list(aliases[c]) for c in missing if c in aliases}
        alias_text = "".join(f" ('{c}' may also be called {o})" for c, o in also.items())
        raise DatasetError(
            f"missing column(s) {missing}{alias_text}; the header has {header}", path=path, row=1,
            hint=f"the {what} has these columns: {required}; restore the original file or rename "
                 "the columns back")
    rows = []
    for line, cells in lines:
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise DatasetError(
                f"has {len(cells)} cells but the header has {len(header)} columns", path=path,
                row=line, hint=f"a value probably contains an unquoted comma, or the row was cut; "
                               f"fix that line or restore the original {what}")
        rows.append((line, cells))
    return CsvFile(path, header, rows, renamed)


def index_images(folders: Iterable[Path], suffix: str) -> dict[str, str]:
    """File name -> path (str) of every ``*suffix`` file below ``folders`` (recursive, first wins).

    Folders are walked in the given order and names sorted, so duplicates (e.g. Kaggle's copy of
    HAM10000 ships each part twice) resolve deterministically.
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


def absent_images_error(absent: list[str], listed: int, listed_in: str, where: Path,
                        hint: str) -> DatasetError:
    """The error for images listed in ``listed_in`` but not on disk: count and the first five."""
    shown = ", ".join(absent[:5]) + (", ..." if len(absent) > 5 else "")
    return DatasetError(f"{len(absent)} of {listed} images listed in {listed_in} are not on disk "
                        f"({shown})", path=where, hint=hint)


def duplicate_error(column: str, value: str, path: Path, line: int, first_line: int) -> DatasetError:
    """The error for an id listed twice (names both rows)."""
    return DatasetError(f"duplicate {column} {value!r} in column {column!r} (also on row {first_line})",
                        path=path, row=line,
                        hint="each image must be listed once; delete the repeated row")


def reject_unknown_options(dataset: str, options: Mapping[str, Any], known: Mapping[str, str]) -> None:
    """Raise :class:`DatasetError` naming ``options`` that ``dataset``'s ``read`` does not know."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise DatasetError(f"unknown option(s) {unknown} for {dataset}", path=f"{dataset} read()",
                           hint=f"known options: {dict(known) or 'none'}")


def bool_option(name: str, value: bool | str | int) -> bool:
    """A boolean read option given as a bool or a string from the command line (``true``/``false``)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise DatasetError(f"option {name}={value!r} is not a boolean", path=f"option {name}",
                       hint=f"pass {name}=true or {name}=false")


__all__ = ["CsvFile", "dataset_root", "required_file", "read_csv", "index_images",
           "absent_images_error", "duplicate_error", "reject_unknown_options", "bool_option"]
