"""Loader benchmark: what the cache serves vs decoding the source file per sample, and what the DataModule serves.

Per source kind (600x450 JPEG, 1024x768 JPEG, 767x576 BMP, 16-bit DICOM of ~3000x5000) in one run:
the cache build (images/s with every core, MiB), then samples/s of one process on one torch thread
(a DataLoader worker's setting) of

* ``decode+aug``: decode + resize the source file and the CPU train transform, per sample (no cache);
* ``cache+aug``: the cache row and the same CPU train transform (``augment_on: cpu``, one worker's work);
* ``cache uint8``: the cache row as served for device augmentation (``augment_on: device``: the CPU side).

Then the DataModule itself (a generated PAD-UFES-20-layout dataset, train loader): images/s for 0..N workers with
``augment_on`` cpu and device (the device step included, run on the bench device).
"""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

from bench.common import BenchSize, Budget, bench_dataset, synchronize
from dermfuse_data.cache import open_or_build
from dermfuse_data.datamodule import DermDataModule, SampleDataset
from dermfuse_data.device_augment import DeviceBatchTransform
from dermfuse_data.images import load_image
from dermfuse_data.loader_options import available_cores, one_torch_thread
from dermfuse_data.synthetic.dicom import write_dicom
from dermfuse_data.synthetic.lesions import draw_lesion
from dermfuse_data.transforms import build_transform

#: source kind -> (file suffix, (H, W)); the DICOM's size comes from the bench size
SOURCES = {
    "jpeg_600x450": (".jpg", (450, 600)),
    "jpeg_1024x768": (".jpg", (768, 1024)),
    "bmp_767x576": (".bmp", (576, 767)),
}
DISTINCT_IMAGES = 4  # drawn once per kind, saved under many names (decode cost does not depend on the pixels)


