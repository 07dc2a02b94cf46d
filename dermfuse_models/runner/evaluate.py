"""``python -m dermfuse_models.runner eval --ckpt PATH [--split test] [--dataset NAME --data_root DIR] [--tta flip]``.

Scores a trained checkpoint without touching its run: everything goes into a NEW folder
``<run>/eval/<time>-<dataset>-<split>[-tta-<mode>]/`` (``--out`` to choose another):

* ``metrics.json``: what was scored (checkpoint, data, split, TTA, class map, samples left out and
  why, metadata the model could not use) and the task's metrics, keyed ``<split>/<metric>``;
* ``predictions.csv``: one row per sample (class probabilities, label and prediction; per-image
  scores for segmentation);
* the task's figures (confusion matrix + ROC and ``test_confusion_matrix.json``, or segmentation samples).

``--dataset``/``--data_root`` name another dataset (or another copy): external validation through a
class map, images of the training dataset left out (:mod:`~dermfuse_models.runner.eval_data`).
``--set data.test_meta_missing_fraction=0.5`` changes a test-time setting of the run's data.
``--devices N`` runs DDP; every sample is scored exactly once (:mod:`~dermfuse_models.runner.inference`).
``make eval-<paper> [CKPT=...] [SPLIT=...] [DATASET=... DATA_ROOT=...] [TTA=flip]`` calls it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from dermfuse_data.errors import DatasetError
from dermfuse_models.runner.cli import _is_ddp_child, _launcher_job_id
from dermfuse_models.runner.eval_data import (
    OVERLAP_CHOICES,
    SPLIT_CHOICES,
    EvalSet,
    is_other_data,
    other_dataset,
    own_split,
)
from dermfuse_models.runner.eval_report import (
    classification_scores,
    segmentation_scores_of,
    write_classification_files,
    write_segmentation_predictions,
)
from dermfuse_models.runner.gather import stacked
from dermfuse_models.runner.inference import is_segmentation, predict_samples
from dermfuse_models.runner.runs import create_run_dir, run_config, run_metrics
from dermfuse_models.runner.summary import print_summary, write_summary
from dermfuse_models.runner.tta import TTA_VIEWS, check_mode

#: every rank of a DDP evaluation writes into the folder rank 0 chose
EVAL_DIR_ENV = "DERMFUSE_EVAL_DIR"
SEGMENTATION_FIGURE_SAMPLES = 6


def eval_folder(run_dir: Path, name: str, out: str | Path | None = None, kind: str = "eval") -> Path:
    """A new folder (``<run>/<kind>/<time>-<name>`` unless ``out``, which must be new or empty), shared by DDP ranks."""
    if _is_ddp_child() and os.environ.get(EVAL_DIR_ENV):
        return Path(os.environ[EVAL_DIR_ENV])
    if out is not None:
        folder = Path(out).expanduser().resolve()
        if folder.exists() and any(folder.iterdir()):
            raise FileExistsError(f"--out {folder} is not empty; results never overwrite: choose a new folder")
    elif _launcher_job_id():
        folder = run_dir / kind / f"job{_launcher_job_id()}-{name}"
    else:
        folder = create_run_dir(run_dir / kind / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}")  # atomic, never shared
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[EVAL_DIR_ENV] = str(folder)
    return folder


def _data(run, dataset, data_root, split, options, class_map, overlap, experiment) -> EvalSet:
    dm = run.datamodule
    if is_other_data(dm, dataset, data_root):
        return other_dataset(
            dm, dataset or dm.hparams.dataset, data_root, split or "all", options, class_map, overlap, experiment
        )
    if class_map is not None or options:
        raise ValueError("--class_map and --option are for another dataset (--dataset/--data_root)")
    return own_split(dm, split or "test")


def _segmentation_figure(task, evalset: EvalSet, tta: str, folder: Path) -> None:
    """The first samples as image | true mask | prediction (rank 0, on the CPU)."""
    import torch
    from torch.utils.data import DataLoader, Subset

    from dermfuse_data.transforms import denormalise
    from dermfuse_models.runner.figures import write_segmentation_figure
    from dermfuse_models.runner.tta import tta_probabilities

    n = min(SEGMENTATION_FIGURE_SAMPLES, len(evalset.dataset))
    batch = next(iter(DataLoader(Subset(evalset.dataset, list(range(n))), batch_size=n)))
    task = task.cpu().eval()
    with torch.no_grad():
        prob = tta_probabilities(task, batch, tta, size=tuple(batch["mask"].shape[-2:]))
    rows = [
        (
            denormalise(batch["image"][i]),
            batch["mask"][i, 0].numpy(),
            (prob[i, 0] >= task.threshold).numpy(),
            str(batch["sample_id"][i]),
        )
        for i in range(n)
    ]
    write_segmentation_figure(rows, folder / "figures" / "segmentation_samples.png")


def _scores_and_files(task, evalset: EvalSet, records: list, folder: Path, tta: str) -> dict[str, float]:
    """The metrics of ``records`` and the predictions CSV + figures in ``folder``."""
    rows = evalset.rows
    columns = {"sample_id": rows.column("sample_id").to_pylist(), "group_id": rows.column("group_id").to_pylist()}
    prefix = evalset.split
    if is_segmentation(task):
        stats = stacked(records, "stats")
        write_segmentation_predictions(folder, stats, columns)
        _segmentation_figure(task, evalset, tta, folder)
        return segmentation_scores_of(stats, prefix)
    probs, mass = evalset.class_map.probabilities(stacked(records, "probs"))
    if evalset.external:
        columns.update(dataset_label=rows.column("dataset_label").to_pylist(), mapped_mass=[float(m) for m in mass])
    names = list(evalset.class_map.names)
    write_classification_files(folder, probs, evalset.labels, names, columns)
    return classification_scores(probs, evalset.labels, names, prefix)


def evaluate_checkpoint(
    ckpt: str | Path,
    split: str | None = None,
    dataset: str | None = None,
    data_root: str | None = None,
    options: dict | None = None,
    class_map: str | Path | None = None,
    tta: str = "none",
    overlap: str = "exclude",
    accelerator: str = "auto",
    devices: int | str = 1,
    batch_size: int | None = None,
    num_workers: int | None = None,
    out: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    progress: bool = True,
) -> Path | None:
    """Python API of the command (module doc); returns the evaluation folder (``None`` on DDP ranks > 0)."""
    from dermfuse_models.runner.rebuild import rebuild

    check_mode(tta)
    run = rebuild(ckpt, overrides)
    experiment = (run_metrics(run.run_dir) or {}).get("experiment")
    evalset = _data(run, dataset, data_root, split, options, class_map, overlap, experiment)
    if not _is_ddp_child():
        for line in evalset.notes:
            print(line, file=sys.stderr)
    target = evalset.datamodule.hparams
    name = f"{target.dataset}-{evalset.split}" + ("" if tta == "none" else f"-tta-{tta}")
    folder = eval_folder(run.run_dir, name, out)
    hp = run.datamodule.hparams
    records, trainer = predict_samples(
        run.model,
        evalset.dataset,
        evalset.dataset.sample_ids,
        tta=tta,
        accelerator=accelerator,
        devices=devices,
        precision=(run_config(run.run_dir).get("trainer") or {}).get("precision"),
        batch_size=batch_size or hp.batch_size,
        num_workers=hp.num_workers if num_workers is None else num_workers,
        progress=progress,
    )
    if not trainer.is_global_zero:
        return None
    metrics = _scores_and_files(run.model, evalset, records, folder, tta)
    record = {
        "kind": "evaluation",
        "run_dir": str(run.run_dir),
        "checkpoint": str(run.checkpoint),
        "experiment": experiment,
        "trained_on": {"dataset": hp.dataset, "root": hp.root, "synthetic": bool(run.datamodule.is_synthetic)},
        "dataset": target.dataset,
        "root": target.root,
        "source_options": dict(target.source_options or {}),
        "synthetic": bool(evalset.datamodule.is_synthetic),
        "external": evalset.external,
        "split": evalset.split,
        "tta": tta,
        "class_map": str(evalset.class_map.path) if evalset.class_map.path else None,
        "classes": list(evalset.class_map.names),
        "samples": len(records),
        "excluded": evalset.excluded,
        "metadata": evalset.metadata.as_dict() if evalset.metadata else None,
        "overrides": list(overrides),
        "devices": trainer.world_size,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "metrics": metrics,
    }
    write_summary(folder, record)
    shown = {"run_dir": str(folder), "synthetic": record["synthetic"], "metrics": metrics}
    print_summary(shown, key="metrics", folder="evaluation folder")
    return folder


def checkpoint_parser(command: str, doc: str) -> argparse.ArgumentParser:
    """A parser for ``command`` (its description: ``doc``'s second paragraph) with ``--ckpt`` or ``--experiment``."""
    parser = argparse.ArgumentParser(
        prog=f"python -m dermfuse_models.runner {command}",
        description=doc.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--ckpt", help="checkpoint inside a run folder (<run>/checkpoints/*.ckpt)")
    which.add_argument("--experiment", help="the best checkpoint of this experiment's latest finished run, e.g. vitatt")
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The ``eval`` command's arguments."""
    parser = checkpoint_parser("eval", __doc__)
    parser.add_argument(
        "--split", choices=SPLIT_CHOICES, default=None, help="default: test of the run's data, all of another dataset"
    )
    parser.add_argument("--dataset", default=None, help="another dataset to score on (external validation)")
    parser.add_argument("--data_root", "--data-root", default=None, help="its folder (default: its miniature)")
    parser.add_argument(
        "--option", action="append", default=[], metavar="NAME=VALUE", help="source option of that dataset"
    )
    parser.add_argument("--class_map", "--class-map", default=None, help="class map YAML (default: the shipped one)")
    parser.add_argument("--overlap", choices=OVERLAP_CHOICES, default="exclude", help="images of the training dataset")
    parser.add_argument("--tta", choices=list(TTA_VIEWS), default="none", help="test-time augmentation")
    parser.add_argument("--accelerator", default="auto", help="cpu, gpu, auto (default)")
    parser.add_argument("--devices", default="1", help="devices (N > 1: DDP, each sample scored once)")
    parser.add_argument("--batch-size", "--batch_size", type=int, default=None, help="default: the run's")
    parser.add_argument("--num-workers", "--num_workers", type=int, default=None, help="default: the run's")
    parser.add_argument("--out", default=None, help="output folder (new or empty; default <run>/eval/<time>-...)")
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="e.g. data.test_meta_missing_fraction=0.5",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; user-fixable problems print one message (no traceback) and return 2."""
    from dermfuse_models.runner.explain import latest_checkpoint

    args = build_parser().parse_args(argv)
    devices = int(args.devices) if str(args.devices).isdigit() else args.devices
    try:
        ckpt = args.ckpt or latest_checkpoint(args.experiment)
        evaluate_checkpoint(
            ckpt,
            split=args.split,
            dataset=args.dataset,
            data_root=args.data_root,
            options=dict(o.split("=", 1) if "=" in o else (o, "true") for o in args.option),
            class_map=args.class_map,
            tta=args.tta,
            overlap=args.overlap,
            accelerator=args.accelerator,
            devices=devices,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            out=args.out,
            overrides=args.overrides,
            progress=not args.quiet,
        )
    except (FileNotFoundError, FileExistsError, ValueError, DatasetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
