"""What an evaluation scores: a split of the run's own data, or another dataset through a class map.

:func:`own_split` serves a split of the run's DataModule as it was trained (metadata encoder from the
checkpoint, ``data.test_meta_missing_fraction`` on the test split). :func:`other_dataset` serves
another dataset (or another copy of the same one) at the run's image size and preprocessing:

* images whose id is also in the training dataset are left out and counted (``overlap="exclude"``) or
  the evaluation is refused (``"refuse"``); ids compare without ISIC's ``_downsampled`` suffix. HAM10000
  is entirely inside ISIC 2019 (ISIC 2019 flags it: ``meta_in_ham10000``), ISIC 2017 and ISIC 2018
  Task 1 images are ISIC archive images too;
* classes go through a :class:`~dermfuse_models.runner.class_maps.ClassMap` (only mapped classes
  are scored; the others are left out and counted);
* metadata is encoded with the run's fitted encoder, every gap as missing and reported
  (:func:`dermfuse_data.foreign_metadata.encode_like_training`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from dermfuse_data.datamodule import DermDataModule, SampleDataset, blank_features
from dermfuse_data.foreign_metadata import MetadataReport, encode_like_training
from dermfuse_data.schema import META_PREFIX
from dermfuse_data.transforms import build_transform
from dermfuse_models.runner.class_maps import ClassMap, available_class_maps, class_map_paths, load_class_map

OVERLAP_CHOICES = ("exclude", "refuse")
SPLIT_CHOICES = ("train", "val", "test", "all")
ID_SUFFIXES = ("_downsampled",)


@dataclass
class EvalSet:
    """The samples an evaluation scores.

    ``rows``: their table rows (``sample_id``, ``group_id``, ``label_name`` of the evaluated dataset ...);
    ``labels``: the evaluation class of each row (``class_map.labels``); ``excluded``: what was left
    out and why; ``notes``: lines to print.
    """

    datamodule: DermDataModule
    dataset: SampleDataset
    rows: pa.Table
    labels: np.ndarray
    class_map: ClassMap
    external: bool
    split: str
    excluded: dict = field(default_factory=dict)
    metadata: MetadataReport | None = None
    notes: list[str] = field(default_factory=list)


def plain_id(sample_id: str) -> str:
    """``ISIC_0000001_downsampled`` -> ``ISIC_0000001``: the id the image is known by across releases."""
    for suffix in ID_SUFFIXES:
        sample_id = sample_id.removesuffix(suffix)
    return sample_id


def in_training_dataset(rows: pa.Table, training: pa.Table) -> np.ndarray:
    """Boolean mask of ``rows`` whose id (:func:`plain_id`) is also in ``training``."""
    seen = {plain_id(s) for s in training.column("sample_id").to_pylist()}
    return np.asarray([plain_id(s) in seen for s in rows.column("sample_id").to_pylist()], dtype=bool)


def own_split(datamodule: DermDataModule, split: str) -> EvalSet:
    """A split of the run's own data, with evaluation transforms (``split`` of train/val/test)."""
    if split not in ("train", "val", "test"):
        raise ValueError(
            f"split {split!r} of the run's own data: choose train, val or test ('all' would score training images)"
        )
    dataset = datamodule.dataset(split)
    dataset.transform = build_transform(False, "none")
    rows = datamodule.split_table(split)
    class_map = ClassMap.identity(datamodule.class_names)
    return EvalSet(datamodule, dataset, rows, np.asarray(rows.column("label").to_pylist()), class_map, False, split)


def choose_class_map(
    path: str | Path | None,
    experiment: str | None,
    trained_on: str,
    trained_classes: list[str],
    evaluated_on: str,
    evaluated_classes: list[str],
) -> ClassMap:
    """The class map from ``path``, else the shipped one for the dataset pair, else identity if the classes agree."""
    if path is None:
        found = class_map_paths(trained_on, evaluated_on, experiment)
        if found:
            path = found[0]
        elif list(trained_classes) == list(evaluated_classes):
            return ClassMap.identity(trained_classes)
        else:
            shipped = available_class_maps(trained_on)
            raise ValueError(
                f"a model trained on {trained_on} (classes {trained_classes}) scored on {evaluated_on} (classes "
                f"{evaluated_classes}) needs a class map: --class_map <yaml> (format: "
                f"dermfuse_models/runner/class_maps.py); shipped from {trained_on}: {shipped or 'none'}"
            )
    return load_class_map(path, trained_on, trained_classes, evaluated_on, evaluated_classes)


def _renamed_columns(rows: pa.Table, columns: dict) -> pa.Table:
    """Rows with the evaluation dataset's column ``columns[c]`` renamed to the training name ``c``."""
    renames = {META_PREFIX + str(evaluated): META_PREFIX + str(trained) for trained, evaluated in columns.items()}
    renames = {old: new for old, new in renames.items() if new not in rows.column_names}
    return rows.rename_columns([renames.get(c, c) for c in rows.column_names])


