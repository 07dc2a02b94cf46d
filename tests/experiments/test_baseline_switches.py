"""The baselines the sweeps add (issue 11) are what their comments say, built from the sweep files themselves.

* EAM-Net: the baseline has no MRCF, CMAM or EAB; each add-one run has exactly its one module.
* MSViT: the plain-ViT run is one scale and no attention loss; the CNN run is a timm ResNet-50.
* Mammography: the clinical-only run has no image backbone and ignores the image.
"""

from __future__ import annotations

import torch

from dermfuse_models.blocks.cmam import CrossMixAttention
from dermfuse_models.blocks.external_attention import ExternalAttentionBridge
from dermfuse_models.blocks.mrcf import MultiResolutionChannelFusion
from dermfuse_models.nets.eamnet import EAMNet
from dermfuse_models.runner.sweep import grid_runs, load_sweep
from tests.experiments._support import EXPERIMENTS

NET = "model.init_args.net.init_args"
MODULES = {"use_mrcf": MultiResolutionChannelFusion, "use_cmam": CrossMixAttention, "use_eab": ExternalAttentionBridge}


def _runs(paper: str) -> list[dict]:
    return grid_runs(load_sweep(EXPERIMENTS / paper / "sweep.yaml"))


def test_eamnet_sweep_has_the_baseline_the_add_one_and_the_leave_one_out_runs():
    flags = [tuple(run[NET][k] for k in MODULES) for run in _runs("eamnet")]
    assert (False, False, False) in flags  # baseline: every module off
    assert {f for f in flags if sum(f) == 1} == {(True, False, False), (False, True, False), (False, False, True)}
    assert {f for f in flags if sum(f) == 2} == {(False, True, True), (True, False, True), (True, True, False)}


def test_eamnet_sweep_runs_build_exactly_the_modules_they_switch_on():
    for run in _runs("eamnet"):
        args = run[NET]
        net = EAMNet(base_channels=8, blocks_per_stage=1, fusion_channels=8, **args)
        for flag, module in MODULES.items():
            present = any(isinstance(m, module) for m in net.modules())
            assert present == args[flag], (args, flag)
        if args["use_eab"]:
            bridges = [m for m in net.modules() if isinstance(m, ExternalAttentionBridge)]
            assert {b.memory_size for b in bridges} == {args["memory_size"]}


def _net_value(run: dict) -> dict:
    return run["model.init_args.net"]


def test_msvit_sweep_plain_vit_is_one_scale_without_attention_loss():
    from dermfuse_models.nets.msvit import MSViT

    plains = {str(_net_value(r)): _net_value(r) for r in _runs("msvit") if _net_value(r)["init_args"].get("scales")}
    (plain,) = plains.values()
    assert plain["init_args"]["scales"] == [1] and plain["init_args"]["attn_reg_weight"] == 0.0
    torch.manual_seed(0)
    net = MSViT(3, backbone="vit_tiny_patch16_224", img_size=32, **plain["init_args"]).eval()
    out = net(torch.randn(2, 3, 32, 32), mask=torch.ones(2, 1, 32, 32))
    assert "aux_losses" not in out  # no attention loss even with a mask
    assert all(block.scales == (1,) for block in net.attention_blocks)


def test_msvit_sweep_cnn_baseline_is_a_timm_resnet50():
    from dermfuse_models.nets.timm_classifier import TimmClassifier

    cnn = next(_net_value(r) for r in _runs("msvit") if "class_path" in _net_value(r))
    assert cnn["class_path"] == "dermfuse_models.nets.timm_classifier.TimmClassifier"
    net = TimmClassifier(3, **cnn["init_args"]).eval()
    assert net.backbone_name == "resnet50"
    assert 23.5e6 < sum(p.numel() for p in net.parameters()) < 23.6e6  # ResNet-50 with a 3-class head
    assert set(net.cam_layers()) == {"features"} and net.cam_layers()["features"] is net.model.layer4


def test_mammo_sweep_clinical_only_ignores_the_image():
    from dermfuse_models.nets.mammo_xattn import MammoXAttn

    assert {r[f"{NET}.fusion"] for r in _runs("mammo_xattn")} == {"cross", "co", "concat", "image", "clinical"}
    torch.manual_seed(0)
    net = MammoXAttn(2, meta_groups=[3, 4], fusion="clinical").eval()
    assert net.backbone is None and net.cam_layers() == {}
    meta = torch.eye(7)[:2]
    with torch.no_grad():
        a = net(torch.randn(2, 3, 32, 32), meta)["logits"]
        b = net(torch.zeros(2, 3, 32, 32), meta)["logits"]
        c = net(torch.zeros(2, 3, 32, 32), meta.flip(0))["logits"]
    assert torch.equal(a, b) and not torch.allclose(b, c)