def write_source(folder: Path, kind: str, n: int, dicom_shape: tuple[int, int]) -> list[str]:
    """``n`` files of one source kind in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    if kind.startswith("dicom"):
        h, w = dicom_shape
        yy, xx = np.mgrid[0:h, 0:w]
        for i in range(n):
            breast = np.exp(-(((xx - w * 0.1) / (0.6 * w)) ** 2 + ((yy - h / 2) / (0.45 * h)) ** 2))
            pixels = (3000 * breast + rng.normal(0, 60, (h, w))).clip(0, 4095).astype(np.uint16)
            paths.append(str(write_dicom(folder / f"{i:05d}.dcm", pixels)))
        return paths
    suffix, shape = SOURCES[kind]
    drawn = [Image.fromarray(draw_lesion(rng, shape, i % 4, 4)[0]) for i in range(DISTINCT_IMAGES)]
    for i in range(n):
        path = folder / f"{i:05d}{suffix}"
        drawn[i % DISTINCT_IMAGES].save(path, quality=95) if suffix == ".jpg" else drawn[i % DISTINCT_IMAGES].save(path)
        paths.append(str(path))
    return paths


def _rate(fn, n: int, seconds: float) -> float:
    """Calls/s of ``fn(i)`` over up to ``n`` calls or ``seconds``."""
    start, done = time.perf_counter(), 0
    for i in range(n):
        fn(i)
        done += 1
        if time.perf_counter() - start > seconds:
            break
    return done / (time.perf_counter() - start)


def source_row(kind: str, paths: list[str], size: int, cache_dir: Path, seconds: float) -> dict:
    """Cache build and per-sample rates of one source kind (module doc)."""
    shape, n = (size, size), len(paths)
    ids = [Path(p).stem for p in paths]
    cores = available_cores()
    start = time.perf_counter()
    cache = open_or_build(cache_dir / kind, kind, ids, paths, [None] * n, size, workers=cores, progress=False)
    build_s = time.perf_counter() - start
    train = build_transform(True, "standard", shape)

    def decode(i: int) -> None:
        image, _ = load_image(paths[i % n], shape)
        train(tv_tensors.Image(torch.from_numpy(image.copy()).permute(2, 0, 1)))  # decoders may hand a read-only view

    rows = np.arange(n)
    labels = np.zeros(n, dtype=np.int64)
    with_aug = SampleDataset(cache, rows, labels, None, ids, False, train)
    raw = SampleDataset(cache, rows, labels, None, ids, False, None)
    with one_torch_thread():  # one worker's work
        decode_rate = _rate(decode, n, seconds)
        cache_aug = _rate(lambda i: with_aug[i % n], 10 * n, seconds)
        cache_raw = _rate(lambda i: raw[i % n], 100 * n, seconds)
    return {
        "source": kind,
        "files": n,
        "file_mib": sum(Path(p).stat().st_size for p in paths) / n / 2**20,
        "build_images_per_s": n / build_s,
        "build_workers": cores,
        "cache_mib": cache.path.stat().st_size / 2**20,
        "decode_aug_per_s": decode_rate,
        "cache_aug_per_s": cache_aug,
        "cache_uint8_per_s": cache_raw,
        "ratio_cache_uint8_vs_decode": cache_raw / decode_rate,
        "ratio_cache_aug_vs_decode": cache_aug / decode_rate,
    }


def datamodule_rows(
    size: BenchSize, device: torch.device, cache_dir: Path, budget: Budget, image_size: int | None = None
) -> list[dict]:
    """Images/s of the DataModule's train loader per worker count and ``augment_on`` (module doc)."""
    side = image_size or size.image_size
    rows = []
    for augment_on, workers in itertools.product(("cpu", "device"), size.workers):
        if not budget.allows(20):
            rows.append({"image_size": side, "augment_on": augment_on, "workers": workers, "skipped": "time budget"})
            continue
        dm = DermDataModule(
            "pad_ufes_20",
            root=str(bench_dataset(cache_dir, size)),
            image_size=side,
            batch_size=size.loader_batch,
            num_workers=workers,
            augment="standard",
            augment_on=augment_on,
            cache_dir=str(cache_dir),
            pin_memory=device.type == "cuda",
        )
        dm.setup("fit")
        loader = dm.train_dataloader()
        transform = DeviceBatchTransform("standard", (side, side))
        batches = itertools.chain.from_iterable(itertools.repeat(loader))
        next(batches)  # worker start-up is not serving
        start, images = time.perf_counter(), 0
        for batch in itertools.islice(batches, size.loader_batches):
            image = batch["image"].to(device, non_blocking=True)
            if augment_on == "device":
                image = transform({"image": image}, train=True)["image"]
            images += image.shape[0]
        synchronize(device)
        rows.append(
            {
                "image_size": side,
                "augment_on": augment_on,
                "workers": workers,
                "images_per_s": images / (time.perf_counter() - start),
                "batch_bytes_per_image": batch["image"][0].numel() * batch["image"].element_size(),
            }
        )
        del loader, batches
    return rows


def run(size: BenchSize, device: torch.device, budget: Budget, net_sizes: set[int] = frozenset()) -> dict:
    """The whole loader section: ``sources`` rows, ``datamodule`` rows (also at the nets' resolutions)."""
    with tempfile.TemporaryDirectory(prefix="dermfuse-bench-") as tmp:
        tmp = Path(tmp)
        sources = []
        for kind, n in size.sources.items():
            if not budget.allows(30):
                sources.append({"source": kind, "skipped": "time budget"})
                continue
            paths = write_source(tmp / "files" / kind, kind, n, size.dicom_shape)
            sources.append(
                source_row(kind, paths, size.image_size, tmp / "cache", seconds=min(20.0, budget.left() / 20))
            )
        datamodule = []
        for side in sorted({size.image_size, *net_sizes}):
            datamodule += datamodule_rows(size, device, tmp / "dm", budget, side)
    return {"sources": sources, "datamodule": datamodule}
