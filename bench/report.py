"""The bench results as Markdown tables, and the README's speed targets checked against them."""

from __future__ import annotations


def _f(value, digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:,.{digits}f}{suffix}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def targets(results: dict) -> list[dict]:
    """The README targets with the measured value and whether it is met (``None``: not measured)."""
    loader = results.get("loader") if isinstance(results.get("loader"), dict) else {}
    sources = {r["source"]: r for r in loader.get("sources", []) if "cache_uint8_per_s" in r}
    over = results.get("overhead") if isinstance(results.get("overhead"), dict) else {}
    ratios = results.get("loader_train", [])
    jpeg = sources.get("jpeg_600x450", {})
    cpu_side = min((r["cache_uint8_per_s"] for r in sources.values()), default=None)
    worst_ratio = min((r["loader_train_ratio"] for r in ratios), default=None)
    rows = [
        ("CPU side of the loader (device augmentation) per worker core", ">= 5,000 images/s", cpu_side, 5000, True),
        (
            "cache serving vs per-sample decode + augmentation, 600x450 JPEG",
            ">= 20x",
            jpeg.get("ratio_cache_uint8_vs_decode"),
            20,
            True,
        ),
        ("Trainer overhead vs a plain loop (median step)", "<= 3%", over.get("trainer_overhead_pct"), 3, False),
        ("loader / train images/s, every paper net measured", ">= 2", worst_ratio, 2, True),
        (
            "timm backbone through dermfuse vs a bare loop (throughput)",
            ">= 90%",
            None if over.get("dermfuse_vs_plain_throughput") is None else 100 * over["dermfuse_vs_plain_throughput"],
            90,
            True,
        ),
    ]
    return [
        {
            "target": what,
            "goal": goal,
            "value": value,
            "met": None if value is None else (value >= bound if at_least else value <= bound),
        }
        for what, goal, value, bound, at_least in rows
    ]


def _loads(loads) -> str:
    return ", ".join(f"{x:.1f}" for x in loads) if loads else "-"


