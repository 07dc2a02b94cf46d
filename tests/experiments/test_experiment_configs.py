"""Every experiment's files exist, and every config (+ dataset overlay, + smoke profile) parses and
builds its DataModule and model through the CLI (``run=False``: nothing is trained).

Parsing is fast (jsonargparse checks every key against the classes' signatures); building
instantiates nets and synthetic data, ~5 s per config on 2 cores, so those tests are ``slow``."""

from __future__ import annotations

import importlib

import pytest
import yaml

from tests.experiments._support import EXPERIMENTS, PAPERS, overlays, require_paper

DATA_CONFIGS = [(paper, ds) for paper in PAPERS for ds in (overlays(paper) or ["<none>"])]


def test_the_experiment_folders_are_the_five_papers():
    assert {p.parent.name for p in EXPERIMENTS.glob("*/config.yaml")} == set(PAPERS)


@pytest.mark.parametrize("paper", PAPERS)
def test_experiment_folder_is_complete(paper):
    folder = require_paper(paper)
    for name in ("config.yaml", "smoke.yaml", "sweep.yaml", "reported.yaml", "README.md"):
        assert (folder / name).is_file(), f"experiments/{paper}/{name} is missing"
    assert overlays(paper), f"experiments/{paper}/data/ has no dataset overlay"
    config = yaml.safe_load((folder / "config.yaml").read_text())
    dataset = config["data"]["dataset"]
    assert any(
        yaml.safe_load((folder / "data" / f"{o}.yaml").read_text())["data"]["dataset"] == dataset
        for o in overlays(paper)
    ), "the config's own dataset needs an overlay too"
    if paper == "dualnet":
        assert (folder / "segmenter.yaml").is_file() and (folder / "segmenter_smoke.yaml").is_file()


def _net_class(config: dict):
    path = config["model"]["init_args"]["net"]["class_path"]
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)  # a config naming a missing net fails here


def _configs(paper: str, dataset: str, smoke: bool) -> list[str]:
    args = ["--config", str(EXPERIMENTS / paper / "config.yaml")]
    if dataset != "<none>":
        args += ["--config", str(EXPERIMENTS / paper / "data" / f"{dataset}.yaml")]
    if smoke:
        args += ["--config", str(EXPERIMENTS / paper / "smoke.yaml")]
    return args


@pytest.mark.parametrize(("paper", "dataset"), DATA_CONFIGS)
def test_config_overlay_and_smoke_parse(paper, dataset):
    from dermfuse_models.runner.cli import parse_config

    folder = require_paper(paper)
    if dataset == "<none>":
        pytest.fail(f"experiments/{paper}/data/ has no overlay")
    for smoke in (False, True):
        cfg = parse_config(["fit", *_configs(paper, dataset, smoke)])
        overlay = yaml.safe_load((folder / "data" / f"{dataset}.yaml").read_text())["data"]
        assert cfg.data.dataset == overlay["dataset"]
        for key, value in overlay.items():
            got = cfg.data[key]
            assert (got.as_dict() if hasattr(got, "as_dict") else got) == value, key
        if not smoke:
            assert cfg.trainer.precision == "bf16-mixed", "real-data configs train in bf16 on GPU"
        else:
            assert cfg.trainer.accelerator == "cpu" and "32" in str(cfg.trainer.precision)


@pytest.mark.slow
@pytest.mark.parametrize(("paper", "dataset"), DATA_CONFIGS)
def test_smoke_config_builds_data_and_model(paper, dataset, runs_dir, tmp_path):
    from dermfuse_models.runner.cli import main

    folder = require_paper(paper)
    net_class = _net_class(yaml.safe_load((folder / "config.yaml").read_text()))
    cli = main([*_configs(paper, dataset, smoke=True), "--trainer.logger=false", f"--run_dir={tmp_path}/r"], run=False)
    dm, model = cli.datamodule, cli.model
    assert isinstance(model.net, net_class)
    if dataset != "<none>":
        assert (
            dm.hparams.dataset == yaml.safe_load((folder / "data" / f"{dataset}.yaml").read_text())["data"]["dataset"]
        )
    assert dm.is_synthetic
    if dm.hparams.task == "classification":
        assert model.num_classes == dm.num_classes
        head = [m for m in model.net.modules() if hasattr(m, "out_features")][-1]
        assert head.out_features == dm.num_classes


