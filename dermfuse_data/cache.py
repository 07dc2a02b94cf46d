"""Decode-once image cache: a memory-mapped Arrow IPC file of resized uint8 images and masks.

(DESIGN data flow step 4.) The file name carries a key computed from what it was built from (each
file's path, size and modification time, the target size and the cache format version), so a changed
dataset gets a new cache and an unchanged one is reused. It is written to a temporary file and
renamed when complete: a killed build leaves no file that looks valid. Reads are zero-copy views of
the memory map, so DDP ranks and DataLoader workers share one copy through the page cache.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from dermfuse_data.images import load_image

CACHE_VERSION = 1
BATCH_ROWS = 256


def cache_key(image_paths: Sequence[str], mask_paths: Sequence[str | None], size: tuple[int, int]) -> str:
    """Hex key over the inputs' paths, byte sizes and mtimes, the size and the format version."""
    h = hashlib.sha256(f"v{CACHE_VERSION}|{size[0]}x{size[1]}".encode())
    for image, mask in zip(image_paths, mask_paths):
        for p in (image, mask):
            if p is None:
                h.update(b"|-")
                continue
            st = os.stat(p)
            h.update(f"|{p}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def _schema(size: tuple[int, int]) -> pa.Schema:
    h, w = size
    return pa.schema([pa.field("sample_id", pa.string()),
                      pa.field("image", pa.binary(h * w * 3)),
                      pa.field("mask", pa.binary(h * w)),
                      pa.field("orig_width", pa.int32()), pa.field("orig_height", pa.int32())],
                     metadata={"height": str(h), "width": str(w), "version": str(CACHE_VERSION)})


def _decode(args):
    image_path, mask_path, size = args
    image, original = load_image(image_path, size)
    mask = None
    if mask_path is not None:
        mask, _ = load_image(mask_path, size, mask=True, expect_size=original)
    return image, mask, original


def build_cache(path: Path, sample_ids: Sequence[str], image_paths: Sequence[str],
                mask_paths: Sequence[str | None], size: tuple[int, int], workers: int = 2,
                desc: str = "caching images") -> Path:
    """Decode, resize and write every image (and mask) to ``path`` atomically; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".partial")
    os.close(fd)
    schema = _schema(size)
    jobs = [(i, m, size) for i, m in zip(image_paths, mask_paths)]
    try:
        with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, schema) as writer, \
                ThreadPoolExecutor(max(1, workers)) as pool:
            bar = tqdm(total=len(jobs), desc=desc, unit="img", disable=len(jobs) < 64)
            for start in range(0, len(jobs), BATCH_ROWS):
                decoded = list(pool.map(_decode, jobs[start:start + BATCH_ROWS]))
                bar.update(len(decoded))
                writer.write_batch(pa.record_batch([
                    pa.array(sample_ids[start:start + BATCH_ROWS], pa.string()),
                    pa.array([d[0].tobytes() for d in decoded], schema.field("image").type),
                    pa.array([None if d[1] is None else d[1].tobytes() for d in decoded],
                             schema.field("mask").type),
                    pa.array([d[2][0] for d in decoded], pa.int32()),
                    pa.array([d[2][1] for d in decoded], pa.int32())], schema=schema))
            bar.close()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


class ImageCache:
    """Zero-copy random access to a cache file: ``cache.image(i)`` -> (H, W, 3) uint8 view."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._source = pa.memory_map(str(self.path), "r")
        table = pa.ipc.open_file(self._source).read_all()
        self.sample_ids: list[str] = table.column("sample_id").to_pylist()
        self.index = {sid: i for i, sid in enumerate(self.sample_ids)}
        meta = table.schema.metadata
        self.size = (int(meta[b"height"]), int(meta[b"width"]))
        self._images, self._masks, self._starts = [], [], [0]
        for chunk_img, chunk_mask in zip(table.column("image").chunks, table.column("mask").chunks):
            self._images.append(self._view(chunk_img, (*self.size, 3)))
            valid = chunk_mask.is_valid().to_numpy(zero_copy_only=False)
            self._masks.append((self._view(chunk_mask, self.size) if valid.any() else None, valid))
            self._starts.append(self._starts[-1] + len(chunk_img))

    @staticmethod
    def _view(chunk: pa.FixedSizeBinaryArray, shape: tuple[int, ...]) -> np.ndarray:
        data = chunk.buffers()[1]
        width = chunk.type.byte_width
        arr = np.frombuffer(data, dtype=np.uint8, count=(chunk.offset + len(chunk)) * width)
        return arr.reshape(-1, *shape)[chunk.offset:]

    def __len__(self) -> int:
        return len(self.sample_ids)

    def _locate(self, i: int) -> tuple[int, int]:
        c = int(np.searchsorted(self._starts, i, side="right")) - 1
        return c, i - self._starts[c]

    def image(self, i: int) -> np.ndarray:
        """Row ``i``'s image, (H, W, 3) uint8 (a read-only view of the memory map)."""
        c, j = self._locate(i)
        return self._images[c][j]

    def mask(self, i: int) -> np.ndarray | None:
        """Row ``i``'s mask, (H, W) uint8 0/1, or None where the sample has none."""
        c, j = self._locate(i)
        view, valid = self._masks[c]
        return view[j] if valid[j] else None


def open_or_build(directory: str | Path, name: str, sample_ids: Sequence[str], image_paths: Sequence[str],
                  mask_paths: Sequence[str | None], size: int | tuple[int, int],
                  workers: int = 2) -> ImageCache:
    """The cache for these inputs at this size, built first if no valid one exists."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    key = cache_key(image_paths, mask_paths, size)
    path = Path(directory) / f"{name}-{size[0]}x{size[1]}-{key}.arrow"
    if not path.exists():
        build_cache(path, list(sample_ids), image_paths, mask_paths, size, workers,
                    desc=f"caching {name} at {size[0]}x{size[1]}")
    return ImageCache(path)
