"""Byte-deterministic files of the synthetic miniatures: images, 1-bit BMP masks, CSV tables.

Every writer creates the parent folders and returns the path it wrote; nothing depends on the clock,
so the same arrays and rows give the same bytes.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def save_image(path: str | Path, array: np.ndarray, format: str | None = None, **params) -> Path:
    """Write ``array`` (HxWx3 RGB or HxW uint8/bool) with Pillow; byte-deterministic for PNG/JPEG/BMP.

    ``format`` defaults to the file's suffix; ``params`` go to ``Image.save`` (e.g. ``quality=90``).
    A boolean array is written as 0/255.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(array)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    Image.fromarray(arr).save(path, format=format, **params)
    return path


def save_1bit_bmp(path: str | Path, mask: np.ndarray) -> Path:
    """A boolean mask as a 1-bit BMP (PH2's mask format), without dithering."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).convert("1", dither=Image.Dither.NONE).save(path, "BMP")
    return path


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[str]], line_end: str = "\r\n") -> Path:
    """A UTF-8 CSV with ``header`` then ``rows``, minimal quoting, lines ended by ``line_end``.

    Publishers differ in line ends (PAD-UFES-20 LF, HAM10000 / ISIC / TCIA CRLF); pass theirs.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator=line_end)
        writer.writerow(header)
        writer.writerows(rows)
    return path


__all__ = ["save_image", "save_1bit_bmp", "write_csv"]
