"""Images far off their dataset's usual size or mode, as ``check`` warnings naming the files.

A 1x1 placeholder, an 8000x6000 original among 600x450 exports, a CMYK or 16-bit file among RGB, an
image turned by its EXIF orientation: each still decodes (:mod:`dermfuse_data.images` says how), so
none is a problem, but each is worth a look. Only file headers are read (:func:`~dermfuse_data.images.image_header`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from dermfuse_data.images import HIGH_BIT_MODES, ImageHeader

#: a side this many times longer or shorter than the dataset's median side is far off
SIDE_RATIO = 8.0
#: what dermfuse does with a file of an unusual mode
DECODED_AS = {
    **{m: "scaled to 8 bit by its high byte" for m in HIGH_BIT_MODES},
    "CMYK": "converted to RGB (with its ICC profile where it has one)",
    "RGBA": "composited over black",
    "LA": "composited over black",
    "PA": "composited over black",
    "P": "converted through its palette",
}


def _decoded_as(kind: str, mode: str) -> str:
    if kind != "mask":
        return DECODED_AS.get(mode, "converted to RGB")
    scaled = "scaled to 8 bit by its high byte, then " if mode in HIGH_BIT_MODES else "read as gray, "
    return scaled + "above 127 is lesion"


#: files named per kind of warning before the rest are counted
MAX_NAMED = 10


def _named(kind: str, items: list[str]) -> list[str]:
    lines = [f"{kind}: {item}" for item in items[:MAX_NAMED]]
    if len(items) > MAX_NAMED:
        lines.append(f"{kind}: ... and {len(items) - MAX_NAMED} more ({len(items)} in all)")
    return lines


def unusual_images(kind: str, headers: Sequence[tuple[str, ImageHeader]]) -> list[str]:
    """Warnings for the ``(path, header)`` files of one kind (``image``/``mask``) that are off the usual.

    Far off in size: a side :data:`SIDE_RATIO` times longer or shorter than the median of that side.
    Off in mode: another Pillow mode than the most common one (DICOM files are not compared), and any
    16-bit or CMYK file. Turned: an EXIF orientation other than 1 (dermfuse turns it upright).
    """
    if not headers:
        return []
    sizes = np.array([h.size for _, h in headers], dtype=float)
    median = np.median(sizes, axis=0)
    far = []
    for (path, _), (width, height) in zip(headers, sizes):
        ratio = max(width / median[0], median[0] / width, height / median[1], median[1] / height)
        if ratio >= SIDE_RATIO:
            far.append(f"{path} is {int(width)}x{int(height)} (usual {int(median[0])}x{int(median[1])})")
    modes = Counter(h.mode for _, h in headers if h.mode != "DICOM")
    usual = modes.most_common(1)[0][0] if modes else None
    odd_mode = [
        f"{path} is {h.mode} (usual {usual}): {_decoded_as(kind, h.mode)}"
        for path, h in headers
        if h.mode != "DICOM" and (h.mode != usual or h.mode in HIGH_BIT_MODES or h.mode == "CMYK")
    ]
    turned = [
        f"{path} has EXIF orientation {h.orientation}: turned upright" for path, h in headers if h.orientation != 1
    ]
    return (
        _named(f"{kind} far off the usual size", far)
        + _named(f"{kind} of an unusual mode", odd_mode)
        + _named(f"{kind} turned by EXIF", turned)
    )
