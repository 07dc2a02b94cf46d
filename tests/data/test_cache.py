"""Image cache: decode once, keyed by inputs, atomic, zero-copy reads, masks checked."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from dermfuse_data.cache import ImageCache, open_or_build
from dermfuse_data.errors import DatasetError
from dermfuse_data.images import load_image


def _write(tmp_path, n=5, mask_size=(50, 40)):
    ids, images, masks = [], [], []
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
        Image.fromarray(img).save(tmp_path / f"{i}.jpg")
        m = np.zeros(mask_size[::-1], dtype=bool)
        m[10:30, 10:20] = True
        Image.fromarray(m).convert("1").save(tmp_path / f"{i}_lesion.bmp")  # 1-bit BMP like PH2
        ids.append(f"id{i}")
        images.append(str(tmp_path / f"{i}.jpg"))
        masks.append(str(tmp_path / f"{i}_lesion.bmp"))
    return ids, images, masks


def test_build_read_and_reuse(tmp_path):
    ids, images, masks = _write(tmp_path)
    cache = open_or_build(tmp_path / "c", "t", ids, images, masks, 20)
    assert len(cache) == 5 and cache.image(3).shape == (20, 20, 3) and cache.image(3).dtype == np.uint8
    m = cache.mask(0)
    assert m.shape == (20, 20) and set(np.unique(m)) == {0, 1}
    assert m[8, 6] == 1 and m[0, 0] == 0  # lesion box rescaled 50x40 -> 20x20
    assert not cache.image(0).flags.writeable  # a view of the memory map, not a copy
    expected, _ = load_image(images[2], (20, 20))
    np.testing.assert_array_equal(cache.image(2), expected)
    files = sorted(os.listdir(tmp_path / "c"))
    again = open_or_build(tmp_path / "c", "t", ids, images, masks, 20)
    assert sorted(os.listdir(tmp_path / "c")) == files and again.path == cache.path


def test_changed_input_gets_new_cache(tmp_path):
    ids, images, masks = _write(tmp_path)
    first = open_or_build(tmp_path / "c", "t", ids, images, masks, 16).path
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(images[1])
    os.utime(images[1], ns=(1, 1))
    second = open_or_build(tmp_path / "c", "t", ids, images, masks, 16)
    assert second.path != first
    assert second.image(1).max() == 0


def test_failed_build_leaves_nothing_that_looks_valid(tmp_path):
    ids, images, masks = _write(tmp_path, n=300)
    (tmp_path / "299.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DatasetError, match=r"(?s)299\.jpg.*cannot decode.*re-download"):
        open_or_build(tmp_path / "c", "t", ids, images, masks, 16)
    assert os.listdir(tmp_path / "c") == []


def test_mask_of_wrong_size_is_named(tmp_path):
    ids, images, masks = _write(tmp_path, n=2, mask_size=(30, 30))
    with pytest.raises(DatasetError, match=r"(?s)0_lesion\.bmp.*mask is 30x30 but its image is 50x40"):
        open_or_build(tmp_path / "c", "t", ids, images, masks, 16)


def test_samples_without_masks(tmp_path):
    ids, images, _ = _write(tmp_path, n=3)
    cache = ImageCache(open_or_build(tmp_path / "c", "t", ids, images, [None, None, None], 8).path)
    assert cache.mask(1) is None and cache.index["id2"] == 2
