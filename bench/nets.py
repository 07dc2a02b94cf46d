"""Every paper net, built from its own config (``runner/profile.py``): parameters and GFLOPs vs the paper's,
train and inference images/s at the paper's resolution per variant, achieved TFLOP/s on a GPU.

Variants: ``eager`` / ``fp32`` (plain), ``channels_last``, ``compile`` (``nn.Module.compile``, compile time
reported apart), ``bf16`` (autocast) and their combinations. A train step is forward, the summed output
(+ the net's aux losses), backward and an Adam step; its FLOPs are taken as 3x the forward's (the usual
forward + 2x backward estimate) for the achieved TFLOP/s.
"""

from __future__ import annotations

import copy
import gc
import time

import torch

from bench.common import BenchSize, Budget, median_step_s, peak_tflops, synchronize
from dermfuse_models.protocol import call_net
from dermfuse_models.runner.profile import NetSpec, build_net, count_flops, select


def _batch_of(inputs: dict, batch: int, device: torch.device, channels_last: bool) -> dict:
    out = {}
    for key, value in inputs.items():
        if value is None:
            continue
        value = value.expand(batch, *value.shape[1:]).clone().to(device)
        if channels_last and value.dim() == 4:
            value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out


def _loss(out: dict) -> torch.Tensor:
    loss = out["logits"].float().mean()
    for value in (out.get("aux_losses") or {}).values():
        loss = loss + value.float()
    return loss


def measure_variant(
    net, inputs: dict, variant: str, batch: int, warmup: int, steps: int, device, backend: str = "inductor"
) -> dict:
    """Train and inference images/s of one variant (``net`` is modified: converted / compiled with ``backend``)."""
    channels_last, compiled, bf16 = "channels_last" in variant, "compile" in variant, "bf16" in variant
    if channels_last:
        net.to(memory_format=torch.channels_last)
    batch_inputs = _batch_of(inputs, batch, device, channels_last)
    compile_s = None
    if compiled:
        net.compile(backend=backend)
    optimiser = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-5)

    def train_step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = _loss(call_net(net, batch_inputs))
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)

    def infer_step() -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            call_net(net, batch_inputs)

    net.train()
    if compiled:  # the first step compiles: timed apart
        start = time.perf_counter()
        train_step()
        synchronize(device)
        compile_s = time.perf_counter() - start
    train_s = median_step_s(train_step, warmup, steps, device)
    net.eval()
    infer_s = median_step_s(infer_step, warmup + (1 if compiled else 0), steps, device)
    return {
        "variant": variant,
        "batch": batch,
        "train_images_per_s": batch / train_s,
        "infer_images_per_s": batch / infer_s,
        "compile_s": compile_s,
    }


def describe(spec: NetSpec, size: BenchSize) -> tuple[dict, tuple | None]:
    """One paper net's row (params, GFLOPs vs the paper's) and its ``(net, inputs, flops, batch)``, or the error."""
    row: dict = {"net": spec.name, "paper": spec.paper, "paper_params_m": spec.paper_params_m}
    row["paper_gflops"] = spec.paper_gflops
    try:
        net, inputs = build_net(spec, size.net_size or spec.input_size)
    except (ImportError, ValueError, TypeError, SystemExit) as err:
        return {**row, "error": f"{spec.config} does not build: {type(err).__name__}: {err}"}, None
    flops = count_flops(net, inputs)
    batch = size.net_batch or _config_batch(spec)
    row.update(
        input_size=int(inputs["image"].shape[-1]),
        params_m=sum(p.numel() for p in net.parameters()) / 1e6,
        gflops=flops / 1e9,
        gmacs=flops / 2e9,
        variants=[],
    )
    return row, (net, inputs, flops, batch)


def add_variant(row: dict, built: tuple, variant: str, size: BenchSize, device: torch.device, budget: Budget) -> None:
    """Measure one variant of a described net into ``row["variants"]`` (or record why it was skipped)."""
    net, inputs, flops, batch = built
    if not budget.allows(size.compile_estimate_s if "compile" in variant else 10.0):
        row["variants"].append({"variant": variant, "skipped": "time budget"})
        return
    if device.type == "cpu" and "bf16" in variant and size.name != "tiny":  # tiny: the GPU code path, tested
        row["variants"].append({"variant": variant, "skipped": "bf16 on CPU (~14x slower here)"})
        return
    if device.type == "cpu" and "channels_last" in variant:  # the same rule as runner.speed.SpeedOptions
        row["variants"].append({"variant": variant, "skipped": "CPU (oneDNN channels-last bug, runner/speed.py)"})
        return
    fresh = copy.deepcopy(net).to(device)  # every variant starts from the same weights
    try:
        result = measure_variant(
            fresh, inputs, variant, batch, size.net_warmup, size.net_steps, device, size.compile_backend
        )
        if "compile" in variant:
            result["compile_backend"] = size.compile_backend
    except torch.OutOfMemoryError:
        result = {"variant": variant, "skipped": f"out of memory at batch {batch}"}
    except Exception as err:  # e.g. a compiler missing: recorded, the other variants still run
        result = {"variant": variant, "error": f"{type(err).__name__}: {str(err)[:300]}"}
    peak = peak_tflops(device)
    if peak and "train_images_per_s" in result:
        achieved = 3 * flops * result["train_images_per_s"] / 1e12
        result.update(train_tflops=achieved, share_of_peak=achieved / peak)
    row["variants"].append(result)
    del fresh
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _config_batch(spec: NetSpec) -> int:
    import yaml

    return int((yaml.safe_load(spec.config.read_text()).get("data") or {}).get("batch_size", 32))


def input_sizes(size: BenchSize) -> set[int]:
    """The resolutions the nets will run at (for the loader rows), read from their configs."""
    import yaml

    out = set()
    for spec in select(list(size.nets) if size.nets else None):
        config = yaml.safe_load(spec.config.read_text()) or {}
        out.add(int(size.net_size or spec.input_size or (config.get("data") or {}).get("image_size", 224)))
    return out


def run(size: BenchSize, device: torch.device, budget: Budget, progress=None) -> list[dict]:
    """Every paper net (or the size's ``nets``), one row each; compiled variants last (the budget goes
    to the plain figures of every net first). ``progress(rows)`` after each variant (partial results)."""
    described = [describe(spec, size) for spec in select(list(size.nets) if size.nets else None)]
    rows = [row for row, _ in described]
    for later in (False, True):
        for row, built in described:
            for variant in size.variants:
                if built is not None and ("compile" in variant) == later:
                    add_variant(row, built, variant, size, device, budget)
                    if progress is not None:
                        progress(rows)
    return rows
