"""Real images (``../shared/real_images/``, see its README): ``check`` passes, the cache holds the pixels and
masks an independent Pillow decode gives, and the files are never modified. Skipped where the folder is absent."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermfuse_data.datamodule import DermDataModule

REAL_IMAGES = Path(__file__).resolve().parents[2].parent / "shared" / "real_images"
#: dataset -> (folder, source options, images, with masks)
DATASETS = {
    "ph2": ("ph2", {}, 20, True),
    "ham10000": ("ham10000", {}, 19, False),
    "isic2018_task1": ("isic2018_task1", {"splits": "train"}, 15, True),
}
SIZE = 128


@pytest.fixture(scope="module")
def real_images() -> Path:
    """``../shared/real_images`` (skipped where absent: only the developers' checkout has it)."""
    if not (REAL_IMAGES / "SHA1SUMS").is_file():
        pytest.skip("../shared/real_images is absent (only the developers' checkout has it)")
    return REAL_IMAGES


def _sha1sums_hold(folder: Path) -> bool:
    for line in (folder / "SHA1SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        if hashlib.sha1((folder / name).read_bytes()).hexdigest() != digest:
            return False
    return True


def _reference_image(path: str) -> np.ndarray:
    """Pillow alone, full decode (no JPEG draft), then the cache's resize."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR, reducing_gap=2.0)).astype(int)


def _reference_mask(path: str) -> np.ndarray:
    """Any non-zero channel is lesion (1-bit BMP, 24-bit RGB BMP holding 0/255, 8-bit PNG), then nearest."""
    with Image.open(path) as im:
        full = np.asarray(im)
    lesion = full.any(axis=-1) if full.ndim == 3 else full > 0
    return np.asarray(Image.fromarray(lesion).resize((SIZE, SIZE), Image.NEAREST)).astype(np.uint8)


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_real_images_pass_check(real_images, dataset, cli):
    folder, options, n, masks = DATASETS[dataset]
    args = [f"--option={k}={v}" for k, v in options.items()]
    rc, out, _ = cli("check", "--dataset", dataset, "--root", real_images / folder, "--json", *args)
    report = json.loads(out)
    assert rc == 0 and report["problems"] == [], report["problems"]
    assert report["rows"] == n and report["images_verified"] == n * (2 if masks else 1)
    if dataset == "ph2":  # the README's one odd file: IMD002's mask is a 24-bit RGB BMP among 1-bit ones
        assert len(report["warnings"]) == 1 and "IMD002_lesion.bmp is RGB (usual 1)" in report["warnings"][0]
    else:
        assert report["warnings"] == []


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_real_images_cache_to_the_pixels_and_masks_pillow_gives(real_images, dataset, tmp_path):
    folder, options, n, masks = DATASETS[dataset]
    dm = DermDataModule(
        dataset,
        root=str(real_images / folder),
        task="segmentation" if masks else "classification",
        image_size=SIZE,
        meta_features=None,
        cache_dir=str(tmp_path),
        source_options=options,
    )
    cache = dm.dataset("train").cache
    table = dm.table
    assert len(cache) == n
    for sid, image_path, mask_path in zip(
        *(table.column(c).to_pylist() for c in ("sample_id", "image_path", "mask_path"))
    ):
        row = cache.index[sid]
        error = np.abs(cache.image(row).astype(int) - _reference_image(image_path))
        if Path(image_path).suffix.lower() == ".jpg" and Image.open(image_path).size[0] >= 2 * SIZE:
            assert error.mean() < 2, sid  # JPEG decoded at 1/2 scale (draft) before the resize
        else:
            assert error.max() == 0, sid
        if masks:
            np.testing.assert_array_equal(cache.mask(row), _reference_mask(mask_path), err_msg=sid)
            assert 0.02 < cache.mask(row).mean() < 0.95, sid  # a lesion, not an empty or full mask
    assert _sha1sums_hold(real_images)  # reading never touched a file