@pytest.mark.slow
@pytest.mark.parametrize("paper", PAPERS)
def test_real_config_builds_without_download(paper, runs_dir, tmp_path):
    """The paper-size model of config.yaml builds (pretrained off: no hub in tests)."""
    from dermfuse_models.runner.cli import main

    folder = require_paper(paper)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    net_class = _net_class(config)
    args = ["--config", str(folder / "config.yaml")]
    if "pretrained" in config["model"]["init_args"]["net"].get("init_args", {}):
        args.append("--model.init_args.net.init_args.pretrained=false")
    cli = main([*args, "--trainer.logger=false", f"--run_dir={tmp_path}/r"], run=False)
    assert isinstance(cli.model.net, net_class)
    assert cli.trainer.precision in ("32-true", "bf16-mixed")  # bf16 on GPU, fp32 on a CPU-only machine
    n_params = sum(p.numel() for p in cli.model.parameters())
    assert n_params > 1_000_000, f"{paper}'s paper-size net has only {n_params} parameters"


@pytest.mark.slow
@pytest.mark.parametrize("paper", ["dualnet"])
def test_dualnet_segmenter_configs_build(paper, runs_dir, tmp_path):
    from dermfuse_models.runner.cli import main

    folder = require_paper(paper)
    seg = folder / "segmenter.yaml"
    cli = main(
        [
            "--config",
            str(seg),
            "--config",
            str(folder / "segmenter_smoke.yaml"),
            "--trainer.logger=false",
            f"--run_dir={tmp_path}/r",
        ],
        run=False,
    )
    assert cli.datamodule.hparams.task == "segmentation"
    from dermfuse_models.runner.figures import SegmentationSamplesFigure

    assert any(isinstance(c, SegmentationSamplesFigure) for c in cli.trainer.callbacks)


@pytest.mark.parametrize("paper", PAPERS)
def test_image_size_is_set_once_and_linked_to_the_net(paper):
    """``data.image_size`` is the one image size: no config sets the net's ``img_size``; the CLI links it
    to the ViTs and the link is harmless for nets without ``img_size`` (as ``meta_groups`` is for EAM-Net)."""
    from dermfuse_models.runner.cli import parse_config

    folder = require_paper(paper)
    for name in ("config.yaml", "smoke.yaml"):
        net = (yaml.safe_load((folder / name).read_text()).get("model") or {}).get("init_args", {}).get("net") or {}
        assert "img_size" not in (net.get("init_args") or {}), f"experiments/{paper}/{name} sets img_size"
    cfg = parse_config(["fit", *_configs(paper, "<none>", smoke=True), "--data.image_size=48"])
    assert cfg.data.image_size == 48
    net_args = cfg.model.init_args.net.init_args
    if paper in ("vitatt", "msvit"):
        assert net_args.img_size == 48
    else:
        assert net_args.get("img_size") is None


def test_vitatt_smoke_net_is_built_for_data_image_size(runs_dir, tmp_path):
    """``--data.image_size=32`` builds the smoke ViTAtt for 32 px (position embedding for a 2 x 2 patch grid)."""
    import torch

    from dermfuse_models.protocol import call_net
    from dermfuse_models.runner.cli import main

    cli = main(
        [
            *_configs("vitatt", "<none>", smoke=True),
            "--data.image_size=32",
            "--trainer.logger=false",
            f"--run_dir={tmp_path}/r",
        ],
        run=False,
    )
    net = cli.model.net
    assert cli.datamodule.hparams.image_size == 32
    assert net.input_size == 32 and tuple(net.vit.patch_embed.img_size) == (32, 32)
    assert net.vit.pos_embed.shape[1] == net.vit.num_prefix_tokens + (32 // 16) ** 2
    meta = torch.zeros(2, sum(cli.datamodule.meta_groups))
    with torch.no_grad():
        assert call_net(net.eval(), {"image": torch.randn(2, 3, 32, 32), "meta": meta})["logits"].shape[0] == 2
        with pytest.raises(ValueError, match=r"data\.image_size"):
            call_net(net, {"image": torch.randn(2, 3, 64, 64), "meta": meta})
