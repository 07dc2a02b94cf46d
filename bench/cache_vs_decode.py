"""Benchmark: samples/s from the Arrow image cache vs decoding the JPEG each step, side by side.

    .venv/bin/python bench/cache_vs_decode.py [--n 400] [--size 224]

Writes N dermoscopy-sized (600x450) JPEGs to a temporary folder, builds the cache once, then reads
random rows both ways in the same process and prints throughput and the ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dermfuse_data.cache import open_or_build
from dermfuse_data.images import load_image
from dermfuse_data.synthetic.lesions import draw_lesion


def _rate(fn, rows) -> float:
    start = time.perf_counter()
    for i in rows:
        fn(int(i))
    return len(rows) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.n):
            rgb, _ = draw_lesion(rng, (450, 600), i % 4, 4)
            path = Path(tmp) / f"ISIC_{i:07d}.jpg"
            Image.fromarray(rgb).save(path, quality=95)
            paths.append(str(path))
        t0 = time.perf_counter()
        cache = open_or_build(
            Path(tmp) / "cache", "bench", [Path(p).stem for p in paths], paths, [None] * len(paths), args.size
        )
        build = time.perf_counter() - t0
        rows = rng.integers(0, args.n, size=min(args.n, 300))
        decode = _rate(lambda i: load_image(paths[i], (args.size, args.size)), rows)
        cached = _rate(lambda i: np.array(cache.image(i)), np.tile(rows, 20))
        print(f"images: {args.n} JPEG 600x450 -> {args.size}x{args.size}")
        print(f"cache build (once):        {build:8.2f} s  ({args.n / build:8.0f} img/s)")
        print(f"decode + resize per step:  {decode:8.0f} img/s")
        print(f"memory-mapped cache read:  {cached:8.0f} img/s")
        print(f"ratio cache / decode:      {cached / decode:8.1f} x")


if __name__ == "__main__":
    main()
