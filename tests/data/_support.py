"""Helpers of the dataset tests (test modules cannot import ``conftest`` under importlib mode).

Where the real metadata is, CSV editing, stand-in files, digests of a folder, and the two checks every
dataset test runs: ``check --json`` without a traceback, and "this damaged copy is unreadable, and
both ``read`` and ``check`` say so clearly".
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from PIL import Image

from dermfuse_data.errors import DatasetError
from dermfuse_data.sources import get_source

#: ``../shared/real_metadata`` (only the developers' checkout has it)
REAL_METADATA = Path(__file__).resolve().parents[2].parent / "shared" / "real_metadata"


def real_path(*parts: str) -> Path:
    """A path under :data:`REAL_METADATA`; the test is skipped where it is absent."""
    path = REAL_METADATA.joinpath(*parts)
    if not path.exists():
        pytest.skip("../shared/real_metadata is absent (only the developers' checkout has it)")
    return path


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV file (records, so a quoted newline stays inside its cell)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]], end: str = "\r\n") -> Path:
    """Write a CSV file with line ends ``end`` (quoted cells keep their inner newline)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator=end)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def edit_csv(
    path: Path, edit: Callable[[list[str], list[list[str]]], tuple[list[str], list[list[str]]]], end: str = "\r\n"
) -> Path:
    """Rewrite the CSV at ``path`` with ``edit(header, rows) -> (header, rows)``; returns ``path``."""
    return write_csv(path, *edit(*read_csv(path)), end=end)


def drop_column(name: str):
    """A CSV edit (for :func:`edit_csv`) removing column ``name``."""

    def edit(header, rows):
        i = header.index(name)
        return header[:i] + header[i + 1 :], [r[:i] + r[i + 1 :] for r in rows]

    return edit


def set_cell(row: int, column: str, value: str):
    """A CSV edit (for :func:`edit_csv`) setting data row ``row`` (0-based) of ``column`` to ``value``."""

    def edit(header, rows):
        rows[row][header.index(column)] = value
        return header, rows

    return edit


def tiny_image(fmt: str, mode: str = "RGB") -> bytes:
    """Bytes of a valid 4x4 image (the stand-in for every real image of a real listing)."""
    buf = io.BytesIO()
    Image.new(mode, (4, 4), (200, 150, 120) if mode == "RGB" else 200).save(buf, fmt)
    return buf.getvalue()


def digest(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file below ``root``."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def append_comment(path: Path) -> None:
    """Change a Python module's bytes without changing what it does."""
    path.write_bytes(path.read_bytes() + b"\n# edited\n")


def check_json(cli, dataset: str, root: Path, *extra: str) -> tuple[int, dict]:
    """``check --json`` of ``dataset`` at ``root``: exit status and report (never a traceback)."""
    rc, out, err = cli("check", "--dataset", dataset, "--root", root, "--json", *extra)
    assert "Traceback" not in out + err
    return rc, json.loads(out)


def assert_unreadable(
    cli, dataset: str, root: Path, texts: Sequence[str], hint: str | None = None, options: Sequence[str] = ()
) -> DatasetError:
    """``read`` of ``root`` raises a :class:`DatasetError` holding every one of ``texts`` and the root, with
    a hint (holding ``hint``); ``check`` exits 2 printing the same, with its ``->`` hint and no
    traceback; ``check --json`` has it as its only problem. ``options`` are ``NAME=VALUE`` read options.
    Returns the error for further checks."""
    kwargs = dict(o.split("=", 1) for o in options)
    with pytest.raises(DatasetError) as caught:
        get_source(dataset).read(root, **kwargs)
    error, message = caught.value, str(caught.value)
    for text in texts:
        assert text in message, (text, message)
    assert str(root) in message and error.hint, message
    assert hint is None or hint in error.hint, (hint, error.hint)
    flags = [flag for option in options for flag in ("--option", option)]
    rc, out, err = cli("check", "--dataset", dataset, "--root", root, *flags)
    assert rc == 2 and "Traceback" not in out + err
    assert all(text in err for text in texts) and "->" in err, err
    rc, report = check_json(cli, dataset, root, *flags)
    assert rc == 2 and report["readable"] is False and report["rows"] is None
    assert len(report["problems"]) == 1 and all(text in report["problems"][0] for text in texts)
    return error
