"""Image cache: decode once, keyed by inputs, atomic, zero-copy reads, masks checked."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from dermfuse_data import cache
from dermfuse_data.cache import ImageCache, open_or_build
from dermfuse_data.errors import DatasetError
from dermfuse_data.images import load_image

REPO = Path(__file__).resolve().parents[2]


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


# ------------------------------------------------------------------ progress bar
def test_progress_bar_on_stderr_while_building(tmp_path, capsys):
    ids, images, masks = _write(tmp_path, n=cache.PROGRESS_MIN_IMAGES)
    open_or_build(tmp_path / "c", "big", ids, images, masks, 8)
    err = capsys.readouterr().err
    n = cache.PROGRESS_MIN_IMAGES
    assert "caching big at 8x8" in err and f"{n}/{n}" in err and "img" in err
    open_or_build(tmp_path / "c", "big", ids, images, masks, 8)  # reused: nothing to show
    assert "caching" not in capsys.readouterr().err
    few = slice(0, 3)
    open_or_build(tmp_path / "c", "few", ids[few], images[few], masks[few], 8)
    assert "caching" not in capsys.readouterr().err  # below the threshold
    open_or_build(tmp_path / "c", "few", ids[few], images[few], masks[few], 6, progress=True)
    err = capsys.readouterr().err
    assert "caching few at 6x6" in err and "3/3" in err


# ------------------------------------------------------------------ killed builds
KILLED_BUILD = """
import json, os, signal, sys
from dermfuse_data import cache
directory, ids, images, masks = json.loads(sys.argv[1])
cache.BATCH_ROWS = 4                       # several batches reach the disk before the kill
decode, calls = cache._decode, []
def dying(job):
    calls.append(job)
    if len(calls) == 11:                   # mid third batch
        os.kill(os.getpid(), signal.SIGKILL)
    return decode(job)
