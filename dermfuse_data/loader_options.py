"""DataLoader settings that depend on the machine: where augmentation runs and how many workers serve it.

The rules (measured on 2026-12-01, README "Speed"):

* ``augment_on: auto`` -> ``device`` when the run trains on an accelerator (CUDA/MPS), else ``cpu``.
  On a GPU, kornia augments a 224 px batch of 32 in well under a millisecond while a CPU core needs
  ~9 ms per image for the ``standard`` recipe (colour jitter with hue is most of it). On a CPU-only
  run kornia costs the same ~10 ms per image as torchvision but in the training process, while the
  CPU backend runs in the workers beside it: ``cpu`` wins there.
* ``num_workers: auto`` -> enough workers to serve :data:`TARGET_IMAGES_PER_S` per device, from the
  per-worker rate measured on the training set (a fraction of a second of ``dataset[i]`` calls), within
  the cores this process may use: all but one per device on an accelerator; a quarter of them on a
  CPU-only run, whose training uses the same cores (2 cores -> 0 workers: measured faster there).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Iterator

import numpy as np
import torch

#: images/s one device should be served (a modern GPU trains ResNet-50 at 224 px at ~2,600 images/s)
TARGET_IMAGES_PER_S = 3000
ACCELERATORS = {"cuda", "mps", "xpu"}


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask: what SLURM or taskset granted)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_augment_on(option: str, device_type: str) -> str:
    """``cpu`` or ``device`` for ``data.augment_on`` = ``auto | cpu | device`` on a ``device_type`` run."""
    if option not in ("auto", "cpu", "device"):
        raise ValueError(f"data.augment_on={option!r}: use auto, cpu or device")
    if option != "auto":
        return option
    return "device" if device_type in ACCELERATORS else "cpu"


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one CPU thread inside, as in a DataLoader worker (torch sets its workers to one thread).

    A worker's rate measured with more threads is wrong on a shared machine: torch's intra-op threads wait on
    each other (measured: the CPU train transform 16x slower on 2 threads at load 9 on 2 cores).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def measure_rate(dataset, seconds: float = 0.3, max_samples: int = 256) -> float:
    """Samples/s one worker gets from ``dataset[i]`` (random indices, at most ``seconds``, one torch thread)."""
    order = np.random.default_rng(0).permutation(len(dataset))[:max_samples]
    with one_torch_thread():
        start, n = time.perf_counter(), 0
        for i in order:
            dataset[int(i)]
            n += 1
            if time.perf_counter() - start > seconds:
                break
        return n / max(time.perf_counter() - start, 1e-9)


def auto_num_workers(per_worker_rate: float, cores: int, processes_per_node: int, device_type: str) -> int:
    """Workers per training process for :data:`TARGET_IMAGES_PER_S` (module doc); at least 1 where cores allow."""
    cores_per_process = max(1, cores // max(1, processes_per_node))
    budget = cores_per_process - 1 if device_type in ACCELERATORS else cores_per_process // 4
    needed = math.ceil(TARGET_IMAGES_PER_S / max(per_worker_rate, 1e-9))
    return max(0, min(budget, max(1, needed)))


def choose_num_workers(dataset, processes_per_node: int, device_type: str) -> int:
    """``num_workers: auto`` for this dataset on this machine, printed with its reasons."""
    rate, cores = measure_rate(dataset), available_cores()
    workers = auto_num_workers(rate, cores, processes_per_node, device_type)
    print(
        f"data.num_workers=auto -> {workers} ({cores} cores, {processes_per_node} process(es) on {device_type}; "
        f"one worker serves ~{rate:,.0f} samples/s, target {TARGET_IMAGES_PER_S:,}/s per device)",
        file=sys.stderr,
        flush=True,
    )
    return workers
