"""``python -m dermfuse_models.runner profile``: parameter counts, FLOP convention, lazy nets, CLI."""

import json

import pytest
import torch
import torch.nn as nn

from dermfuse_models.protocol import ImageOnlyNet
from dermfuse_models.runner import profile
from dermfuse_models.runner.__main__ import main as package_main


def test_json_only_mammo_xattn_matches_the_built_net(capsys):
    assert package_main(["profile", "--json", "--only", "mammo_xattn", "--size", "32"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["mammo_xattn"]
    row = rows[0]
    spec = profile.select(["mammo_xattn"])[0]
    net, _ = profile.build_net(spec, 32)
    assert row["status"] == "ok" and row["input_size"] == 32
    assert row["params"] == sum(p.numel() for p in net.parameters())
    assert row["params"] > 23_508_032  # headless ResNet-50 + projections, attention, head
    assert row["flops"] > 0 and row["gflops"] == pytest.approx(2 * row["gmacs"])


def test_flops_are_two_per_multiply_add():
    linear = nn.Linear(10, 20)
    assert profile.count_flops(ImageOnlyNet(linear), {"image": torch.randn(1, 10)}) == 2 * 10 * 20


def test_missing_net_module_is_skipped_with_a_note(monkeypatch, capsys):
    ghost = profile.NetSpec("ghost", "ghost (0000.00000)", "dermfuse_models.nets.ghost_net", 32, lambda m, s: None)
    monkeypatch.setattr(profile, "NETS", (ghost,))
    row = profile.profile_spec(ghost)
    assert row["status"] == "skipped" and "does not exist yet" in row["reason"]
    assert profile.main([]) == 0
    assert "skipped" in capsys.readouterr().out


def test_table_states_the_flop_convention_and_paper_figures():
    rows = [{"name": "eamnet", "paper": "eamnet", "input_size": 224, "paper_params_m": 4.6, "paper_gflops": 16.85,
             "note": "paper Table I", "status": "ok", "params": 4_534_899, "flops": 2 * 10**9, "gflops": 2.0,
             "gmacs": 1.0}]
    table = profile.format_table(rows)
    assert "FLOPs = 2 x MACs" in table and "4.6M" in table and "16.85" in table
    assert {s.name for s in profile.NETS} >= {"vitatt", "eamnet", "msvit", "mammo_xattn"}
    assert next(s for s in profile.NETS if s.name == "eamnet").paper_gflops == 16.85


def test_unknown_net_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        profile.main(["--only", "resnet"])
    assert info.value.code == 2 and "unknown net" in capsys.readouterr().err
    assert package_main(["frobnicate"]) == 2
