"""What is in a cache folder (``$DERMFUSE_CACHE``), and pruning what has not been used for a while.

``python -m dermfuse_data cache list`` / ``cache prune [--older-than DAYS] [--dry-run]`` (``make cache-list``,
``make cache-prune``). Per dataset folder: image caches (``*.arrow``, :mod:`dermfuse_data.cache`), predicted
masks (``predicted-masks-*.arrow``, :mod:`dermfuse_data.mask_file`), split files (``splits-*.csv``) and
partial files of killed builds; under ``synthetic/``, the generated miniatures. "Last used" is the file's
modification time, which every reuse sets to now (:func:`~dermfuse_data.storage.mark_used`). Pruning
removes caches, predicted masks and miniatures unused for ``DAYS`` days (all are rebuilt on demand) and the
partials :func:`~dermfuse_data.cache.remove_stale_partials` calls stale. Split files are never pruned: they
are the source of truth of each dataset's partition.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from dermfuse_data.cache import STALE_PARTIAL_S, stale_partials

#: kinds of entries ``prune`` may remove (rebuilt on demand)
PRUNABLE = ("images", "masks", "synthetic")
DAY_S = 86400.0


@dataclass
class CacheEntry:
    """One thing in the cache folder: ``kind`` (images, masks, split, synthetic, partial, other), its path,
    size in bytes, last use (epoch seconds) and a short description."""

    kind: str
    path: Path
    size: int
    last_used: float
    about: str = ""


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _arrow_about(path: Path) -> tuple[str, str]:
    """(kind, description) of an Arrow file from its footer and schema (no pixels read)."""
    try:
        with pa.memory_map(str(path), "r") as source:
            reader = pa.ipc.open_file(source)
            rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
            meta = reader.schema.metadata or {}
    except (pa.ArrowInvalid, OSError) as err:
        return "other", f"unreadable Arrow file ({err})"
    shape = f"{meta.get(b'height', b'?').decode()}x{meta.get(b'width', b'?').decode()}"
    if meta.get(b"kind") == b"dermfuse-masks":
        return "masks", f"{rows} masks {shape}"
    return "images", f"{rows} images {shape}, cache format v{meta.get(b'version', b'?').decode()}"


def _entry(path: Path) -> CacheEntry:
    st = path.stat()
    if path.is_dir():
        marker = path / ".dermfuse-synthetic"
        if marker.is_file():
            return CacheEntry("synthetic", path, _tree_size(path), marker.stat().st_mtime, "synthetic miniature")
        kind = "partial" if path.name.startswith(".") else "other"
        return CacheEntry(
            kind, path, _tree_size(path), st.st_mtime, "unfinished miniature" if kind == "partial" else ""
        )
    if path.name.endswith(".partial") or path.name.endswith(".tmp"):
        return CacheEntry("partial", path, st.st_size, st.st_mtime, "left by an unfinished write")
    if path.suffix == ".arrow":
        kind, about = _arrow_about(path)
        return CacheEntry(kind, path, st.st_size, st.st_mtime, about)
    if path.name.startswith("splits-") and path.suffix == ".csv":
        with open(path) as fh:
            rows = max(0, sum(1 for _ in fh) - 1)
        return CacheEntry("split", path, st.st_size, st.st_mtime, f"{rows} samples (kept: the saved split)")
    return CacheEntry("other", path, st.st_size, st.st_mtime)


def list_cache(folder: str | Path) -> list[CacheEntry]:
    """Every entry of the cache folder (one level into each dataset folder), biggest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    entries = []
    for child in sorted(folder.iterdir()):
        for path in sorted(child.iterdir()) if child.is_dir() else [child]:
            try:
                entries.append(_entry(path))
            except FileNotFoundError:  # removed meanwhile
                continue
    return sorted(entries, key=lambda e: -e.size)


def prunable(entries: list[CacheEntry], older_than_days: float, now: float | None = None) -> list[CacheEntry]:
    """The entries ``prune`` removes: :data:`PRUNABLE` kinds unused for ``older_than_days``, and stale
    partials (:func:`~dermfuse_data.cache.stale_partials`; other unfinished writes idle for
    :data:`~dermfuse_data.cache.STALE_PARTIAL_S`)."""
    now = time.time() if now is None else now
    stale = {p for d in {e.path.parent for e in entries} for p in stale_partials(d)}

    def unfinished_and_idle(e: CacheEntry) -> bool:
        idle = now - e.last_used > STALE_PARTIAL_S
        return e.path in stale or (not e.path.name.endswith(".partial") and idle)

    return [
        e
        for e in entries
        if (e.kind in PRUNABLE and now - e.last_used > older_than_days * DAY_S)
        or (e.kind == "partial" and unfinished_and_idle(e))
    ]


def prune_cache(folder: str | Path, older_than_days: float, dry_run: bool = False) -> tuple[list[CacheEntry], int]:
    """Remove (with ``dry_run``: only name) what :func:`prunable` selects; returns (entries, bytes).

    An entry that cannot be removed (someone else's file in a shared folder) is skipped, not counted.
    """
    chosen = prunable(list_cache(folder), older_than_days)
    if dry_run:
        return chosen, sum(e.size for e in chosen)
    removed = []
    for entry in chosen:
        try:
            if entry.path.is_dir():
                shutil.rmtree(entry.path)
            else:
                entry.path.unlink()
            removed.append(entry)
        except OSError:
            continue
    return removed, sum(e.size for e in removed)


def human_size(n: float) -> str:
    """``1.2 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def describe(entries: list[CacheEntry], folder: Path, now: float | None = None) -> list[str]:
    """One aligned line per entry: kind, size, days since last use, path relative to ``folder``, description."""
    now = time.time() if now is None else now
    lines = []
    for e in entries:
        age = (now - e.last_used) / DAY_S
        used = "today" if age < 1 else f"{age:.0f} days ago"
        lines.append(f"  {e.kind:<9} {human_size(e.size):>10}  {used:>13}  {e.path.relative_to(folder)}  {e.about}")
    return lines
