"""``make bench [BENCH_SIZE=small]``: every speed figure of dermfuse measured side by side in one run.

    python -m bench.run [--size tiny|small|full|gpu] [--device auto|cpu|cuda] [--dry] [--out bench/results]
                        [--sections loader,overhead,nets] [--budget-s S]

Sections (each module's docstring says exactly what it times): ``loader`` (cache vs per-sample decode per
source kind, cache build rate and size, DataModule images/s by workers and ``augment_on``), ``overhead``
(Trainer vs a plain PyTorch loop; the whole dermfuse path vs the plain loop), ``nets`` (every paper net:
params and GFLOPs vs the paper, train/inference images/s per variant, TFLOP/s share of peak on a GPU).
Then the loader/train ratio per net and the README targets, each marked met or missed.

Writes ``<out>/bench-<size>-<device>-<time>.json`` and ``.md`` (the same tables) and prints the tables.
``--dry``: the ``tiny`` size on the given device, the same code path (what ``bench/gpu.sh`` is tested with).
No measurement stops the run: a failing or skipped item is recorded with its reason.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import torch

from bench import loader, nets, overhead
from bench.common import Budget, device_name, resolve_device, sizes
from bench.report import markdown, targets
from dermfuse_data.loader_options import available_cores, resolve_augment_on

SECTIONS = ("loader", "overhead", "nets")
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def _section(name: str, fn, *args):
    start = time.perf_counter()
    try:
        result = fn(*args)
    except Exception as err:  # recorded, never fatal: the other figures still come
        result = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=8)}
    print(f"[bench] {name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return result


def loader_train_ratios(results: dict, device: torch.device) -> list[dict]:
    """Per net: the best images/s the DataModule serves at its resolution (``augment_on: auto``'s choice
    on this device) over its best train images/s."""
    rows = results.get("loader", {}).get("datamodule", []) if isinstance(results.get("loader"), dict) else []
    mode = resolve_augment_on("auto", device.type)
    out = []
    for net in results.get("nets", []) if isinstance(results.get("nets"), list) else []:
        served = [
            r["images_per_s"]
            for r in rows
            if r.get("image_size") == net.get("input_size") and r.get("augment_on") == mode and "images_per_s" in r
        ]
        trained = [v["train_images_per_s"] for v in net.get("variants", []) if "train_images_per_s" in v]
        if served and trained:
            out.append(
                {
                    "net": net["net"],
                    "input_size": net["input_size"],
                    "augment_on": mode,
                    "loader_images_per_s": max(served),
                    "train_images_per_s": max(trained),
                    "loader_train_ratio": max(served) / max(trained),
                }
            )
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the sections, write JSON + Markdown, print the tables (0 unless the run itself broke)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--size", default="small", help="tiny | small | full | gpu (default small)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present) | cpu | cuda[:N]")
    parser.add_argument("--dry", action="store_true", help="the tiny size through the same code path")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="folder of the JSON and Markdown results")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma list of " + ", ".join(SECTIONS))
    parser.add_argument("--budget-s", type=float, default=None, help="wall-clock allowance (default: the size's)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    table = sizes(available_cores())
    name = "tiny" if args.dry else args.size
    if name not in table:
        parser.error(f"--size {name!r}: choose from {sorted(table)}")
    size = table[name]
    wanted = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        parser.error(f"--sections: unknown {unknown}; choose from {list(SECTIONS)}")
    budget = Budget(args.budget_s if args.budget_s is not None else size.budget_s)
    started = time.strftime("%Y%m%d-%H%M%S")
    results: dict = {
        "size": name,
        "device": str(device),
        "device_name": device_name(device),
        "host": platform.node(),
        "torch": torch.__version__,
        "started": started,
        "budget_s": budget.seconds,
        "load_average": os.getloadavg(),
    }
    stem = Path(args.out) / f"bench-{name}-{device.type}-{started}"
    if "loader" in wanted:
        net_sizes = nets.input_sizes(size) if "nets" in wanted else set()
        results["loader"] = _section("loader", loader.run, size, device, budget, net_sizes)
        save(results, stem, device, budget)
    if "overhead" in wanted:
        results["overhead"] = _section("overhead", overhead.run, size, device, budget)
        save(results, stem, device, budget)
    if "nets" in wanted:
        partial = lambda rows: save({**results, "nets": rows}, stem, device, budget)
        results["nets"] = _section("nets", nets.run, size, device, budget, partial)
    text = save(results, stem, device, budget)
    print(text)
    print(f"[bench] wrote {stem}.json and {stem}.md in {results['seconds']:.0f} s", file=sys.stderr)
    return 0


def save(results: dict, stem: Path, device: torch.device, budget: Budget) -> str:
    """Derived rows (loader/train ratios, targets) added, JSON + Markdown (re)written; returns the Markdown.

    Written after every section and every net variant, so a run stopped by a timeout keeps what it measured.
    """
    results["loader_train"] = loader_train_ratios(results, device)
    results["targets"] = targets(results)
    results["seconds"] = time.perf_counter() - budget.start
    results["load_average_now"] = os.getloadavg()
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str))
    text = markdown(results)
    stem.with_suffix(".md").write_text(text)
    return text


if __name__ == "__main__":
    sys.exit(main())