def markdown(results: dict) -> str:
    """Every section as a Markdown table (the same file ``make bench`` writes next to the JSON)."""
    lines = [
        f"## dermfuse bench: size `{results['size']}` on {results['device_name']} "
        f"(torch {results['torch']}, {results['started']})",
        "",
        f"Load average (1, 5, 15 min) at the start: {_loads(results.get('load_average'))}, at the last write: "
        f"{_loads(results.get('load_average_now'))} (other processes share the machine: ratios measured side by "
        "side hold better than absolutes).",
        "",
    ]
    loader = results.get("loader")
    if isinstance(loader, dict) and "error" not in loader:
        lines += [
            "### Loader: cache vs per-sample decode (one process, one torch thread; train transform `standard`)",
            "",
        ]
        rows = []
        for r in loader["sources"]:
            if "skipped" in r:
                rows.append([r["source"], f"skipped: {r['skipped']}"] + ["-"] * 6)
                continue
            rows.append(
                [
                    r["source"],
                    f"{r['files']} x {_f(r['file_mib'], 2)} MiB",
                    f"{_f(r['build_images_per_s'])}/s ({r['build_workers']} workers), {_f(r['cache_mib'])} MiB",
                    _f(r["decode_aug_per_s"], 1),
                    _f(r["cache_aug_per_s"], 1),
                    _f(r["cache_uint8_per_s"]),
                    _f(r["ratio_cache_uint8_vs_decode"], 1, "x"),
                    _f(r["ratio_cache_aug_vs_decode"], 1, "x"),
                ]
            )
        header = [
            "source",
            "files",
            "cache build",
            "decode+aug /s",
            "cache+aug /s",
            "cache uint8 /s",
            "uint8 vs decode",
            "cache+aug vs decode",
        ]
        lines += _table(header, rows) + [""]
        lines += ["### DataModule train loader (generated PAD-UFES-20 layout), images/s", ""]
        rows = [
            [
                str(r["image_size"]),
                r["augment_on"],
                str(r["workers"]),
                _f(r.get("images_per_s")) if "skipped" not in r else f"skipped: {r['skipped']}",
                _f(r.get("batch_bytes_per_image")),
            ]
            for r in loader["datamodule"]
        ]
        lines += _table(["size", "augment_on", "workers", "images/s", "bytes/image shipped"], rows) + [""]
    elif loader:
        lines += [f"loader: {loader['error']}", ""]
    over = results.get("overhead")
    if isinstance(over, dict) and "error" not in over:
        lines += [
            f"### Framework overhead: {over['net']}, {over['image_size']} px, batch {over['batch']}, "
            f"{over['precision']}",
            "",
        ]
        rows = [
            ["plain PyTorch loop", _f(over["plain_step_ms"], 1), "-"],
            ["Trainer + ClassificationTask", _f(over["trainer_step_ms"], 1), _f(over["trainer_overhead_pct"], 1, "%")],
        ]
        if "dermfuse_step_ms" in over:
            rows.append(
                [
                    "DataModule + Trainer + task",
                    _f(over["dermfuse_step_ms"], 1),
                    _f(
                        (over["dermfuse_step_ms"] / over["plain_step_ms"] - 1) * 100, 1, "%"
                    ),  # step time, as the row above
                ]
            )
        lines += _table(["path", "median step (ms)", "vs plain"], rows) + [""]
    elif over:
        lines += [f"overhead: {over['error']}", ""]
    net_rows = results.get("nets")
    if isinstance(net_rows, list):
        lines += ["### Paper nets (train = forward + backward + Adam step; images/s)", ""]
        rows = []
        for n in net_rows:
            if "error" in n:
                rows.append([n["net"], f"error: {n['error']}"] + ["-"] * 7)
                continue
            paper = f"{_f(n['paper_params_m'], 1)} M / {_f(n['paper_gflops'], 2)}"
            for v in n["variants"]:
                if "train_images_per_s" not in v:
                    reason = v.get("skipped") or v.get("error")
                    rows.append([n["net"], str(n["input_size"]), v["variant"], f"not run: {reason}"] + ["-"] * 5)
                    continue
                rows.append(
                    [
                        n["net"],
                        str(n["input_size"]),
                        v["variant"],
                        f"{_f(n['params_m'], 2)} M / {_f(n['gflops'], 2)}",
                        paper,
                        f"{_f(v['train_images_per_s'], 1)} (b{v['batch']})",
                        _f(v["infer_images_per_s"], 1),
                        _f(v.get("compile_s"), 0, " s"),
                        "-" if v.get("train_tflops") is None else f"{v['train_tflops']:.1f} ({v['share_of_peak']:.0%})",
                    ]
                )
        header = [
            "net",
            "px",
            "variant",
            "params / GFLOPs",
            "paper params / GFLOPs",
            "train /s",
            "infer /s",
            "compile",
            "TFLOP/s (share of peak)",
        ]
        lines += _table(header, rows) + [""]
    if results.get("loader_train"):
        lines += ["### Loader / train ratio per paper net (this machine)", ""]
        rows = [
            [
                r["net"],
                str(r["input_size"]),
                r["augment_on"],
                _f(r["loader_images_per_s"]),
                _f(r["train_images_per_s"], 1),
                _f(r["loader_train_ratio"], 1),
            ]
            for r in results["loader_train"]
        ]
        lines += _table(["net", "px", "augment_on", "loader /s", "train /s", "ratio"], rows) + [""]
    lines += ["### Targets", ""]
    rows = [
        [t["target"], t["goal"], _f(t["value"], 1), {True: "met", False: "MISSED", None: "not measured"}[t["met"]]]
        for t in results.get("targets", [])
    ]
    lines += _table(["target", "goal", "measured", ""], rows) + [""]
    return "\n".join(lines)
