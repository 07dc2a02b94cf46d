"""Parameters and FLOPs of every paper's net at its paper input size (``python -m dermfuse_models.runner profile``).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass of batch 1
in eval mode (no gradients, ``pretrained=False``). It counts matrix multiplications,
convolutions and attention kernels, with one multiply-add = **2 FLOPs**; element-wise ops
(activations, norms, pooling, softmax) are not counted. We print both **GMACs** (= GFLOPs / 2)
and **GFLOPs**, because papers use "FLOPs" for either; compare a paper's figure with both.

Nets whose module does not exist yet (being written in parallel) are skipped with a note.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from dermfuse_models.protocol import call_net

#: PAD-UFES-20 encoded widths per clinical feature (ViTAtt's metadata tokens), computed from the
#: published metadata.csv with the project's TabularEncoder rules (categories seen + a missing
#: indicator; numeric = value + indicator), leaking ``biopsed`` excluded: 21 features, 94 columns.
PAD_UFES_20_META_GROUPS = {
    "smoke": 3, "drink": 3, "background_father": 13, "background_mother": 11, "age": 2,
    "pesticide": 3, "gender": 3, "skin_cancer_history": 3, "cancer_history": 3,
    "has_piped_water": 3, "has_sewage_system": 3, "fitspatrick": 7, "region": 15, "diameter_1": 2,
    "diameter_2": 2, "itch": 3, "grew": 3, "hurt": 3, "changed": 3, "bleed": 3, "elevation": 3,
}
#: CBIS-DDSM clinical features of the mammography paper (density, mass shape/margins, calc
#: type/distribution) from the official training CSVs: 36 one-hot columns (the paper's 36-d) + 5
#: missing indicators.
CBIS_DDSM_META_GROUPS = {
    "breast_density": 5, "mass_shape": 9, "mass_margins": 6, "calc_type": 15, "calc_distribution": 6,
}
#: HAM10000 age / sex / localization (DualNet's metadata), same rules: 3 features, 20 columns.
HAM10000_META_GROUPS = {"age": 2, "sex": 3, "localization": 15}


@dataclass
class NetSpec:
    """How to build one paper net for profiling.

    ``build(size)`` returns ``(net, forward kwargs)``; ``module`` is imported lazily so that a net
    still being written is reported as skipped instead of breaking the command.
    """

    name: str
    paper: str
    module: str
    input_size: int
    build: Callable[[Any, int], tuple[nn.Module, dict[str, torch.Tensor]]]
    paper_params_m: float | None = None
    paper_gflops: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _image(size: int) -> torch.Tensor:
    return torch.randn(1, 3, size, size)


def _meta(groups: dict[str, int]) -> tuple[list[int], list[str], torch.Tensor]:
    widths, names = list(groups.values()), list(groups)
    meta = torch.zeros(1, sum(widths))
    start = 0
    for w in widths:  # one active column per feature, like a one-hot row
        meta[0, start] = 1.0
        start += w
    return widths, names, meta


def _vitatt(module: Any, size: int) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    widths, names, meta = _meta(PAD_UFES_20_META_GROUPS)
    net = module.ViTAtt(num_classes=6, meta_groups=widths, meta_names=names, img_size=size)
    return net, {"image": _image(size), "meta": meta}


def _dualnet_segmenter(module: Any, size: int) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    return module.DeepUNet(), {"image": _image(size)}


def _dualnet_classifier(module: Any, size: int) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    widths, names, meta = _meta(HAM10000_META_GROUPS)
    net = module.DualNetClassifier(num_classes=7, meta_groups=widths, meta_names=names)
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1.0
    return net, {"image": _image(size), "meta": meta, "mask": mask}


def _eamnet(module: Any, size: int) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    return module.EAMNet(), {"image": _image(size)}


def _msvit(module: Any, size: int) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    return module.MSViT(num_classes=3, img_size=size), {"image": _image(size)}


def _mammo_xattn(module: Any, size: int) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    widths, names, meta = _meta(CBIS_DDSM_META_GROUPS)
    net = module.MammoXAttn(num_classes=2, meta_groups=widths, meta_names=names, fusion="cross")
    return net, {"image": _image(size), "meta": meta}


NETS: tuple[NetSpec, ...] = (
    NetSpec("vitatt", "vitatt (2304.14505)", "dermfuse_models.nets.vitatt", 224, _vitatt,
            note="ViT-B/16 + 21 PAD-UFES-20 metadata tokens"),
    NetSpec("dualnet.segmenter", "dualnet (2510.17773)", "dermfuse_models.nets.dualnet_unet", 224,
            _dualnet_segmenter, note="Deep-UNet, EfficientNet-B3 encoder"),
    NetSpec("dualnet.classifier", "dualnet (2510.17773)", "dermfuse_models.nets.dualnet_classifier", 224,
            _dualnet_classifier, note="2 x DenseNet201 + cross-attention + 3 HAM10000 metadata tokens"),
    NetSpec("eamnet", "eamnet (2512.07275)", "dermfuse_models.nets.eamnet", 224, _eamnet,
            paper_params_m=4.6, paper_gflops=16.85, note="paper Table I"),
    NetSpec("msvit", "msvit (2502.06243)", "dermfuse_models.nets.msvit", 224, _msvit,
            note="ViT-B/16, scales (1, 2, 4)"),
    NetSpec("mammo_xattn", "mammo_xattn (2508.16000)", "dermfuse_models.nets.mammo_xattn", 224, _mammo_xattn,
            note="ResNet-50 + cross-attention, 5 clinical features (36-d one-hot + 5 missing flags)"),
)


def select(only: list[str] | None) -> list[NetSpec]:
    """The specs named in ``only`` (a name, or a paper prefix such as ``dualnet``); all when empty."""
    if not only:
        return list(NETS)
    chosen = [s for s in NETS if any(s.name == o or s.name.split(".")[0] == o for o in only)]
    unknown = [o for o in only if not any(s.name == o or s.name.split(".")[0] == o for s in NETS)]
    if unknown:
        raise ValueError(f"unknown net(s) {unknown}; choose from {[s.name for s in NETS]} or a paper slug.")
    return chosen


def build_net(spec: NetSpec, size: int | None = None) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """Import the spec's module and build its net (``pretrained=False``) with example inputs.

    Raises:
        ModuleNotFoundError: the net's module does not exist (yet).
    """
    module = importlib.import_module(spec.module)
    return spec.build(module, size or spec.input_size)


def count_flops(net: nn.Module, inputs: dict[str, torch.Tensor]) -> int:
    """Total FLOPs (2 per multiply-add) of one eval-mode forward (``protocol.call_net`` on the example
    batch ``inputs``), by ``FlopCounterMode``."""
    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        call_net(net, inputs)
    return int(counter.get_total_flops())


def profile_spec(spec: NetSpec, size: int | None = None) -> dict[str, Any]:
    """One result row: params, trainable params, MACs/FLOPs, the paper's figures, or why skipped."""
    row: dict[str, Any] = {"name": spec.name, "paper": spec.paper, "input_size": size or spec.input_size,
                           "paper_params_m": spec.paper_params_m, "paper_gflops": spec.paper_gflops,
                           "note": spec.note}
    try:
        net, inputs = build_net(spec, size)
    except ModuleNotFoundError as err:
        if err.name and spec.module.startswith(err.name):
            row.update(status="skipped", reason=f"{spec.module} does not exist yet")
            return row
        raise
    flops = count_flops(net, inputs)
    row.update(
        status="ok",
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
    header = (f"{'net':<20} {'input':>7} {'params (M)':>11} {'GMACs':>8} {'GFLOPs':>8} "
              f"{'paper params':>13} {'paper GFLOPs':>13}  note")
    lines = [header, "-" * len(header)]
    for r in rows:
        paper = f"{_fmt(r['paper_params_m'], 1)}M" if r["paper_params_m"] is not None else "-"
        if r["status"] != "ok":
            lines.append(f"{r['name']:<20} {r['input_size']:>7} {'skipped: ' + r['reason']}")
            continue
        lines.append(
            f"{r['name']:<20} {r['input_size']:>7} {r['params'] / 1e6:>11.2f} {r['gmacs']:>8.2f} {r['gflops']:>8.2f} "
            f"{paper:>13} {_fmt(r['paper_gflops']):>13}  {r['note']}"
        )
    lines.append("")
    lines.append("FLOPs = 2 x MACs (torch FlopCounterMode: matmul/conv/attention only; batch 1, eval, "
                 "pretrained=False). Papers often call MACs 'FLOPs': compare with both columns.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``profile [--json] [--only NAME ...] [--size N]``: print the table (or JSON rows)."""
    parser = argparse.ArgumentParser(prog="python -m dermfuse_models.runner profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print a JSON list of rows instead of a table")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help=f"profile only this net or paper (repeatable): {', '.join(s.name for s in NETS)}")
    parser.add_argument("--size", type=int, default=None,
                        help="input side for every net instead of its paper size (e.g. 64 for a quick run)")
    args = parser.parse_args(argv)
    try:
        specs = select(args.only)
    except ValueError as err:
        parser.error(str(err))
    rows = [profile_spec(spec, args.size) for spec in specs]
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