cache._decode = dying
cache.open_or_build(directory, "t", ids, images, masks, 16, workers=1)
"""


def test_killed_build_leaves_no_valid_cache_and_next_build_cleans_up(tmp_path):
    ids, images, masks = _write(tmp_path, n=20)
    directory = tmp_path / "c"
    args = json.dumps([str(directory), ids, images, masks])
    proc = subprocess.run([sys.executable, "-c", KILLED_BUILD, args], cwd=REPO, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    left = [n for n in os.listdir(directory) if not n.endswith(".lock")]  # the killed builder's lock: harmless
    assert len(left) == 1 and left[0].endswith(".partial") and not any(n.endswith(".arrow") for n in left)
    partial = directory / left[0]
    assert partial.stat().st_size > 4 * 16 * 16 * 3  # batches were written
    with pytest.raises(pa.ArrowInvalid):  # no footer: not a cache
        ImageCache(partial)
    rebuilt = open_or_build(directory, "t", ids, images, masks, 16)
    assert os.listdir(directory) == [rebuilt.path.name]  # the dead build's partial is gone
    assert len(rebuilt) == 20
    np.testing.assert_array_equal(rebuilt.image(19), load_image(images[19], (16, 16))[0])


def test_only_stale_partials_are_removed(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    host = cache._host()
    names = {
        "dead writer here": f"a.arrow.{host}.{int(dead.stdout)}.x1.partial",
        "live writer here": f"a.arrow.{host}.{os.getpid()}.x2.partial",
        "other host, recent": f"a.arrow.otherhost.{os.getpid()}.x3.partial",
        "other host, idle": "a.arrow.otherhost.1.x4.partial",
        "unnamed writer, idle": "mask.arrow.tmp123.partial",
        "finished cache": "b.arrow",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"x")
    idle = time.time() - cache.STALE_PARTIAL_S - 60
    for key in ("other host, idle", "unnamed writer, idle"):
        os.utime(tmp_path / names[key], (idle, idle))
    removed = {p.name for p in cache.remove_stale_partials(tmp_path)}
    assert removed == {names[k] for k in ("dead writer here", "other host, idle", "unnamed writer, idle")}
    assert sorted(os.listdir(tmp_path)) == sorted(
        names[k] for k in ("live writer here", "other host, recent", "finished cache")
    )


# ------------------------------------------------------------------ key: stale pixels never served
def _replace_keeping_size_and_mtime(path: Path) -> None:
    """What ``cp -p`` / ``rsync -a`` / ``tar`` do: other pixels, same byte size, the old mtime restored."""
    before = os.stat(path)
    data = bytearray(Path(path).read_bytes())
    img = np.asarray(Image.open(path)).copy()
    Image.fromarray(255 - img).save(path, format="PNG", compress_level=0)  # uncompressed: same byte size
    assert len(Path(path).read_bytes()) == len(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(path).st_size == before.st_size and os.stat(path).st_mtime_ns == before.st_mtime_ns


@pytest.mark.parametrize("key", ["stat", "content"])
def test_file_replaced_with_same_size_and_restored_mtime_is_decoded_again(tmp_path, key):
    rng = np.random.default_rng(1)
    paths = []
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png", compress_level=0)
        paths.append(str(tmp_path / f"{i}.png"))
    ids = ["a", "b", "c"]
    first = open_or_build(tmp_path / "c", "t", ids, paths, [None] * 3, 12, key=key)
    old_pixels = np.array(first.image(1))
    time.sleep(0.02)  # the kernel's ctime clock ticks every few ms; a real restore comes much later
    _replace_keeping_size_and_mtime(Path(paths[1]))
    second = open_or_build(tmp_path / "c", "t", ids, paths, [None] * 3, 12, key=key)
    assert second.path != first.path
    np.testing.assert_array_equal(second.image(1), 255 - old_pixels)
    np.testing.assert_array_equal(second.image(1), np.asarray(Image.open(paths[1])))


def test_content_key_ignores_where_and_when_but_not_what(tmp_path):
    ids, images, masks = _write(tmp_path, n=3)
    key = cache.cache_key(images, masks, (8, 8), ids, "content")
    moved = tmp_path / "moved"
    moved.mkdir()
    copies = [str(moved / Path(p).name) for p in images + masks]
    for src, dst in zip(images + masks, copies):
        Path(dst).write_bytes(Path(src).read_bytes())  # new paths, new times, same bytes
    assert cache.cache_key(copies[:3], copies[3:], (8, 8), ids, "content") == key
    assert cache.cache_key(copies[:3], copies[3:], (8, 8), ids, "stat") != cache.cache_key(images, masks, (8, 8), ids)
    assert cache.cache_key(images, masks, (8, 8), ["x", "y", "z"], "content") != key  # other sample ids
    Path(masks[2]).write_bytes(Path(masks[2]).read_bytes() + b"\0")
    assert cache.cache_key(images, masks, (8, 8), ids, "content") != key
    with pytest.raises(ValueError, match="content"):
        cache.cache_key(images, masks, (8, 8), ids, "md5")


def test_cache_is_readable_by_the_group_and_reuse_marks_it_used(tmp_path):
    ids, images, masks = _write(tmp_path, n=2)
    old = os.umask(0o002)
    try:
        built = open_or_build(tmp_path / "c", "t", ids, images, masks, 8)
    finally:
        os.umask(old)
    assert stat.S_IMODE(built.path.stat().st_mode) == 0o664
    os.utime(built.path, (1000, 1000))
    open_or_build(tmp_path / "c", "t", ids, images, masks, 8)
    assert time.time() - built.path.stat().st_mtime < 60


FULL_DISK = """
import json, resource, signal, sys
from dermfuse_data.cache import open_or_build
from dermfuse_data.errors import DatasetError
directory, ids, images, masks = json.loads(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)          # a write past the limit fails (EFBIG) instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))  # the disk "fills" after 20 kB
try:
    open_or_build(directory, "t", ids, images, masks, 64)
except DatasetError as err:
    print(err)
"""


def test_full_disk_while_caching_names_the_folder_and_the_variable(tmp_path):
    """A real write failure inside Arrow (file size limit: EFBIG, as a full disk gives ENOSPC)."""
    ids, images, masks = _write(tmp_path, n=12)
    directory = tmp_path / "c"
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK, json.dumps([str(directory), ids, images, masks])],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{directory}: cannot write the image cache: file too large" in proc.stdout
    assert "DERMFUSE_CACHE" in proc.stdout and "cache prune" in proc.stdout and "Traceback" not in proc.stdout
    assert os.listdir(directory) == []  # the partial file is gone


def test_unwritable_cache_folder_names_the_folder(tmp_path, monkeypatch):
    ids, images, masks = _write(tmp_path, n=2)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "c"))

    monkeypatch.setattr(cache.tempfile, "mkstemp", denied)
    with pytest.raises(DatasetError, match=r"(?s)/c: cannot write the image cache: permission denied.*DERMFUSE_CACHE"):
        open_or_build(tmp_path / "c", "t", ids, images, masks, 8)
