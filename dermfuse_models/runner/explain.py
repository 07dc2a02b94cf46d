"""``python -m dermfuse_models.runner explain (--ckpt PATH | --experiment NAME) [--n 16] [--methods ...] [--out DIR]``.

Rebuilds the run of a checkpoint (``--experiment vitatt``: the best checkpoint of that experiment's
latest finished run under ``runs/``) (:func:`dermfuse_models.runner.rebuild.rebuild`), explains ``n`` images
of a split with every method that fits the net (or ``--methods``), and writes figures, scores and
feature attributions into ``<run>/explain/`` (see :mod:`dermfuse_xai.report`). ``make
explain-<paper> [CKPT=path] [N=16]`` calls it.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

import numpy as np
import torch

from dermfuse_xai import ExplainSettings, explain_batches, method_names, write_report


def build_parser() -> argparse.ArgumentParser:
    """The ``explain`` command's argument parser."""
    parser = argparse.ArgumentParser(prog="python -m dermfuse_xai", description=__doc__.split("\n\n")[1])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("explain", help="explain a trained checkpoint's predictions")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--ckpt", help="checkpoint inside a run folder (<run>/checkpoints/*.ckpt)")
    which.add_argument(
        "--experiment",
        help="explain the best checkpoint of this experiment's latest finished run "
        "(runs/<experiment>/, $DERMFUSE_RUNS to move it), e.g. vitatt",
    )
    p.add_argument("--n", type=int, default=16, help="images to explain (default 16)")
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help=f"methods (space or comma separated) from: {', '.join(method_names())}; default: all that fit",
    )
    p.add_argument("--out", default=None, help="output folder (default <run>/explain)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="split to explain (default test)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--batch-size", type=int, default=None, help="images per batch (default: the run's, at most --n)")
    p.add_argument(
        "--target", default="pred", choices=("pred", "label"), help="explain the predicted class or the label"
    )
    p.add_argument(
        "--n-samples",
        type=int,
        default=None,
        help="samples per image for SHAP/LIME (default 200 on a GPU, 64 on the CPU)",
    )
    p.add_argument("--deletion-steps", type=int, default=20, help="points on each deletion curve minus one")
    p.add_argument("--deletion-fill", default="mean", help="mean | blur | a number: what replaces deleted pixels")
    p.add_argument("--feature-output", default="probability", choices=("probability", "logit"))
    p.add_argument("--no-randomization", action="store_true", help="skip the model-randomisation test")
    p.add_argument(
        "--use-masks",
        default="auto",
        choices=("auto", "true", "false"),
        help="serve lesion masks (auto: when the dataset has them)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--set",
        dest="overrides",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="LightningCLI overrides for rebuilding the run, e.g. data.root=/data/PAD-UFES-20",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _device(name: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; a CUDA device that is not there is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"--device {name!r} is not a torch device ({err}); use cpu, cuda or cuda:<index>.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} requested but torch sees no CUDA device; use --device cpu.")
    return device


def explain_checkpoint(
    ckpt: str | Path,
    n: int = 16,
    methods: list[str] | None = None,
    out: str | Path | None = None,
    split: str = "test",
    device: str = "auto",
    batch_size: int | None = None,
    settings: ExplainSettings | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    use_masks: bool | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Python API of the command: rebuild the run, explain ``n`` images of ``split``, write the report.

    Images are ``n`` evenly spaced samples of the split (deterministic, spread over the split's
    order), with evaluation transforms. Returns the written paths (see :func:`write_report`).
    """
    from torch.utils.data import DataLoader, Subset

    from dermfuse_data.transforms import build_transform, denormalise
    from dermfuse_models.figure_style import FigureContext
    from dermfuse_models.runner.rebuild import rebuild

    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}.")
    run = rebuild(ckpt, overrides, use_masks="auto" if use_masks is None else use_masks)
    dm = run.datamodule
    dataset = dm.dataset(split)
    dataset.transform = build_transform(False, "none")
    if len(dataset) == 0:
        raise ValueError(f"split {split!r} of {dm.hparams.dataset} is empty; choose another --split.")
    index = np.unique(np.linspace(0, len(dataset) - 1, min(n, len(dataset))).round().astype(int))
    bs = batch_size or min(int(dm.hparams.batch_size), len(index))
    loader = DataLoader(Subset(dataset, index.tolist()), batch_size=bs, shuffle=False, num_workers=0)
    meta_groups = dm.meta_groups if dm.features else None
    report = explain_batches(
        run.model,
        loader,
        n=len(index),
        methods=methods,
        class_names=dm.class_names,
        meta_groups=meta_groups,
        meta_names=dm.meta_names if dm.features else None,
        device=_device(device),
        settings=settings,
        progress=progress,
    )
    out_dir = Path(out) if out else run.run_dir / "explain"
    extra = {
        "checkpoint": str(run.checkpoint),
        "run_dir": str(run.run_dir),
        "config": str(run.config_path),
        "dataset": dm.hparams.dataset,
        "synthetic": bool(dm.is_synthetic),
        "split": split,
        "n_images": len(index),
    }
    context = FigureContext(
        dataset=dm.hparams.dataset,
        split=split,
        run=f"{run.run_dir.parent.name}/{run.run_dir.name}",
        checkpoint=Path(run.checkpoint).name,
        synthetic=bool(dm.is_synthetic),
    )
    written = write_report(report, out_dir, extra, to_rgb=denormalise, caption=context.caption(width=64))
    for map_name, count in report.empty_counts().items():
        print(
            f"note: {count} {map_name} maps are all zero (drawn as 'all zero'); why, per image: "
            f"'empty_maps' in {written['json']}",
            file=sys.stderr,
        )
    return written


def latest_checkpoint(experiment: str) -> Path:
    """Best checkpoint of the latest finished run of ``experiment`` (real or synthetic data)."""
    from dermfuse_models.runner.runs import best_checkpoint, latest_finished_run, runs_root

    known = sorted({p.name for p in runs_root().glob("*") if p.is_dir()} | set(known_experiments()))
    if experiment not in known:
        close = difflib.get_close_matches(experiment, known, n=1)
        guess = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown experiment {experiment!r}{guess} (known: {', '.join(known)})")
    run = latest_finished_run(experiment)
    if run is None:
        raise FileNotFoundError(
            f"no finished run of {experiment!r} under {runs_root() / experiment} "
            f"(a run folder with metrics.json): train one first (make train-{experiment}) "
            "or pass CKPT=<checkpoint>."
        )
    return best_checkpoint(run)


def known_experiments() -> list[str]:
    """The papers of ``experiments/`` (folders with a ``config.yaml``) and extra configs (``dualnet_segmenter``)."""
    from dermfuse_models.runner.cli import DEFAULTS, experiment_name

    return sorted(
        experiment_name([p])
        for p in DEFAULTS.parent.glob("*/*.yaml")
        if (p.parent / "config.yaml").is_file()
        and p.stem not in ("smoke", "sweep", "reported")
        and not p.stem.endswith("_smoke")
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point; user-fixable problems print one message (no traceback) and return 2."""
    args = build_parser().parse_args(argv)
    methods = None
    if args.methods:
        methods = [m.strip() for item in args.methods for m in item.split(",") if m.strip()]
    fill: str | float = args.deletion_fill
    if fill not in ("mean", "blur"):
        try:
            fill = float(fill)
        except ValueError:
            print(f"error: --deletion-fill must be mean, blur or a number, got {fill!r}", file=sys.stderr)
            return 2
    try:
        on_gpu = _device(args.device).type == "cuda"
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    settings = ExplainSettings(
        target=args.target,
        deletion_steps=args.deletion_steps,
        deletion_fill=fill,
        n_samples=args.n_samples or (200 if on_gpu else 64),
        feature_output=args.feature_output,
        randomization=not args.no_randomization,
        seed=args.seed,
        perturbation_batch=256 if on_gpu else 64,
    )
    use_masks = None if args.use_masks == "auto" else args.use_masks == "true"
    try:
        ckpt = args.ckpt or latest_checkpoint(args.experiment)
        written = explain_checkpoint(
            ckpt,
            n=args.n,
            methods=methods,
            out=args.out,
            split=args.split,
            device=args.device,
            batch_size=args.batch_size,
            settings=settings,
            overrides=args.overrides,
            use_masks=use_masks,
            progress=not args.quiet,
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from dermfuse_models.runner.terminal import aligned

    folder = written["json"].parent
    print(f"explanations written to {folder}")
    print(aligned((kind, path.name) for kind, path in written.items()))
    return 0
