"""Ways the dataset tests damage a copied miniature: a mask of the wrong size, a cut file."""
from __future__ import annotations

from pathlib import Path

from PIL import Image


def halve_width(path: Path) -> tuple[tuple[int, int], tuple[int, int]]:
    """Rewrite the image at ``path`` at half its width (same format and mode); (old, new) sizes."""
    with Image.open(path) as im:
        old, fmt = im.size, im.format
        smaller = im.resize((old[0] // 2, old[1]))
    smaller.save(path, fmt)
    with Image.open(path) as im:
        assert im.size == (old[0] // 2, old[1]) and im.format == fmt
    return old, smaller.size


def cut(path: Path, keep: float = 0.5) -> None:
    """Truncate the file at ``path`` to ``keep`` of its bytes (a download cut mid pixel data)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
