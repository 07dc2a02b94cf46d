"""Parameters and FLOPs of every paper's net, built from its own config (``python -m dermfuse_models.runner profile``).

Each trainable config of an experiment folder (``experiments/<paper>/config.yaml``, DualNet's
``segmenter.yaml``) is one net: it is parsed by the same CLI as training (so the data -> net links --
classes, clinical feature widths, image size -- are the training ones), with ``pretrained`` off and
the data's synthetic miniature unless ``--data_root`` is given (clinical feature widths then come from
the real metadata; the miniature's are within a few columns). The paper's own figures come from the
``complexity`` entry of ``experiments/<paper>/reported.yaml`` (with the input size they are compared at,
where it is not the config's).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass of batch 1
in eval mode (no gradients). It counts matrix multiplications, convolutions and attention kernels,
with one multiply-add = **2 FLOPs**; element-wise ops (activations, norms, pooling, softmax) are not
counted. We print both **GMACs** (= GFLOPs / 2) and **GFLOPs**, because papers use "FLOPs" for either.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import yaml
from torch.utils.flop_counter import FlopCounterMode

from dermfuse_models.protocol import call_net

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
#: files of an experiment folder that are not a trainable config
NOT_A_NET = {"smoke", "sweep", "reported"}


@dataclass
class NetSpec:
    """One paper net to profile: the config that trains it and the paper's figures (``reported.yaml``)."""

    name: str
    paper: str
    config: Path
    paper_params_m: float | None = None
    paper_gflops: float | None = None
    note: str = ""
    input_size: int | None = None  # where the paper's figures are compared; None = the config's data.image_size


def discover(experiments: Path = EXPERIMENTS) -> list[NetSpec]:
    """Every trainable config of every experiment folder, named as its runs are (``dualnet_segmenter``)."""
    specs = []
    for folder in sorted(p for p in experiments.iterdir() if (p / "config.yaml").is_file()):
        reported = (
            yaml.safe_load((folder / "reported.yaml").read_text()) if (folder / "reported.yaml").is_file() else {}
        )
        complexity = (reported or {}).get("complexity") or {}
        for config in sorted(folder.glob("*.yaml")):
            if config.stem in NOT_A_NET or config.stem.endswith("_smoke"):
                continue
            name = folder.name if config.stem == "config" else f"{folder.name}_{config.stem}"
            figures = complexity.get(config.name) or {}
            specs.append(
                NetSpec(
                    name,
                    folder.name,
                    config,
                    figures.get("params_m"),
                    figures.get("gflops"),
                    str(figures.get("note", "")),
                    figures.get("input_size"),
                )
            )
    return specs


def select(only: list[str] | None, specs: list[NetSpec] | None = None) -> list[NetSpec]:
    """The specs named in ``only`` (a net name, or a paper slug such as ``dualnet``); all when empty."""
    specs = discover() if specs is None else specs
    if not only:
        return specs
    unknown = [o for o in only if not any(o in (s.name, s.paper) for s in specs)]
    if unknown:
        raise ValueError(f"unknown net(s) {unknown}; choose from {[s.name for s in specs]} or a paper slug.")
    return [s for s in specs if any(o in (s.name, s.paper) for o in only)]


def _example_inputs(net: nn.Module, datamodule, size: int) -> dict[str, torch.Tensor]:
    """One image, a one-hot clinical row per feature block and a centred lesion mask (nets ignore the rest)."""
    widths = list(datamodule.meta_groups) if datamodule.features else []
    meta = torch.zeros(1, sum(widths))
    for start in torch.cumsum(torch.tensor([0, *widths[:-1]]), 0).tolist() if widths else []:
        meta[0, start] = 1.0
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1.0
    return {"image": torch.randn(1, 3, size, size), "meta": meta if widths else None, "mask": mask}


