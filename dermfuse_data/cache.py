"""Decode-once image cache: a memory-mapped Arrow IPC file of resized uint8 images and masks.

(DESIGN data flow step 4.) The file name carries a key computed from what it was built from (the
sample ids, the target size, the cache format version and each file: by default its path, size,
modification and change times and inode, or with ``key="content"`` a hash of its bytes), so a changed
dataset gets a new cache and an unchanged one is reused. The change time and inode catch a file
replaced by one of the same size with its old modification time restored (``cp -p``, ``rsync -a``,
``tar``); only the content key also survives what restores those (a filesystem snapshot).
It is written to a temporary file and renamed when complete: a killed build leaves no file that
looks valid, only a ``*.partial`` file that the next build deletes (:func:`remove_stale_partials`).
Reads are zero-copy views of the memory map, so DDP ranks and DataLoader workers share one copy
through the page cache. Files are readable by the group (shared cluster caches) and a full disk or
a folder without write permission is a :class:`~dermfuse_data.errors.DatasetError` naming the
folder (see :mod:`dermfuse_data.storage`).
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from dermfuse_data.images import DICOM_SUFFIXES, load_image
from dermfuse_data.storage import mark_used, shareable, storage_error

#: 2: 16-bit images scaled, EXIF orientation applied, alpha composited (dermfuse_data.images)
CACHE_VERSION = 2
#: what identifies an input file in the cache key (see the module doc)
CACHE_KEYS = ("stat", "content")
BATCH_ROWS = 256
#: by default a build shows its progress bar from this many images on
PROGRESS_MIN_IMAGES = 64
#: decode in processes (not threads) from this many DICOM files on: pydicom + windowing hold the GIL
PROCESS_MIN_DICOMS = 16
#: a ``*.partial`` file not written to for this long (seconds) belongs to a dead build
STALE_PARTIAL_S = 3600
_PARTIAL = re.compile(r"\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[^.]+\.partial$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def new_partial(path: Path) -> str:
    """Create an empty ``<path>.<host>.<pid>.<random>.partial`` next to ``path``; returns its name.

    Write there and ``os.replace`` it onto ``path`` when complete; the host and pid let
    :func:`remove_stale_partials` tell a killed writer's leftover from a running one's file.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.{_host()}.{os.getpid()}.", suffix=".partial")
    os.close(fd)
    return tmp


def stale_partials(directory: str | Path, max_idle_s: float = STALE_PARTIAL_S) -> list[Path]:
    """The ``*.partial`` files in ``directory`` that killed builds left.

    A partial is stale when its writer (host and pid are in its name) was on this host and is no
    longer running, or when nothing has written to it for ``max_idle_s`` seconds (a live build
    writes every :data:`BATCH_ROWS` images). Partials of running builds are not stale.
    """
    stale, now = [], time.time()
    for partial in Path(directory).glob("*.partial"):
        match = _PARTIAL.search(partial.name)
        try:
            idle = now - partial.stat().st_mtime
        except FileNotFoundError:  # finished or removed meanwhile
            continue
        if (match and match["host"] == _host() and not _alive(int(match["pid"]))) or idle > max_idle_s:
            stale.append(partial)
    return stale


def remove_stale_partials(directory: str | Path, max_idle_s: float = STALE_PARTIAL_S) -> list[Path]:
    """Delete the :func:`stale_partials` of ``directory``; returns them."""
    removed = []
    for partial in stale_partials(directory, max_idle_s):
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
            removed.append(partial)
    return removed


@contextlib.contextmanager
def atomic_arrow_file(path: Path, schema: pa.Schema) -> Iterator[pa.ipc.RecordBatchFileWriter]:
    """Arrow IPC file writer on a :func:`new_partial` next to ``path``, renamed onto ``path`` when
    the block completes; on any error the partial file is removed and ``path`` is left untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_partial(path)
    try:
        with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            yield writer
        shareable(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fixed_size_rows(chunk: pa.FixedSizeBinaryArray, shape: tuple[int, ...]) -> np.ndarray:
    """Zero-copy ``(len(chunk), *shape)`` uint8 view of a fixed-size binary Arrow chunk."""
    arr = np.frombuffer(chunk.buffers()[1], dtype=np.uint8, count=(chunk.offset + len(chunk)) * chunk.type.byte_width)
    return arr.reshape(-1, *shape)[chunk.offset :]


def locate(starts: Sequence[int], i: int) -> tuple[int, int]:
    """(chunk, row in chunk) of row ``i`` given each chunk's first row ``starts`` (plus the total)."""
    c = int(np.searchsorted(starts, i, side="right")) - 1
    return c, i - starts[c]


