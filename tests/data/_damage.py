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


def assert_one_mask_size_problem(report: dict, mask, image, old: tuple[int, int], new: tuple[int, int]) -> None:
    """``check --json``'s report has exactly one problem: ``mask`` (now ``new``) vs ``image`` (``old``)."""
    assert len(report["problems"]) == 1, report["problems"]
    problem = report["problems"][0]
    assert problem.startswith(f"mask size differs from its image: {mask} is {new[0]}x{new[1]} but its image "
                              f"{image} is {old[0]}x{old[1]}"), problem
    assert problem.endswith("-> a mask must have its image's size: restore the publisher's mask or re-export it")
