"""``python -m dermfuse_models.runner profile``: parameter counts, FLOP convention, lazy nets, CLI."""

import json

import pytest
import torch
import torch.nn as nn

from dermfuse_models.protocol import ImageOnlyNet
from dermfuse_models.runner import profile
from dermfuse_models.runner.__main__ import main as package_main
from tests.experiments._support import EXPERIMENTS, PAPERS


def test_json_only_mammo_xattn_matches_the_built_net(capsys):
    assert package_main(["profile", "--json", "--only", "mammo_xattn", "--size", "32"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["mammo_xattn"]
    row = rows[0]
    spec = profile.select(["mammo_xattn"])[0]
    assert spec.config == EXPERIMENTS / "mammo_xattn" / "config.yaml"  # built from the paper's own config
    net, _ = profile.build_net(spec, 32)
    assert row["status"] == "ok" and row["input_size"] == 32
    assert row["params"] == sum(p.numel() for p in net.parameters())
    assert row["params"] > 23_508_032  # headless ResNet-50 + projections, attention, head
    assert row["flops"] > 0 and row["gflops"] == pytest.approx(2 * row["gmacs"])


def test_flops_are_two_per_multiply_add():
    linear = nn.Linear(10, 20)
    assert profile.count_flops(ImageOnlyNet(linear), {"image": torch.randn(1, 10)}) == 2 * 10 * 20


def test_a_config_that_does_not_build_is_an_error_naming_it(tmp_path, monkeypatch, capsys):
    paper = tmp_path / "ghost"
    paper.mkdir()
    (paper / "config.yaml").write_text(
        "model:\n  class_path: dermfuse_models.tasks.classification.ClassificationTask\n"
        "  init_args:\n    net: {class_path: dermfuse_models.nets.ghost_net.Ghost}\n"
        "data: {dataset: pad_ufes_20}\n"
    )
    specs = profile.discover(tmp_path)
    assert [s.name for s in specs] == ["ghost"]
    row = profile.profile_spec(specs[0])
    assert row["status"] == "error" and str(paper / "config.yaml") in row["reason"]
    monkeypatch.setattr(profile, "discover", lambda: specs)
    assert profile.main([]) == 1
    assert "error" in capsys.readouterr().out


def test_table_states_the_flop_convention_and_paper_figures():
    rows = [
        {
            "name": "eamnet",
            "paper": "eamnet",
            "input_size": 224,
            "paper_params_m": 4.6,
            "paper_gflops": 16.85,
            "note": "paper Table I",
            "status": "ok",
            "params": 4_534_899,
            "flops": 2 * 10**9,
            "gflops": 2.0,
            "gmacs": 1.0,
        }
    ]
    table = profile.format_table(rows)
    assert "FLOPs = 2 x MACs" in table and "4.6M" in table and "16.85" in table
    specs = profile.discover()
    assert {s.name for s in specs} == {*PAPERS, "dualnet_segmenter"}
    assert next(s for s in specs if s.name == "eamnet").paper_gflops == 16.85


def test_unknown_net_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        profile.main(["--only", "resnet"])
    assert info.value.code == 2 and "unknown net" in capsys.readouterr().err
    assert package_main(["frobnicate"]) == 2
