"""``make bench`` itself, at the tiny size (``--dry``: the code path ``bench/gpu.sh`` runs, on the CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import markdown, targets

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_script_dry_on_cpu_writes_every_section_as_json_and_a_table(tmp_path, session_cache):
    """``bench/gpu.sh --device cpu --dry``: the GPU script's code path (bf16 and compile included) at the tiny size."""
    env = {**os.environ, "DERMFUSE_CACHE": str(session_cache), "PY": sys.executable, "PYTHONPATH": str(REPO)}
    command = [str(REPO / "bench" / "gpu.sh"), "--device", "cpu", "--dry", "--threads", "1", "--out", str(tmp_path)]
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    (json_file,) = tmp_path.glob("bench-tiny-cpu-*.json")
    results = json.loads(json_file.read_text())
    sources = {r["source"]: r for r in results["loader"]["sources"]}
    assert set(sources) == {"jpeg_600x450", "dicom_3000x5000"}
    for row in sources.values():
        assert row["decode_aug_per_s"] > 0 and row["cache_uint8_per_s"] > row["decode_aug_per_s"]
        assert row["ratio_cache_uint8_vs_decode"] == pytest.approx(row["cache_uint8_per_s"] / row["decode_aug_per_s"])
    modes = {(r["augment_on"], r["workers"]) for r in results["loader"]["datamodule"]}
    assert modes == {("cpu", 0), ("device", 0)}
    shipped = {r["augment_on"]: r["batch_bytes_per_image"] for r in results["loader"]["datamodule"]}
    assert shipped["cpu"] == 4 * shipped["device"] == 4 * 3 * 32 * 32  # float32 vs uint8
    over = results["overhead"]
    assert over["plain_step_ms"] > 0 and over["trainer_step_ms"] > 0 and "dermfuse_step_ms" in over
    (net,) = results["nets"]
    assert net["net"] == "eamnet" and net["params_m"] == pytest.approx(4.53, abs=0.01)
    variants = {v["variant"]: v for v in net["variants"]}
    assert variants["fp32"]["train_images_per_s"] > 0 and variants["bf16"]["infer_images_per_s"] > 0
    assert variants["compile"]["compile_s"] > 0 and variants["compile"]["train_images_per_s"] > 0
    assert "oneDNN" in variants["channels_last"]["skipped"]
    assert results["loader_train"][0]["net"] == "eamnet"
    assert [t["met"] for t in results["targets"]] == [t["met"] for t in targets(results)]
    table = tmp_path.joinpath(json_file.stem + ".md").read_text()
    assert table == markdown(results) and "### Targets" in table and "| eamnet | 32 | fp32 |" in table
    assert "### Targets" in run.stdout
    assert len(results["load_average"]) == len(results["load_average_now"]) == 3  # the load is on record


def test_a_missed_target_is_reported_as_missed():
    results = {"overhead": {"trainer_overhead_pct": 7.5, "dermfuse_vs_plain_throughput": 0.8}, "loader_train": []}
    rows = {t["target"]: t for t in targets(results)}
    assert rows["Trainer overhead vs a plain loop (median step)"]["met"] is False
    through = rows["timm backbone through dermfuse vs a bare loop (throughput)"]
    assert through["value"] == pytest.approx(80.0) and through["met"] is False
    faster = {t["target"]: t for t in targets({**results, "overhead": {"dermfuse_vs_plain_throughput": 0.95}})}
    assert faster["timm backbone through dermfuse vs a bare loop (throughput)"]["met"] is True  # 95% of the bare loop
    assert rows["loader / train images/s, every paper net measured"]["met"] is None  # not measured
