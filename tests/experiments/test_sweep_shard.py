"""``sweep --shard i/n``: job-array tasks split a grid, each run once, with its index in the whole grid."""

from __future__ import annotations

import pytest

from dermfuse_models.runner.sweep import grid_runs, load_sweep, main, run_local, shard_runs
from tests.experiments._support import EXPERIMENTS


def test_shards_cover_the_grid_exactly_once():
    runs = [{"k": i} for i in range(7)]
    shards = [shard_runs(runs, f"{i}/3") for i in (1, 2, 3)]
    indices = sorted(i for shard in shards for i, _ in shard)
    assert indices == list(range(7)) and [len(s) for s in shards] == [3, 2, 2]
    assert all(runs[i] == overrides for shard in shards for i, overrides in shard)
    assert shard_runs(runs, None) == list(enumerate(runs)) and shard_runs(runs, "9/9") == []


@pytest.mark.parametrize("bad", ["0/3", "4/3", "2", "a/b", "1/0"])
def test_a_malformed_shard_is_refused_before_anything_runs(bad):
    with pytest.raises(ValueError, match=r"write i/n with 1 <= i <= n"):
        shard_runs([{}], bad)


def test_a_shard_dry_run_keeps_grid_indices_in_folder_names(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    path = EXPERIMENTS / "vitatt" / "sweep.yaml"
    total = len(grid_runs(load_sweep(path)))
    records = run_local(path, dry_run=True, sweep_dir=tmp_path, shard="2/2")
    assert [r["index"] for r in records] == list(range(1, total, 2))
    assert all(r["run_dir"].startswith(str(tmp_path / f"{r['index']:02d}-")) for r in records)
    capsys.readouterr()
    assert main([str(path), "--dry-run", "--shard", "1/2", "--sweep_dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"[1/{total}] train" in out and f"[2/{total}]" not in out