def build_net(spec: NetSpec, size: int | None = None, data_root: str | None = None) -> tuple[nn.Module, dict]:
    """The spec's net exactly as its config trains it (``pretrained`` off), with example inputs at ``size``."""
    from dermfuse_models.runner.cli import parse_config
    from dermfuse_models.runner.rebuild import build_from_config, rebuildable_config

    args = ["fit", "--config", str(spec.config)]
    args += [f"--data.root={data_root}"] if data_root else []
    args += [f"--data.image_size={size}"] if size else []
    cfg = rebuildable_config(parse_config(args).as_dict(), spec.config)
    cfg["data"] = {**cfg["data"], "use_masks": False, "predicted_masks": None}
    with tempfile.TemporaryDirectory(prefix="dermfuse-profile-") as tmp:
        cli = build_from_config(cfg, tmp)
    net = cli.model.net
    return net, _example_inputs(net, cli.datamodule, int(cfg["data"]["image_size"]))


def count_flops(net: nn.Module, inputs: dict[str, torch.Tensor]) -> int:
    """Total FLOPs (2 per multiply-add) of one eval-mode forward, by ``FlopCounterMode``."""
    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        call_net(net, inputs)
    return int(counter.get_total_flops())


def profile_spec(spec: NetSpec, size: int | None = None, data_root: str | None = None) -> dict[str, Any]:
    """One result row: params, trainable params, MACs/FLOPs and the paper's figures (or the error)."""
    row: dict[str, Any] = {
        "name": spec.name,
        "paper": spec.paper,
        "config": str(spec.config),
        "paper_params_m": spec.paper_params_m,
        "paper_gflops": spec.paper_gflops,
        "note": spec.note,
    }
    try:
        net, inputs = build_net(spec, size or spec.input_size, data_root)
    except (ImportError, ValueError, TypeError, SystemExit) as err:
        row.update(status="error", reason=f"{spec.config} does not build: {type(err).__name__}: {err}")
        return row
    flops = count_flops(net, inputs)
    row.update(
        status="ok",
        input_size=int(inputs["image"].shape[-1]),
        params=sum(p.numel() for p in net.parameters()),
        trainable_params=sum(p.numel() for p in net.parameters() if p.requires_grad),
        flops=flops,
        gflops=flops / 1e9,
        gmacs=flops / 2e9,
    )
    return row


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(rows: list[dict[str, Any]]) -> str:
    """Human-readable table of ``profile_spec`` rows plus the FLOP convention."""
    header = (
        f"{'net':<20} {'input':>7} {'params (M)':>11} {'GMACs':>8} {'GFLOPs':>8} "
        f"{'paper params':>13} {'paper GFLOPs':>13}  note"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"{r['name']:<20} error: {r['reason']}")
            continue
        paper = f"{_fmt(r['paper_params_m'], 1)}M" if r["paper_params_m"] is not None else "-"
        lines.append(
            f"{r['name']:<20} {r['input_size']:>7} {r['params'] / 1e6:>11.2f} {r['gmacs']:>8.2f} {r['gflops']:>8.2f} "
            f"{paper:>13} {_fmt(r['paper_gflops']):>13}  {r['note']}"
        )
    lines.append("")
    lines.append(
        "FLOPs = 2 x MACs (torch FlopCounterMode: matmul/conv/attention only; batch 1, eval, "
        "pretrained=False). Papers often call MACs 'FLOPs': compare with both columns."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``profile [--json] [--only NAME ...] [--size N] [--data_root DIR]``: the table (or JSON); 1 if a net fails."""
    parser = argparse.ArgumentParser(
        prog="python -m dermfuse_models.runner profile", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list of rows instead of a table")
    parser.add_argument("--only", action="append", metavar="NAME", help="profile only this net or paper (repeatable)")
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="input side for every net instead of its config's data.image_size (e.g. 64)",
    )
    parser.add_argument("--data_root", default=None, help="real dataset folder (default: the synthetic miniature)")
    args = parser.parse_args(argv)
    try:
        specs = select(args.only)
    except ValueError as err:
        parser.error(str(err))
    rows = [profile_spec(spec, args.size, args.data_root) for spec in specs]
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
