"""Where augmentation runs and how many workers serve it: the rules, and the uint8 device path of the DataModule."""

from __future__ import annotations

import re

import pytest
import torch

from dermfuse_data.datamodule import DermDataModule
from dermfuse_data.loader_options import auto_num_workers, measure_rate, resolve_augment_on


@pytest.mark.parametrize(
    ("rate", "cores", "processes", "device", "expected"),
    [
        (10_000, 16, 1, "cuda", 1),  # one fast worker serves a GPU; never 0 (overlap with the step)
        (700, 16, 1, "cuda", 5),  # ceil(3000 / 700)
        (100, 16, 1, "cuda", 15),  # slow workers: every core but the main process's
        (100, 16, 8, "cuda", 1),  # 8 GPUs share 16 cores: 2 each, one for the main process
        (100, 2, 1, "cpu", 0),  # CPU training on 2 cores: the step needs them
        (100, 16, 1, "cpu", 4),  # CPU training: a quarter of the cores load
    ],
)
def test_auto_num_workers_rule(rate, cores, processes, device, expected):
    assert auto_num_workers(rate, cores, processes, device) == expected


def test_augment_on_auto_is_device_on_accelerators_only():
    assert resolve_augment_on("auto", "cuda") == "device" and resolve_augment_on("auto", "cpu") == "cpu"
    assert resolve_augment_on("device", "cpu") == "device" and resolve_augment_on("cpu", "cuda") == "cpu"
    with pytest.raises(ValueError, match="data.augment_on='gpu': use auto, cpu or device"):
        resolve_augment_on("gpu", "cuda")


def test_a_bad_recipe_fails_when_the_datamodule_is_built(session_cache):
    with pytest.raises(ValueError, match=r"data.augment\[0\]: step name 'zoom' is unknown"):
        DermDataModule("ph2", augment=[{"name": "zoom"}], cache_dir=str(session_cache))


@pytest.fixture(scope="module")
def segmentation(session_cache):
    kwargs = dict(task="segmentation", image_size=32, batch_size=6, cache_dir=str(session_cache), augment="standard")
    return DermDataModule("ph2", augment_on="device", **kwargs), DermDataModule("ph2", augment_on="cpu", **kwargs)


def test_device_path_serves_uint8_and_normalises_like_the_cpu_path(segmentation):
    device, cpu = segmentation
    raw = next(iter(device.val_dataloader()))
    assert raw["image"].dtype == torch.uint8 and raw["mask"].dtype == torch.uint8  # a quarter of float32's bytes
    assert raw["image"].shape == (6, 3, 32, 32) and raw["mask"].shape == (6, 1, 32, 32)
    served = device.on_after_batch_transfer(raw, 0)  # no trainer attached: evaluation, no augmentation
    reference = next(iter(cpu.val_dataloader()))
    torch.testing.assert_close(served["image"], reference["image"], atol=1e-5, rtol=0)
    assert torch.equal(served["mask"], reference["mask"]) and served["sample_id"] == reference["sample_id"]


def test_num_workers_auto_measures_and_says_why(session_cache, capsys):
    dm = DermDataModule("ph2", image_size=32, num_workers="auto", cache_dir=str(session_cache), meta_features=None)
    loader = dm.train_dataloader()
    err = capsys.readouterr().err
    chosen = re.search(r"data.num_workers=auto -> (\d+) \((\d+) cores, 1 process\(es\) on cpu", err)
    assert chosen and "samples/s" in err and "target 3,000/s" in err, err
    assert loader.num_workers == int(chosen[1]) <= int(chosen[2]) // 4  # no trainer: a CPU run
    assert dm.val_dataloader().num_workers == loader.num_workers and "num_workers=auto" not in capsys.readouterr().err


def test_a_workers_rate_is_measured_on_one_torch_thread_and_the_setting_comes_back():
    class RecordsThreads:
        def __init__(self):
            self.seen: list[int] = []

        def __len__(self):
            return 8

        def __getitem__(self, i):
            self.seen.append(torch.get_num_threads())
            if len(self.seen) == 8:
                raise KeyError("a broken sample")
            return i

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        dataset = RecordsThreads()
        with pytest.raises(KeyError):
            measure_rate(dataset, seconds=5)
        assert dataset.seen == [1] * 8 and torch.get_num_threads() == 2  # a worker's setting, then restored
    finally:
        torch.set_num_threads(before)
