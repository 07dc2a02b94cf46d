"""What every benchmark section shares: sizes, the device, timing with synchronisation, a time budget."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

#: peak dense bf16 tensor TFLOP/s by device-name fragment (vendor data sheets), for the share of peak
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "GH200": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L40": 181.0,
    "A40": 150.0,
    "A10": 125.0,
    "L4": 121.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
    "V100": 125.0,  # fp16 tensor cores (no bf16)
    "T4": 65.0,  # fp16
}


@dataclass(frozen=True)
class BenchSize:
    """How much one ``make bench`` run measures (``BENCH_SIZE``)."""

    name: str
    image_size: int  # loader sections
    sources: dict[str, int]  # source kind -> number of files
    dicom_shape: tuple[int, int]  # (H, W) of the DICOM source
    workers: tuple[int, ...]  # DataLoader worker counts for the DataModule rows
    loader_batches: int
    loader_batch: int
    overhead_size: int
    overhead_batch: int
    overhead_steps: int
    nets: tuple[str, ...] | None  # None: every paper net
    net_size: int | None  # None: each net at its paper resolution
    net_batch: int | None  # None: the paper config's batch size
    net_warmup: int
    net_steps: int
    variants: tuple[str, ...]
    budget_s: float
    dataset_images: int = 160  # images of the generated PAD-UFES-20-layout dataset the DataModule rows read
    compile_backend: str = "inductor"  # tiny: "eager" (dynamo's tracing of every net, without code generation)
    compile_estimate_s: float = 120.0  # what the budget keeps free before a compiled variant starts


def bench_dataset(folder: Path, size: BenchSize) -> Path:
    """A PAD-UFES-20-layout dataset of ``size.dataset_images`` images (88-128 px PNGs), written once into ``folder``."""
    from dermfuse_data.synthetic.pad_ufes_20 import write_miniature

    root = folder / f"pad_ufes_20-{size.dataset_images}"
    if not (root / "metadata.csv").is_file():
        write_miniature(root, seed=0, n_images=size.dataset_images)
    return root


def sizes(cores: int) -> dict[str, BenchSize]:
    """The sizes: ``tiny`` (the test), ``small`` (2 CPU cores, < 15 min), ``full`` (a CPU node), ``gpu``."""
    all_workers = tuple(sorted({0, 1, 2, 4, min(8, max(1, cores - 1))}))
    cpu_variants = ("eager", "channels_last", "compile")
    return {
        "tiny": BenchSize(
            "tiny", 32, {"jpeg_600x450": 4, "dicom_3000x5000": 2}, (300, 500), (0,), 2, 8, 32, 8, 4,
            ("eamnet",), 32, 2, 1, 1, ("fp32", "bf16", "channels_last", "compile"), 600.0, 160, "eager", 10.0,
        ),
        "small": BenchSize(
            "small", 224,
            {"jpeg_600x450": 96, "jpeg_1024x768": 48, "bmp_767x576": 48, "dicom_3000x5000": 6},
            (5000, 3000), (0, 1, 2), 6, 32, 64, 32, 20,
            None, None, 2, 1, 2, cpu_variants, 840.0, 480, "inductor", 600.0,  # DualNet compiled in 537 s at load 11
        ),
        "full": BenchSize(
            "full", 224,
            {"jpeg_600x450": 512, "jpeg_1024x768": 256, "bmp_767x576": 256, "dicom_3000x5000": 32},
            (5000, 3000), all_workers, 20, 32, 224, 32, 50,
            None, None, 8, 2, 5, cpu_variants, 3600.0, 2048,
        ),
        "gpu": BenchSize(
            "gpu", 224,
            {"jpeg_600x450": 256, "jpeg_1024x768": 128, "bmp_767x576": 128, "dicom_3000x5000": 16},
            (5000, 3000), all_workers, 20, 32, 224, 64, 50,
            None, None, None, 5, 15, ("fp32", "bf16", "bf16+channels_last", "bf16+channels_last+compile"), 400.0, 2048,
        ),
    }  # fmt: skip


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a GPU is an error that says so."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no CUDA device (nvidia-smi? CUDA_VISIBLE_DEVICES?)")
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    """A readable device name (the GPU's, or the CPU with its core count)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from dermfuse_data.loader_options import available_cores

    return f"CPU ({available_cores()} cores, {torch.get_num_threads()} torch threads)"


def peak_tflops(device: torch.device) -> float | None:
    """The device's dense bf16 peak (``PEAK_BF16_TFLOPS``), or ``None`` when unknown / on a CPU."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in sorted(PEAK_BF16_TFLOPS.items(), key=lambda kv: -len(kv[0])) if k in name), None)


def median_step_s(step: Callable[[], object], warmup: int, steps: int, device: torch.device) -> float:
    """Median wall time of ``step()`` (synchronised) over ``steps`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    synchronize(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class Budget:
    """A wall-clock allowance: sections ask :meth:`allows` before each measurement and record what they skip."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, time.perf_counter()

    def left(self) -> float:
        """Seconds still allowed."""
        return self.seconds - (time.perf_counter() - self.start)

    def allows(self, estimate_s: float) -> bool:
        """Whether a measurement expected to take ``estimate_s`` fits."""
        return self.left() > estimate_s
