"""Decode any image format the datasets ship (JPEG, PNG, BMP incl. 1-bit, TIFF, DICOM) to uint8 arrays.

Pillow alone gets some files wrong, so :func:`to_rgb` / :func:`load_image` fix them:

* 16-bit grayscale (PNG/TIFF ``I;16``, ``I``): scaled to 8 bit by the high byte (``v >> 8``, as Pillow
  itself reads 16-bit RGB); ``convert("RGB")`` would saturate every value above 255 to white.
* EXIF orientation (phones, some dermatoscopes): applied (``ImageOps.exif_transpose``), so the image is
  upright and its size is the upright size (a mask is compared with that).
* transparency (RGBA, LA, PA, palette or RGB with a transparent colour): composited over black, the
  colour outside a dermoscope's field of view, instead of showing whatever colour hides under alpha 0.
* CMYK: converted with its embedded ICC profile where it has one (LittleCMS), else Pillow's formula.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageCms, ImageOps, UnidentifiedImageError

from dermfuse_data.errors import DatasetError

DICOM_SUFFIXES = {".dcm", ".dicom"}
#: Pillow modes holding more than 8 bits per pixel (scaled by :func:`to_8bit`)
HIGH_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
#: EXIF orientations that swap width and height
_TRANSPOSED = {5, 6, 7, 8}


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


def orientation(pil: Image.Image) -> int:
    """The EXIF orientation tag (1 = upright, 6 = rotated 90 degrees clockwise, ...); 1 without one."""
    try:
        return int(pil.getexif().get(ExifTags.Base.Orientation, 1))
    except (ValueError, TypeError, SyntaxError):  # a malformed EXIF block: treat as upright
        return 1


def to_8bit(pil: Image.Image) -> Image.Image:
    """A 16-bit grayscale image (:data:`HIGH_BIT_MODES`) as 8-bit ``L`` (``v >> 8``, values clipped to
    0..65535 first); any other image unchanged."""
    if pil.mode not in HIGH_BIT_MODES:
        return pil
    values = np.clip(np.asarray(pil).astype(np.int64), 0, 65535)
    return Image.fromarray((values >> 8).astype(np.uint8), mode="L")


def _has_alpha(pil: Image.Image) -> bool:
    return pil.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in pil.info


def to_rgb(pil: Image.Image) -> Image.Image:
    """``pil`` as 8-bit RGB, decoded as the module doc says (16-bit scaled, alpha over black, CMYK by ICC)."""
    pil = to_8bit(pil)
    if _has_alpha(pil):
        rgba = pil.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba).convert("RGB")
    if pil.mode == "CMYK" and pil.info.get("icc_profile"):
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(pil.info["icc_profile"]))
            return ImageCms.profileToProfile(pil, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):  # a broken profile: Pillow's formula below
            pass
    return pil.convert("RGB")


def to_mask(pil: Image.Image) -> Image.Image:
    """``pil`` as 8-bit ``L`` for thresholding (16-bit scaled first; alpha and colour dropped)."""
    return to_8bit(pil).convert("L")


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says: upright (width, height), Pillow mode (``DICOM`` for DICOM) and EXIF orientation."""

    size: tuple[int, int]
    mode: str
    orientation: int = 1


def image_header(path: str | Path) -> ImageHeader | None:
    """The :class:`ImageHeader` of ``path`` without decoding pixels; ``None`` if the file is unreadable."""
    path = Path(path)
    try:
        if path.suffix.lower() in DICOM_SUFFIXES:
            import pydicom

            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Rows", "Columns"])
            return ImageHeader((int(ds.Columns), int(ds.Rows)), "DICOM")
        with Image.open(path) as im:
            turn = orientation(im)
            size = im.size[::-1] if turn in _TRANSPOSED else im.size
            return ImageHeader(tuple(size), im.mode, turn)
    except Exception:
        return None


def load_image(
    path: str | Path,
    size: tuple[int, int] | None = None,
    *,
    mask: bool = False,
    expect_size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode ``path`` -> (array, original upright (width, height)); resized to ``size`` = (H, W) if given.

    Images come back RGB ``(H, W, 3)`` (:func:`to_rgb`); masks (``mask=True``) ``(H, W)`` with values 0/1
    (anything above 127 after :func:`to_mask`, or any set bit of a 1-bit BMP, is lesion), resized with
    nearest neighbour. Both are turned upright by their EXIF orientation. ``expect_size`` = the image's
    original (width, height): a mask of another size is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError("file not found", path=path, hint="restore the file or remove its row")
    try:
        if path.suffix.lower() in DICOM_SUFFIXES:
            pil = Image.fromarray(_dicom_to_uint8(path, mask=mask))
            original = pil.size
        else:
            pil = Image.open(path)
            original = pil.size  # from the header, before draft shrinks the decode
            if size is not None and pil.format == "JPEG" and not mask:
                pil.draft("RGB", (size[1], size[0]))
            pil.load()
            if orientation(pil) in _TRANSPOSED:
                original = original[::-1]
            ImageOps.exif_transpose(pil, in_place=True)
    except (UnidentifiedImageError, OSError, ValueError, AttributeError) as err:
        raise DatasetError(
            f"cannot decode image ({type(err).__name__}: {err})",
            path=path,
            hint="the file is truncated or not an image: re-download it",
        ) from None
    if expect_size is not None and tuple(original) != tuple(expect_size):
        raise DatasetError(
            f"mask is {original[0]}x{original[1]} but its image is {expect_size[0]}x{expect_size[1]}",
            path=path,
            hint="masks must have their image's size; re-export the mask",
        )
    if mask:
        pil = to_mask(pil)
        if size is not None:
            pil = pil.resize((size[1], size[0]), Image.NEAREST)
        return (np.asarray(pil) > 127).astype(np.uint8), tuple(original)
    pil = to_rgb(pil)
    if size is not None:
        pil = pil.resize((size[1], size[0]), Image.BILINEAR, reducing_gap=2.0)
    return np.asarray(pil), tuple(original)
