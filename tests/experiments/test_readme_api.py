"""The README's Python API example runs as written (so it cannot rot): after the session's one-batch mammo_xattn
smoke fit, it rebuilds the run, predicts a batch through protocol.call_net and explains it."""

from __future__ import annotations

import re

import pytest
import torch

from tests.experiments._support import REPO


def readme_example() -> str:
    """The first ``python`` block under the README's "## Python API" heading."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Python API\n", 1)[1]
    match = re.search(r"```python\n(.*?)\n```", section, flags=re.S)
    assert match, "README.md has no python block under '## Python API'"
    return match.group(1)


@pytest.mark.slow
def test_readme_python_api_example_runs(mammo_smoke_run, monkeypatch, capsys):
    runs_dir, _ = mammo_smoke_run
    monkeypatch.setenv("DERMFUSE_RUNS", str(runs_dir))
    monkeypatch.chdir(REPO)
    namespace: dict = {}
    exec(compile(readme_example(), "README.md:Python API", "exec"), namespace)
    run, batch, probabilities = namespace["run"], namespace["batch"], namespace["probabilities"]
    assert run.run_dir.parent == runs_dir / "mammo_xattn" and run.checkpoint == namespace["checkpoint"].resolve()
    assert probabilities.shape == (len(batch["sample_id"]), 2)
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(len(batch["sample_id"])))
    written = namespace["written"]
    assert written["figure:explanations"].is_file() and written["json"].parent == run.run_dir / "explain-api"
    assert namespace["report"].means["gradcam/image"]["n_images"] == 4
    printed = capsys.readouterr().out
    assert str(batch["sample_id"][0]) in printed and "n_images" in printed
