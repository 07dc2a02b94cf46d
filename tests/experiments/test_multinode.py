"""Past one node: a 2-node x 1-process CPU fit through ``torchrun --nnodes=2`` on localhost (gloo).

Both "nodes" start from a cold cache folder, so their two local-rank-0 processes build the synthetic data
and the image cache at the same time (the cache lock lets one write while the other waits).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.experiments._support import REPO, child_env

SCRIPT = Path(__file__).with_name("ddp_fit_script.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_node_torchrun_fit_writes_one_run_folder_with_disjoint_training_data(tmp_path):
    out, cache, runs = tmp_path / "ranks", tmp_path / "cache", tmp_path / "runs"
    env = child_env(runs, cache, drop=("WORLD_SIZE", "RANK"))
    port = _free_port()
    launch = ["--trainer.num_nodes=2", "--trainer.devices=1", "--trainer.strategy=ddp"]
    nodes = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1"),
                *(f"--node-rank={rank}", "--master-addr=127.0.0.1", f"--master-port={port}", "--rdzv-id=42"),
                *(str(SCRIPT), str(out), *launch),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    logs = [node.communicate(timeout=600) for node in nodes]
    assert [n.returncode for n in nodes] == [0, 0], [err[-3000:] for _, err in logs]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    run_dir = Path(ranks[0]["run_dir"])
    assert ranks[1]["run_dir"] == str(run_dir) and run_dir.name.startswith("job42-")  # one folder, named by the job
    assert list(runs.rglob("metrics.json")) == [run_dir / "metrics.json"]  # one summary, from global rank 0
    train = [set(r["train_ids"]) for r in ranks]
    assert len(train[0]) == len(train[1]) == 16 and not train[0] & train[1]  # disjoint training data per rank
    assert len(list((cache / "pad_ufes_20").glob("images-64x64-*.arrow"))) == 1  # built once, not clobbered
    assert not list((cache / "pad_ufes_20").glob("*.partial"))


def test_a_multi_process_launch_without_a_job_id_is_refused(monkeypatch):
    from dermfuse_models.runner.cli import multi_node_run_dir_problem

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    problem = multi_node_run_dir_problem(run_dir=None)
    assert problem and "--rdzv-id" in problem and "--run_dir" in problem
    assert multi_node_run_dir_problem(run_dir="/tmp/x") is None
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job7")
    assert multi_node_run_dir_problem(run_dir=None) is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    assert multi_node_run_dir_problem(run_dir=None) is None
