"""Decode any image format the datasets ship (JPEG, PNG, BMP incl. 1-bit, DICOM) to uint8 arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dermfuse_data.errors import DatasetError

DICOM_SUFFIXES = {".dcm", ".dicom"}


def _dicom_to_uint8(path: Path, mask: bool = False) -> np.ndarray:
    """Read a DICOM with pydicom: modality LUT, MONOCHROME1 inverted, 0.5-99.5 percentile window.

    Masks (``mask=True``) are not windowed: any non-zero pixel is lesion (255).
    """
    import pydicom
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(path)
    pixels = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
    if mask:
        return np.where(pixels > 0, 255, 0).astype(np.uint8)
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        pixels = pixels.max() - pixels
    lo, hi = np.percentile(pixels, [0.5, 99.5])
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((pixels - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def load_image(
    path: str | Path,
    size: tuple[int, int] | None = None,
    *,
    mask: bool = False,
    expect_size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode ``path`` -> (array, original (width, height)); resized to ``size`` = (H, W) if given.

    Images come back RGB ``(H, W, 3)``; masks (``mask=True``) ``(H, W)`` with values 0/1
    (anything above 127, or any set bit of a 1-bit BMP, is lesion), resized with nearest neighbour.
    ``expect_size`` = the image's original (width, height): a mask of another size is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError("file not found", path=path, hint="restore the file or remove its row")
    try:
        if path.suffix.lower() in DICOM_SUFFIXES:
            array = _dicom_to_uint8(path, mask=mask)
            pil = Image.fromarray(array)
        else:
            pil = Image.open(path)
            if size is not None and pil.format == "JPEG" and not mask:
                pil.draft("RGB", (size[1], size[0]))
            pil.load()
    except (UnidentifiedImageError, OSError, ValueError, AttributeError) as err:
        raise DatasetError(
            f"cannot decode image ({type(err).__name__}: {err})",
            path=path,
            hint="the file is truncated or not an image: re-download it",
        ) from None
    original = pil.size if path.suffix.lower() in DICOM_SUFFIXES or mask else _full_size(path, pil)
    if expect_size is not None and tuple(original) != tuple(expect_size):
        raise DatasetError(
            f"mask is {original[0]}x{original[1]} but its image is {expect_size[0]}x{expect_size[1]}",
            path=path,
            hint="masks must have their image's size; re-export the mask",
        )
    if mask:
        pil = pil.convert("L")
        if size is not None:
            pil = pil.resize((size[1], size[0]), Image.NEAREST)
        return (np.asarray(pil) > 127).astype(np.uint8), original
    pil = pil.convert("RGB")
    if size is not None:
        pil = pil.resize((size[1], size[0]), Image.BILINEAR, reducing_gap=2.0)
    return np.asarray(pil), original


def _full_size(path: Path, pil: Image.Image) -> tuple[int, int]:
    """Original size even after JPEG ``draft`` shrank the decode."""
    if pil.format == "JPEG":
        with Image.open(path) as fresh:
            return fresh.size
    return pil.size
