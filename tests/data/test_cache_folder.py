"""``python -m dermfuse_data cache list|prune`` and ``split``: what is in the cache folder, what may go."""

from __future__ import annotations

import os
import time

import numpy as np

from dermfuse_data.cache import open_or_build
from dermfuse_data.cache_folder import list_cache, prune_cache
from dermfuse_data.datamodule import synthetic_root
from dermfuse_data.mask_file import write_mask_file
from dermfuse_data.split_file import read_split_file
from dermfuse_data.splits import load_or_make_splits
from tests.data.test_cache import _write
from tests.data.test_splits import _table

OLD = time.time() - 40 * 86400


def _filled_cache(tmp_path):
    """A cache folder with an old and a fresh image cache, old predicted masks, a split file, an old
    miniature, a dead build's partial and an unknown file."""
    folder = tmp_path / "cache"
    ids, images, masks = _write(tmp_path, n=3)
    old = open_or_build(folder / "ph2", "images+masks", ids, images, masks, 8).path
    fresh = open_or_build(folder / "ph2", "images", ids, images, [None] * 3, 8).path
    predicted = write_mask_file(folder / "ph2" / "predicted-masks-8x8-abc.arrow", ids, [np.ones((8, 8))] * 3, (8, 8))
    _, split = load_or_make_splits(_table([0, 1, 0], ["a", "b", "c"]), folder / "ph2")
    synthetic_root("ph2", folder / "synthetic")
    partial = folder / "ph2" / "images-8x8-x.arrow.otherhost.1.abc.partial"
    partial.write_bytes(b"x" * 10)
    (folder / "ph2" / "notes.txt").write_text("mine")
    marker = next((folder / "synthetic").iterdir()) / ".dermfuse-synthetic"
    for path in (old, predicted, split, partial, marker, folder / "ph2" / "notes.txt"):
        os.utime(path, (OLD, OLD))
    return folder, dict(
        old=old, fresh=fresh, predicted=predicted, split=split, miniature=marker.parent, partial=partial
    )


def test_list_names_every_entry_with_kind_size_and_use(tmp_path, cli):
    folder, paths = _filled_cache(tmp_path)
    entries = {e.path: e for e in list_cache(folder)}
    assert entries[paths["old"]].kind == "images" and "3 images 8x8, cache format v2" in entries[paths["old"]].about
    assert entries[paths["predicted"]].kind == "masks" and entries[paths["split"]].kind == "split"
    assert entries[paths["partial"]].kind == "partial" and entries[paths["old"]].size == paths["old"].stat().st_size
    assert {e.kind for e in entries.values()} == {"images", "masks", "split", "synthetic", "partial", "other"}
    rc, out, _ = cli("cache", "list", "--cache-dir", folder)
    assert rc == 0 and f"cache folder {folder} ($DERMFUSE_CACHE moves it): 7 entries" in out
    assert (
        "ph2/" + paths["old"].name in out and "40 days ago" in out and "today" in out and "synthetic/ph2-seed0" in out
    )


def test_prune_removes_only_old_rebuildable_entries_and_dry_run_removes_nothing(tmp_path, cli):
    folder, paths = _filled_cache(tmp_path)
    before = sorted(p for p in folder.rglob("*"))
    rc, out, _ = cli("cache", "prune", "--older-than", "30", "--dry-run", "--cache-dir", folder)
    assert rc == 0 and out.startswith("would remove 4 entries unused for 30 days") and paths["old"].name in out
    assert sorted(p for p in folder.rglob("*")) == before
    removed, freed = prune_cache(folder, 30)
    assert {e.path for e in removed} == {paths["old"], paths["predicted"], paths["partial"], paths["miniature"]}
    assert freed == sum(e.size for e in removed) > 0
    assert paths["fresh"].exists() and paths["split"].exists() and (folder / "ph2" / "notes.txt").exists()
    assert len(read_split_file(paths["split"])) == 3  # split files are never pruned
    rc, out, _ = cli("cache", "prune", "--older-than", "0", "--cache-dir", folder)
    assert rc == 0 and "removed 1 entries" in out and not paths["fresh"].exists()


def test_prune_of_a_missing_folder_is_empty(tmp_path, cli):
    rc, out, _ = cli("cache", "prune", "--cache-dir", tmp_path / "absent")
    assert rc == 0 and "would" not in out and "removed 0 entries" in out


def test_split_command_shows_and_resplits_the_training_split(miniature, tmp_path, cli, capsys):
    from dermfuse_data.datamodule import DermDataModule

    root, cache = miniature("ham10000"), tmp_path / "cache"
    dm = DermDataModule("ham10000", root=str(root), cache_dir=str(cache))
    counts = {s: dm.split_table(s).num_rows for s in ("train", "val", "test")}
    capsys.readouterr()
    rc, out, err = cli("split", "--dataset", "ham10000", "--root", root, "--cache-dir", cache)
    assert (
        rc == 0
        and out.strip()
        == f"{dm.split_file}: {sum(counts.values())} samples (train {counts['train']}, val {counts['val']}, "
        f"test {counts['test']})"
    )
    assert err == ""  # the same file, unchanged
    rc, out, err = cli(
        "split", "--dataset", "ham10000", "--root", root, "--cache-dir", cache, "--resplit", "--seed", "0"
    )
    assert rc == 0 and "regenerated (resplit): no sample moved" in err  # same data, same seed: same split
    rc, _, err = cli("split", "--dataset", "ham10000", "--root", tmp_path / "nowhere", "--cache-dir", cache)
    assert rc == 2 and "nowhere" in err


def test_make_targets_call_the_cache_command():
    from tests.experiments.test_makefile import make

    assert "cache-list" in make("help").stdout and "cache-prune" in make("help").stdout
    assert make("-n", "cache-list").stdout.strip().endswith("-m dermfuse_data cache list")
    dry = make("-n", "cache-prune", "DAYS=7", "DRY_RUN=1").stdout.strip()
    assert dry.endswith("-m dermfuse_data cache prune --older-than 7 --dry-run")
    assert make("-n", "cache-prune").stdout.strip().endswith("cache prune --older-than 30")
