"""Cache build across processes: one writer at a time (a lock the kernel drops when its holder dies),
DICOM decoded in processes with the same result as threads."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dermfuse_data.cache import ImageCache, build_cache, build_lock, decode_pool, open_or_build
from dermfuse_data.synthetic.dicom import write_dicom

REPO = Path(__file__).resolve().parents[2]
#: a second process calling open_or_build on the same inputs (argv: folder, image paths...)
SECOND_BUILDER = """
import sys
from dermfuse_data.cache import open_or_build
paths = sys.argv[2:]
cache = open_or_build(sys.argv[1], "lock", [str(i) for i in range(len(paths))], paths, [None] * len(paths), 16,
                      progress=True)
print("opened", cache.path, flush=True)
"""


def _jpegs(folder: Path, n: int = 6) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
        paths.append(str(folder / f"{i}.jpg"))
    return paths


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def test_a_second_process_waits_for_the_build_and_reads_it_without_rebuilding(tmp_path):
    paths = _jpegs(tmp_path)
    built = open_or_build(tmp_path / "c", "lock", [str(i) for i in range(6)], paths, [None] * 6, 16).path
    built.unlink()  # the same name again: the second process must wait for this process's build
    with build_lock(built):
        second = subprocess.Popen(
            [sys.executable, "-c", SECOND_BUILDER, str(tmp_path / "c"), *paths],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        seen = ""
        while "waiting for another process to finish building" not in seen and second.poll() is None:
            seen += second.stderr.readline()  # blocks until the second process reaches the lock
        assert second.poll() is None, seen  # it waits
        build_cache(built, [str(i) for i in range(6)], paths, [None] * 6, (16, 16))  # this process builds
        mtime = built.stat().st_mtime_ns
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, seen + err
    assert "cached" not in seen + err  # read, not rebuilt
    assert f"opened {built}" in out and built.stat().st_mtime_ns == mtime
    assert not list(built.parent.glob("*.partial"))


def test_a_killed_lock_holder_does_not_block_the_next_build(tmp_path):
    target = tmp_path / "c" / "lock-16x16-x.arrow"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom pathlib import Path\nfrom dermfuse_data.cache import build_lock\n"
            "with build_lock(Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(600)\n",
            str(target),
        ],
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    start = time.time()
    with build_lock(target):
        assert time.time() - start < 5  # the kernel released the dead holder's lock


def test_dicoms_are_decoded_in_processes_with_the_same_pixels_as_threads(tmp_path, capsys):
    rng = np.random.default_rng(1)
    paths = []
    for i in range(16):
        pixels = rng.integers(0, 4000, (60, 40), dtype=np.uint16)
        paths.append(str(write_dicom(tmp_path / f"{i}.dcm", pixels)))
    pool = decode_pool(2, paths)
    assert type(pool).__name__ == "ProcessPoolExecutor"
    pool.shutdown()
    assert type(decode_pool(2, paths[:3])).__name__ == "ThreadPoolExecutor"  # too few to pay for processes
    ids = [str(i) for i in range(16)]
    processes = open_or_build(tmp_path / "p", "d", ids, paths, [None] * 16, 24, workers=2, progress=True)
    printed = re.search(
        r"cached 16 images in ([\d.]+) s \(([\d,]+) images/s, 2 processes\): \d+ MiB", capsys.readouterr().err
    )
    assert printed and 0 < float(printed[1]) < 600, printed  # the build's own duration, and its rate
    threads = ImageCache(open_or_build(tmp_path / "t", "d", ids, paths, [None] * 16, 24, workers=1).path)
    for i in range(16):
        np.testing.assert_array_equal(processes.image(i), threads.image(i))
