"""Ways the dataset tests damage a copied miniature: a mask of the wrong size, a cut file, junk bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from dermfuse_data.synthetic.dicom import write_dicom

#: damage name -> what it does to an image file's bytes
DAMAGES = {
    "cut mid pixel data": lambda data: data[: len(data) // 2],
    "header only": lambda data: data[:60],
    "not an image": lambda data: b"PK\x03\x04 a zip, not an image" * 30,
}


def halve_width(path: Path) -> tuple[tuple[int, int], tuple[int, int]]:
    """Rewrite the image at ``path`` at half its width (same format and mode; DICOM too); (old, new) sizes."""
    if path.suffix.lower() == ".dcm":
        pixels = pydicom.dcmread(path).pixel_array
        old = (pixels.shape[1], pixels.shape[0])
        write_dicom(path, np.ascontiguousarray(pixels[:, : old[0] // 2]), uid_key=("halved", str(path)))
        ds = pydicom.dcmread(path)
        assert (ds.Columns, ds.Rows) == (old[0] // 2, old[1]) and ds.pixel_array.dtype == pixels.dtype
        return old, (old[0] // 2, old[1])
    with Image.open(path) as im:
        old, fmt, mode = im.size, im.format, im.mode
        smaller = im.resize((old[0] // 2, old[1]))
    smaller.save(path, fmt)
    with Image.open(path) as im:
        assert im.size == (old[0] // 2, old[1]) and (im.format, im.mode) == (fmt, mode)
    return old, smaller.size


def cut(path: Path, keep: float = 0.5) -> None:
    """Truncate the file at ``path`` to ``keep`` of its bytes (a download cut mid pixel data)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def assert_one_mask_size_problem(report: dict, mask, image, old: tuple[int, int], new: tuple[int, int]) -> None:
    """``check --json``'s report has exactly one problem: ``mask`` (now ``new``) vs ``image`` (``old``)."""
    assert len(report["problems"]) == 1, report["problems"]
    problem = report["problems"][0]
    assert problem.startswith(
        f"mask size differs from its image: {mask} is {new[0]}x{new[1]} but its image {image} is {old[0]}x{old[1]}"
    ), problem
    assert problem.endswith("-> a mask must have its image's size: restore the publisher's mask or re-export it")
