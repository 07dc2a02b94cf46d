"""Decoding files Pillow alone gets wrong: 16-bit, EXIF orientation, transparency, CMYK, palettes."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from dermfuse_data.errors import DatasetError
from dermfuse_data.images import image_header, load_image

RNG = np.random.default_rng(0)


def png16(path, values: np.ndarray) -> None:
    """Write a 16-bit PNG (gray (H, W) or RGB (H, W, 3)) byte by byte, independent of Pillow's writer."""
    h, w = values.shape[:2]
    colour = 2 if values.ndim == 3 else 0
    raw = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_gray_is_scaled_by_its_high_byte_not_saturated(tmp_path, suffix):
    values = RNG.integers(0, 65536, (12, 9)).astype(np.uint16)
    values[0, :3] = (0, 255, 65535)
    path = tmp_path / f"gray16{suffix}"
    if suffix == ".png":
        png16(path, values)
    else:
        Image.fromarray(values).save(path)  # Pillow writes 16-bit TIFF as I;16
    assert Image.open(path).mode == "I;16"
    assert (np.asarray(Image.open(path).convert("RGB")) == 255).mean() > 0.95  # what Pillow alone does: white
    image, original = load_image(path)
    assert original == (9, 12) and image.shape == (12, 9, 3)
    expected = (values >> 8).astype(np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(image[..., c], expected)
    assert tuple(image[0, :3, 0]) == (0, 0, 255)


def test_16_bit_rgb_png_keeps_its_colours(tmp_path):
    values = RNG.integers(0, 65536, (6, 5, 3)).astype(np.uint16)
    png16(tmp_path / "rgb16.png", values)
    image, _ = load_image(tmp_path / "rgb16.png")
    np.testing.assert_array_equal(image, (values >> 8).astype(np.uint8))


def test_16_bit_mask_is_thresholded_after_scaling(tmp_path):
    mask = np.zeros((8, 10), np.uint16)
    mask[2:6, 3:8] = 65535
    mask[0, 0] = 200  # 8-bit noise in a 16-bit file: background, not lesion
    png16(tmp_path / "mask16.png", mask)
    out, _ = load_image(tmp_path / "mask16.png", mask=True)
    np.testing.assert_array_equal(out, (mask > 32767).astype(np.uint8))


def _with_orientation(path, pixels: np.ndarray, orientation: int, **save) -> None:
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, exif=exif, **save)


@pytest.mark.parametrize(
    ("orientation", "upright"),
    [(3, lambda a: np.rot90(a, 2)), (6, lambda a: np.rot90(a, -1)), (8, lambda a: np.rot90(a, 1)), (2, np.fliplr)],
)
def test_exif_orientation_is_applied(tmp_path, orientation, upright):
    pixels = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    _with_orientation(tmp_path / "photo.png", pixels, orientation)  # lossless: exact pixels
    image, original = load_image(tmp_path / "photo.png")
    np.testing.assert_array_equal(image, upright(pixels))
    assert original == (image.shape[1], image.shape[0])
    header = image_header(tmp_path / "photo.png")
    assert header.orientation == orientation and header.size == original


def test_exif_rotated_jpeg_with_draft_and_its_mask(tmp_path):
    """A JPEG (decoded at reduced scale by draft) turned 90 degrees: upright pixels, upright size, and a
    mask drawn on the upright image passes the size check."""
    pixels = np.zeros((200, 300, 3), np.uint8)
    pixels[:100, :150] = 255  # bright top-left quarter of the stored image
    _with_orientation(tmp_path / "photo.jpg", pixels, 6, quality=95)
    image, original = load_image(tmp_path / "photo.jpg", (40, 40))
    assert original == (200, 300)
    expected = np.asarray(Image.fromarray(np.rot90(pixels, -1).copy()).resize((40, 40), Image.BILINEAR))
    assert np.abs(image.astype(int) - expected).mean() < 4
    assert image[:20, 20:].mean() > 200 and image[20:, :20].mean() < 30  # the quarter went to the top right
    Image.fromarray(np.zeros((300, 200), np.uint8)).save(tmp_path / "mask.png")
    load_image(tmp_path / "mask.png", (40, 40), mask=True, expect_size=original)
    with pytest.raises(DatasetError, match="mask is 200x300 but its image is 300x200"):
        load_image(tmp_path / "mask.png", mask=True, expect_size=(300, 200))


def test_transparent_pixels_are_black_and_opaque_ones_kept(tmp_path):
    rgba = RNG.integers(0, 256, (6, 7, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0
    rgba[1, 1, 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    image, _ = load_image(tmp_path / "rgba.png")
    np.testing.assert_array_equal(image[2:], rgba[2:, :, :3])
    assert tuple(image[0, 0]) == (0, 0, 0)
    np.testing.assert_allclose(image[1, 1], rgba[1, 1, :3].astype(float) * 128 / 255, atol=1)
    la = Image.fromarray(rgba[..., [0, 3]], "LA")
    la.save(tmp_path / "la.png")
    image, _ = load_image(tmp_path / "la.png")
    assert tuple(image[0, 0]) == (0, 0, 0) and tuple(image[3, 3]) == (rgba[3, 3, 0],) * 3


def test_palette_with_a_transparent_index_and_cmyk(tmp_path):
    palette = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), "P")
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    palette.info["transparency"] = 2
    palette.save(tmp_path / "p.png", transparency=2)
    image, _ = load_image(tmp_path / "p.png")
    np.testing.assert_array_equal(image, [[[255, 0, 0], [0, 255, 0]], [[0, 0, 0], [0, 255, 0]]])
    rgb = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.tif")  # lossless CMYK, no profile
    image, _ = load_image(tmp_path / "cmyk.tif")
    assert image_header(tmp_path / "cmyk.tif").mode == "CMYK"
    np.testing.assert_array_equal(image, rgb)