def file_digest(path: str) -> str:
    """SHA-256 of the file's bytes (hex)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def cache_key(
    image_paths: Sequence[str],
    mask_paths: Sequence[str | None],
    size: tuple[int, int],
    sample_ids: Sequence[str] = (),
    key: str = "stat",
    workers: int = 2,
    progress: bool | None = None,
) -> str:
    """Hex key over the sample ids, the size, the format version and every input file (see module doc).

    ``key="stat"``: each file's path, size, mtime, ctime and inode (no file is read). ``key="content"``:
    a SHA-256 of each file's bytes, read with ``workers`` threads (tqdm bar as in :func:`build_cache`).
    """
    if key not in CACHE_KEYS:
        raise ValueError(f"cache key {key!r}: choose one of {CACHE_KEYS}")
    h = hashlib.sha256(f"v{CACHE_VERSION}|{size[0]}x{size[1]}|{key}".encode())
    h.update("\x1f".join(sample_ids).encode())
    files = [p for pair in zip(image_paths, mask_paths) for p in pair]
    if key == "content":
        present = [p for p in files if p is not None]
        show = len(present) >= PROGRESS_MIN_IMAGES if progress is None else progress
        with (
            ThreadPoolExecutor(max(1, workers)) as pool,
            tqdm(total=len(present), desc="hashing image files", unit="file", disable=not show) as bar,
        ):
            digests = {}
            for p, digest in zip(present, pool.map(file_digest, present)):
                digests[p] = digest
                bar.update()
        parts = ("-" if p is None else digests[p] for p in files)
    else:
        parts = ("-" if p is None else _stat_part(p) for p in files)
    for part in parts:
        h.update(f"|{part}".encode())
    return h.hexdigest()[:20]


def _stat_part(path: str) -> str:
    st = os.stat(path)
    return f"{path}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}"


def _schema(size: tuple[int, int]) -> pa.Schema:
    h, w = size
    return pa.schema(
        [
            pa.field("sample_id", pa.string()),
            pa.field("image", pa.binary(h * w * 3)),
            pa.field("mask", pa.binary(h * w)),
            pa.field("orig_width", pa.int32()),
            pa.field("orig_height", pa.int32()),
        ],
        metadata={"height": str(h), "width": str(w), "version": str(CACHE_VERSION)},
    )


def _decode(args):
    image_path, mask_path, size = args
    image, original = load_image(image_path, size)
    mask = None
    if mask_path is not None:
        mask, _ = load_image(mask_path, size, mask=True, expect_size=original)
    return image, mask, original


def decode_pool(workers: int, image_paths: Sequence[str]) -> Executor:
    """Threads for JPEG/PNG/BMP (PIL releases the GIL while decoding); processes for many DICOMs
    (parsing and percentile windowing of 16-bit mammograms hold it). Spawned, never forked: the caller
    may hold CUDA or OpenMP state."""
    dicoms = sum(Path(p).suffix.lower() in DICOM_SUFFIXES for p in image_paths)
    if workers > 1 and dicoms >= PROCESS_MIN_DICOMS:
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    return ThreadPoolExecutor(max(1, workers))


def build_cache(
    path: Path,
    sample_ids: Sequence[str],
    image_paths: Sequence[str],
    mask_paths: Sequence[str | None],
    size: tuple[int, int],
    workers: int = 2,
    desc: str = "caching images",
    progress: bool | None = None,
) -> Path:
    """Decode, resize and write every image (and mask) to ``path`` atomically; returns ``path``.

    Written to a :func:`new_partial` file and renamed when complete; stale partials of killed
    builds are deleted first. ``progress``: show a tqdm bar on stderr (default: from
    :data:`PROGRESS_MIN_IMAGES` images on), then the build's rate and size. ``workers`` decode in
    parallel (:func:`decode_pool`).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(path.parent)
        return _write_cache(path, sample_ids, image_paths, mask_paths, size, workers, desc, progress)
    except OSError as err:
        raise (storage_error(err, path.parent, "the image cache") or err) from None


