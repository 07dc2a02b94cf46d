"""The ready SLURM examples (``dermfuse_models/runner/slurm/*.sbatch``) run the command they promise, with
arguments the runner accepts.

Each script runs under a fake ``srun`` and a fake ``.venv/bin/python`` that record the command line; the
recorded sweep command then runs for real as a dry run, and the fit command's options go through the CLI's
parser (``--print_config``), so a renamed option or a wrong shard formula fails here, not on a cluster.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dermfuse_models.runner.sweep import grid_runs, load_sweep
from dermfuse_models.runner.sweep import main as sweep_main
from tests.experiments._support import REPO

SLURM = REPO / "dermfuse_models" / "runner" / "slurm"


def _record(tmp_path: Path, script: str, env: dict[str, str]) -> list[str]:
    """The arguments ``script`` hands to ``.venv/bin/python`` (through ``srun`` where it uses it)."""
    bin_dir, submit = tmp_path / "bin", tmp_path / "submit"
    (submit / ".venv" / "bin").mkdir(parents=True)
    bin_dir.mkdir()
    record = tmp_path / "args"
    fake_python = submit / ".venv" / "bin" / "python"
    fake_python.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > {record}\n')
    (bin_dir / "srun").write_text('#!/usr/bin/env bash\nexec "$@"\n')
    for tool in (fake_python, bin_dir / "srun"):
        tool.chmod(0o755)
    full_env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_SUBMIT_DIR": str(submit), **env}
    subprocess.run(["bash", str(SLURM / script)], env=full_env, check=True, timeout=30)
    return record.read_text().splitlines()


def test_the_array_tasks_of_the_sweep_example_share_the_grid_into_one_folder(tmp_path, monkeypatch, capsys):
    env = {"PAPER": "eamnet", "DATA_ROOT": str(tmp_path), "SLURM_ARRAY_JOB_ID": "77", "SLURM_ARRAY_TASK_COUNT": "2"}
    commands = [
        _record(tmp_path / str(task), "sweep-array.sbatch", {**env, "SLURM_ARRAY_TASK_ID": str(task)})
        for task in (1, 2)
    ]
    for task, args in enumerate(commands, start=1):
        assert args[:3] == ["-m", "dermfuse_models.runner", "sweep"]
        assert args[args.index("--shard") + 1] == f"{task}/2"
        assert args[args.index("--sweep_dir") + 1] == "runs/eamnet/sweep-job77"
    monkeypatch.chdir(tmp_path)  # the relative sweep folder lands here
    monkeypatch.setenv("WANDB_MODE", "offline")
    shares = []
    for args in commands:
        sweep_args = [str(REPO / a) if a.startswith("experiments/") else a for a in args[3:]]
        assert sweep_main([*sweep_args, "--dry-run"]) == 0
        printed = capsys.readouterr().out
        shares.append([int(i) - 1 for i in re.findall(r"\[(\d+)/\d+\] train ", printed)])
        assert printed.count(f"--run_dir={tmp_path}/runs/eamnet/sweep-job77/") == len(shares[-1]) > 0
    grid = len(grid_runs(load_sweep(REPO / "experiments" / "eamnet" / "sweep.yaml")))
    assert sorted(shares[0] + shares[1]) == list(range(grid))  # every run once, by one task


@pytest.mark.slow
def test_the_multi_node_training_example_passes_nodes_and_gpus_to_the_trainer(tmp_path):
    env = {"PAPER": "vitatt", "DATA_ROOT": "/data/PAD-UFES-20", "SLURM_NNODES": "2", "SLURM_NTASKS_PER_NODE": "4"}
    args = _record(tmp_path, "train.sbatch", env)
    assert args[:3] == ["-m", "dermfuse_models.runner", "fit"]
    for option in (
        "--trainer.num_nodes=2",
        "--trainer.devices=4",
        "--trainer.strategy=ddp",
        "--data.root=/data/PAD-UFES-20",
    ):
        assert option in args
    printed = subprocess.run(
        [sys.executable, *args, "--print_config"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"},
    )
    assert printed.returncode == 0, printed.stderr[-2000:]
    config = yaml.safe_load(printed.stdout)
    assert config["trainer"]["num_nodes"] == 2 and str(config["trainer"]["devices"]) == "4"  # Lightning parses "4"
    assert config["data"]["root"] == "/data/PAD-UFES-20"
