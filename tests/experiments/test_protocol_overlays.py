"""The protocol overlays (``experiments/<paper>/data/<variant>.yaml``) change what their header says.

Data-only overlays are checked key by key in test_experiment_configs.py; here: the overlays that
also change the model or trainer, and the classes each variant trains on.
"""

from __future__ import annotations

import pytest
import yaml

from tests.experiments._support import EXPERIMENTS


def _parsed(paper: str, overlay: str):
    from dermfuse_models.runner.cli import parse_config

    folder = EXPERIMENTS / paper
    return parse_config(["fit", "--config", str(folder / "config.yaml"), "--config", str(folder / "data" / overlay)])


def _checkpoint_monitor(cfg) -> str:
    (ckpt,) = [c for c in cfg.trainer.callbacks if c.class_path.endswith("RunCheckpoint")]
    return ckpt.init_args.monitor


@pytest.mark.parametrize("dataset", ["ham10000", "isic2019"])
def test_dualnet_accuracy_protocol_drops_class_weights_and_selects_on_accuracy(dataset):
    default = _parsed("dualnet", f"{dataset}.yaml")
    accuracy = _parsed("dualnet", f"{dataset}_accuracy.yaml")
    assert (
        default.model.init_args.class_weights == "inverse_frequency" and _checkpoint_monitor(default) == "val/bal_acc"
    )
    assert accuracy.model.init_args.class_weights is None and _checkpoint_monitor(accuracy) == "val/acc"
    # nothing else moves: same net, same data
    assert accuracy.model.init_args.net == default.model.init_args.net
    assert accuracy.data == default.data
    kinds = [c.class_path.rsplit(".", 1)[-1] for c in accuracy.trainer.callbacks]
    assert kinds == [c.class_path.rsplit(".", 1)[-1] for c in default.trainer.callbacks]


@pytest.mark.parametrize(
    ("paper", "overlay", "classes"),
    [
        ("msvit", "isic2017.yaml", 3),
        ("msvit", "isic2017_melanoma.yaml", 2),
        ("dualnet", "ham10000_image_split.yaml", 7),
        ("mammo_xattn", "cbis_ddsm_roi.yaml", 2),
    ],
)
def test_protocol_overlays_train_on_the_classes_they_name(paper, overlay, classes, tmp_path):
    from dermfuse_data.datamodule import DermDataModule

    data = yaml.safe_load((EXPERIMENTS / paper / "data" / overlay).read_text())[
        "data"
    ]  # parsed: test_experiment_configs
    options = data.get("source_options") or {}
    dm = DermDataModule(data["dataset"], source_options=options, cache_dir=str(tmp_path))
    assert dm.num_classes == classes