def _write_cache(path, sample_ids, image_paths, mask_paths, size, workers, desc, progress) -> Path:
    schema = _schema(size)
    jobs = [(i, m, size) for i, m in zip(image_paths, mask_paths)]
    show = len(jobs) >= PROGRESS_MIN_IMAGES if progress is None else progress
    began = time.perf_counter()
    with (
        atomic_arrow_file(path, schema) as writer,
        decode_pool(workers, image_paths) as pool,
        tqdm(total=len(jobs), desc=desc, unit="img", disable=not show) as bar,
    ):
        for start in range(0, len(jobs), BATCH_ROWS):
            decoded = list(pool.map(_decode, jobs[start : start + BATCH_ROWS]))
            bar.update(len(decoded))
            writer.write_batch(
                pa.record_batch(
                    [
                        pa.array(sample_ids[start : start + BATCH_ROWS], pa.string()),
                        pa.array([d[0].tobytes() for d in decoded], schema.field("image").type),
                        pa.array(
                            [None if d[1] is None else d[1].tobytes() for d in decoded], schema.field("mask").type
                        ),
                        pa.array([d[2][0] for d in decoded], pa.int32()),
                        pa.array([d[2][1] for d in decoded], pa.int32()),
                    ],
                    schema=schema,
                )
            )
    if show:
        seconds = time.perf_counter() - began
        print(
            f"cached {len(jobs)} images in {seconds:.1f} s ({len(jobs) / max(seconds, 1e-9):,.0f} images/s, "
            f"{max(1, workers)} {'processes' if isinstance(pool, ProcessPoolExecutor) else 'threads'}): "
            f"{path.stat().st_size / 2**20:,.0f} MiB at {path}",
            file=sys.stderr,
            flush=True,
        )
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
            self._images.append(fixed_size_rows(chunk_img, (*self.size, 3)))
            valid = chunk_mask.is_valid().to_numpy(zero_copy_only=False)
            self._masks.append((fixed_size_rows(chunk_mask, self.size) if valid.any() else None, valid))
            self._starts.append(self._starts[-1] + len(chunk_img))

    def __len__(self) -> int:
        return len(self.sample_ids)

    def image(self, i: int) -> np.ndarray:
        """Row ``i``'s image, (H, W, 3) uint8 (a read-only view of the memory map)."""
        c, j = locate(self._starts, i)
        return self._images[c][j]

    def mask(self, i: int) -> np.ndarray | None:
        """Row ``i``'s mask, (H, W) uint8 0/1, or None where the sample has none."""
        c, j = locate(self._starts, i)
        view, valid = self._masks[c]
        return view[j] if valid[j] else None


def open_or_build(
    directory: str | Path,
    name: str,
    sample_ids: Sequence[str],
    image_paths: Sequence[str],
    mask_paths: Sequence[str | None],
    size: int | tuple[int, int],
    workers: int = 2,
    progress: bool | None = None,
    key: str = "stat",
) -> ImageCache:
    """The cache for these inputs at this size, built first if no valid one exists.

    Only a completed ``<name>-<size>-<key>.arrow`` counts (``key``: ``stat`` or ``content``, see
    :func:`cache_key`); a reused one is marked used now (``cache prune`` keeps it); ``progress`` as
    in :func:`build_cache`. One writer at a time (:func:`build_lock`): processes on other nodes sharing
    the folder, or other ranks of this node, wait for the build and then read the finished file.
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    digest = cache_key(image_paths, mask_paths, size, list(sample_ids), key, workers, progress)
    path = Path(directory) / f"{name}-{size[0]}x{size[1]}-{digest}.arrow"
    if path.exists():
        mark_used(path)
        return ImageCache(path)
    with build_lock(path):
        if not path.exists():  # another process may have built it while this one waited
            build_cache(
                path,
                list(sample_ids),
                image_paths,
                mask_paths,
                size,
                workers,
                desc=f"caching {name} at {size[0]}x{size[1]}",
                progress=progress,
            )
    return ImageCache(path)


@contextmanager
def build_lock(path: Path) -> Iterator[None]:
    """Exclusive lock ``<path>.lock`` (``flock``, via filelock) held while one process builds ``path``.

    The kernel drops it when its holder dies, so a killed build never blocks the next one; waiting is
    announced on stderr. On a filesystem without working ``flock`` (some NFS set-ups), build the cache
    from one process before starting a multi-node job. The lock file is removed after the build: a process
    that was waiting on it re-checks ``path`` (built meanwhile) and, were the build to have failed, at worst
    two processes build the same file, each renaming its own complete partial onto it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"waiting for another process to finish building {path}", file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
        with contextlib.suppress(OSError):
            os.unlink(lock.lock_file)