def other_dataset(
    run_datamodule: DermDataModule,
    dataset: str,
    root: str | None,
    split: str = "all",
    options: dict | None = None,
    class_map: str | Path | None = None,
    overlap: str = "exclude",
    experiment: str | None = None,
) -> EvalSet:
    """Another dataset (or another copy of the run's) prepared as the run was (see module doc)."""
    if overlap not in OVERLAP_CHOICES:
        raise ValueError(f"overlap={overlap!r}: choose one of {OVERLAP_CHOICES}")
    if split not in SPLIT_CHOICES:
        raise ValueError(f"split={split!r}: choose one of {SPLIT_CHOICES}")
    hp = run_datamodule.hparams
    if hp.predicted_masks is not None:
        raise ValueError(
            "this run classifies images with masks predicted by a stage-1 segmenter (two-stage); it can be "
            "evaluated on its own dataset only (predicting masks for another dataset is not part of eval)"
        )
    task = hp.task
    probe = DermDataModule(dataset, root=root, meta_features=None, cache_dir=str(run_datamodule.cache_dir))
    segmentation = task == "segmentation"
    if segmentation and not probe.source.has_masks:
        raise ValueError(f"a segmentation model is scored against masks, and {dataset} has none")
    cmap = (
        ClassMap.identity(["lesion"])
        if segmentation
        else choose_class_map(class_map, experiment, hp.dataset, run_datamodule.class_names, dataset, probe.class_names)
    )
    target = DermDataModule(
        dataset,
        root=root,
        task=task,
        image_size=hp.image_size,
        meta_features=None,
        use_masks=bool(hp.use_masks and probe.source.has_masks) and not segmentation,
        batch_size=hp.batch_size,
        num_workers=hp.num_workers,
        seed=hp.seed,
        val_fraction=hp.val_fraction,
        test_fraction=hp.test_fraction,
        use_official_split=hp.use_official_split,
        cache_dir=str(run_datamodule.cache_dir),
        synthetic_seed=hp.synthetic_seed,
        source_options={**cmap.evaluated_options, **(options or {})} or None,
    )
    rows = target.table if split == "all" else target.split_table(split)
    notes, excluded = [], {}
    shared = in_training_dataset(rows, run_datamodule.table)
    if shared.any():
        what = f"{int(shared.sum())} of {len(rows)} {dataset} images are also in the training dataset {hp.dataset}"
        hint = cmap.overlap_note or "they are left out: the model may have trained on them"
        if overlap == "refuse":
            raise ValueError(f"{what}; evaluation refused (--overlap=refuse). {hint}")
        notes.append(f"{what}: left out. {hint}")
        excluded["in_training_dataset"] = int(shared.sum())
        rows = rows.filter(pa.array(~shared))
    labels = cmap.labels(np.asarray(rows.column("label").to_pylist()))
    if (labels < 0).any():
        unmapped = Counter(n for n, lab in zip(rows.column("label_name").to_pylist(), labels) if lab < 0)
        excluded["unmapped_class"] = dict(unmapped)
        notes.append(
            f"left out {int((labels < 0).sum())} images of classes the class map does not score: {dict(unmapped)}"
        )
        rows, labels = rows.filter(pa.array(labels >= 0)), labels[labels >= 0]
    if len(rows) == 0:
        raise ValueError(f"nothing left to evaluate on {dataset} ({split}): {excluded}")
    meta, report = None, None
    if run_datamodule.features:
        meta, report = encode_like_training(run_datamodule.encoder, _renamed_columns(rows, cmap.metadata_columns))
        notes += report.lines()
        if hp.test_meta_missing_fraction > 0:
            meta = blank_features(meta, run_datamodule.encoder.group_widths, hp.test_meta_missing_fraction, hp.seed)
    rows = rows.set_column(rows.column_names.index("label"), "label", pa.array(labels, pa.int64()))
    dataset_ = target.samples(rows, meta)
    rows = rows.set_column(
        rows.column_names.index("label_name"), "dataset_label", rows.column("label_name")
    ).append_column("label_name", pa.array([cmap.names[i] for i in labels], pa.string()))
    return EvalSet(target, dataset_, rows, labels, cmap, True, split, excluded, report, notes)


def is_other_data(run_datamodule: DermDataModule, dataset: str | None, root: str | None) -> bool:
    """Whether ``dataset``/``root`` name data other than the run's own (another dataset or copy)."""
    hp = run_datamodule.hparams
    if dataset not in (None, hp.dataset):
        return True
    own = None if hp.root is None else str(Path(hp.root).expanduser().resolve())
    return root is not None and str(Path(root).expanduser().resolve()) != own
