"""DualNet's pipeline: segmenter run -> masks predicted once (cached by checkpoint hash) -> classifier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.experiments._support import EXPERIMENTS, QUIET, metrics_of, require_paper

LIMITS = ["--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1", "--trainer.limit_test_batches=1"]


@pytest.mark.slow
def test_segment_then_classify(runs_dir, monkeypatch):
    from dermfuse_data.datamodule import DermDataModule
    from dermfuse_data.mask_file import MaskFile
    from dermfuse_data.transforms import build_transform
    from dermfuse_models.nets.dualnet_unet import predict_masks
    from dermfuse_models.runner import two_stage
    from dermfuse_models.runner.cli import main, parse_config
    from dermfuse_models.runner.rebuild import rebuild

    folder = require_paper("dualnet")
    seg = main(
        [
            "fit",
            "--config",
            str(folder / "segmenter.yaml"),
            "--config",
            str(folder / "segmenter_smoke.yaml"),
            *QUIET,
            *LIMITS,
            "--trainer.max_epochs=1",
        ]
    )
    seg_dir = Path(seg.trainer.default_root_dir)
    assert seg_dir.parent.name == "dualnet_segmenter" and "test/dice" in metrics_of(seg_dir)["test"]
    assert (seg_dir / "figures" / "segmentation_samples.png").is_file()
    ckpt = Path(metrics_of(seg_dir)["best_checkpoint"])

    cls_args = [
        "fit",
        "--config",
        str(folder / "config.yaml"),
        "--config",
        str(folder / "data" / "ham10000.yaml"),
        "--config",
        str(folder / "smoke.yaml"),
        *QUIET,
        "--trainer.fast_dev_run=true",
    ]
    two_stage.main(cls_args)  # finds the segmenter run by itself
    cls_dir = next((runs_dir / "dualnet").iterdir())
    metrics = metrics_of(cls_dir)
    masks = MaskFile(metrics["predicted_masks"])
    assert metrics["dataset"] == "ham10000" and metrics["test"]
    assert masks.metadata["checkpoint_sha256"] == two_stage.file_sha256(ckpt)

    # one mask per HAM10000 sample, at the classifier's size, equal to the segmenter's prediction
    dm = DermDataModule("ham10000", image_size=masks.size[0])
    assert set(masks.sample_ids) == set(dm.table.column("sample_id").to_pylist())
    net = rebuild(ckpt).model.net
    seg_size = seg.datamodule.hparams.image_size
    path, seg_cache = two_stage.predicted_mask_path(dm, seg_size, masks.metadata["checkpoint_sha256"], 0.5)
    assert path == Path(metrics["predicted_masks"])
    image = two_stage._images(seg_cache, range(3, 4), build_transform(False))
    expected = torch.nn.functional.interpolate(predict_masks(net, image, 0.5), size=masks.size, mode="nearest")
    assert np.array_equal(masks.mask(seg_cache.sample_ids[3]), expected[0, 0].numpy().astype(np.uint8))

    # predicted once: a second classifier run reuses the file without loading the segmenter
    def no_reload(*args, **kwargs):
        raise AssertionError("masks should come from the cache")

    monkeypatch.setattr(two_stage, "rebuild", no_reload)
    again = two_stage.prepare_predicted_masks(parse_config(cls_args).data.as_dict())
    assert again == path


def test_missing_segmenter_run_is_a_clear_error(runs_dir, capsys):
    from dermfuse_models.runner import two_stage

    require_paper("dualnet")
    folder = EXPERIMENTS / "dualnet"
    with pytest.raises(SystemExit) as exit_:
        two_stage.main(["fit", "--config", str(folder / "config.yaml"), "--config", str(folder / "smoke.yaml")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "no finished 'dualnet_segmenter' run on synthetic data" in err and "make train-dualnet-seg" in err


def test_the_segmenter_size_image_cache_is_built_with_cache_workers_auto():
    """``data.cache_workers: auto`` (the configs' default) resolves to a number of decoders before the stage-2
    data builds the image cache at the segmenter's size (``make train-dualnet-cls`` on a fresh cache)."""
    from dermfuse_data.datamodule import DermDataModule
    from dermfuse_data.loader_options import available_cores
    from dermfuse_models.runner import two_stage

    dm = DermDataModule("ph2", image_size=32, meta_features=None, cache_workers="auto")
    assert dm.cache_worker_count == available_cores()
    path, seg_cache = two_stage.predicted_mask_path(dm, 40, "0" * 64, 0.5)  # 40 px: a cache no other test builds
    assert seg_cache.path.is_file() and seg_cache.path.name.startswith("images-40x40-")
    assert path.parent == seg_cache.path.parent and not path.exists()  # the masks are predicted later
