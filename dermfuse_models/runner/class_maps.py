"""Class maps: how a classifier trained on one dataset is scored on another (external validation).

A class map is a YAML file in the experiment folder, ``experiments/<paper>/class_maps/<trained>_to_<evaluated>.yaml``::

    trained_on: isic2019                 # the dataset the checkpoint was trained on
    evaluated_on: ph2                    # the dataset it is scored on
    classes:                             # the evaluation classes, in order
      melanoma: {trained: [MEL], evaluated: [Melanoma]}
      nevus: {trained: [NV], evaluated: [Common Nevus, Atypical Nevus]}
    evaluated_options: {}                # optional: source options of the evaluation dataset
    metadata_columns: {age_approx: age}  # optional: training column -> evaluation dataset's column
    overlap_note: "..."                  # optional: printed when evaluation images are in the training dataset

Only the mapped classes are reported. The probability of an evaluation class is the sum of the
probabilities of its trained classes, renormalised over the mapped classes (the model's distribution
given that the image is one of them); ``mapped_mass`` (the share the model gave to mapped classes
before renormalising) is written per sample. Evaluation images whose class is in no ``evaluated``
list are left out and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

#: where the experiment folders are (class maps live in ``<paper>/class_maps/``)
EXPERIMENTS_DIR = Path(__file__).resolve().parents[2] / "experiments"
KEYS = ("trained_on", "evaluated_on", "classes", "evaluated_options", "metadata_columns", "overlap_note")


@dataclass(frozen=True)
class ClassMap:
    """A parsed class map: per evaluation class, the trained and the evaluation-dataset class indices."""

    names: tuple[str, ...]
    trained: tuple[tuple[int, ...], ...]
    evaluated: tuple[tuple[int, ...], ...]
    path: Path | None = None
    evaluated_options: dict = field(default_factory=dict)
    metadata_columns: dict = field(default_factory=dict)
    overlap_note: str = ""

    @classmethod
    def identity(cls, classes: Sequence[str]) -> ClassMap:
        """Every class to itself (the same dataset, or another copy of it)."""
        index = tuple((i,) for i in range(len(classes)))
        return cls(tuple(classes), index, index)

    def probabilities(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(N, trained K)`` probabilities -> ``(N, len(names))`` renormalised, and the mapped mass ``(N,)``."""
        summed = np.stack([probs[:, list(idx)].sum(axis=1) for idx in self.trained], axis=1)
        mass = summed.sum(axis=1)
        return summed / np.maximum(mass, 1e-12)[:, None], mass

    def labels(self, labels: np.ndarray) -> np.ndarray:
        """Evaluation-dataset labels -> evaluation class index, -1 where the class is not mapped."""
        lookup = {old: new for new, olds in enumerate(self.evaluated) for old in olds}
        return np.asarray([lookup.get(int(label), -1) for label in labels], dtype=np.int64)


def _indices(path: Path, where: str, names: object, classes: Sequence[str], dataset: str) -> tuple[int, ...]:
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not names:
        raise ValueError(f"{path}: {where} must list class names of {dataset}, got {names!r}")
    unknown = [n for n in names if n not in classes]
    if unknown:
        raise ValueError(f"{path}: {where} names {unknown}, not classes of {dataset} (its classes: {list(classes)})")
    return tuple(list(classes).index(n) for n in names)


def load_class_map(
    path: str | Path,
    trained_on: str,
    trained_classes: Sequence[str],
    evaluated_on: str,
    evaluated_classes: Sequence[str],
) -> ClassMap:
    """Parse and check ``path`` (module doc) for a model trained on ``trained_on``, scored on ``evaluated_on``.

    A wrong dataset, an unknown key or class name, or a class used by two evaluation classes is a
    ``ValueError`` naming the file and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class map {path} does not exist")
    spec = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(spec) - set(KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; the keys are {KEYS}")
    for key, dataset in (("trained_on", trained_on), ("evaluated_on", evaluated_on)):
        if spec.get(key) != dataset:
            raise ValueError(f"{path}: {key} is {spec.get(key)!r} but the evaluation has {key}={dataset!r}")
    classes = spec.get("classes")
    if not isinstance(classes, dict) or not classes:
        raise ValueError(f"{path}: 'classes' must map each evaluation class to {{trained: [...], evaluated: [...]}}")
    trained, evaluated = [], []
    for name, parts in classes.items():
        if not isinstance(parts, dict) or set(parts) != {"trained", "evaluated"}:
            raise ValueError(f"{path}: classes.{name} needs exactly 'trained' and 'evaluated' lists, got {parts!r}")
        trained.append(_indices(path, f"classes.{name}.trained", parts["trained"], trained_classes, trained_on))
        evaluated.append(
            _indices(path, f"classes.{name}.evaluated", parts["evaluated"], evaluated_classes, evaluated_on)
        )
    for what, groups, names in (("trained", trained, trained_classes), ("evaluated", evaluated, evaluated_classes)):
        flat = [i for g in groups for i in g]
        twice = sorted({names[i] for i in flat if flat.count(i) > 1})
        if twice:
            raise ValueError(f"{path}: {what} class(es) {twice} appear in two evaluation classes")
    return ClassMap(
        names=tuple(str(n) for n in classes),
        trained=tuple(trained),
        evaluated=tuple(evaluated),
        path=path,
        evaluated_options=dict(spec.get("evaluated_options") or {}),
        metadata_columns=dict(spec.get("metadata_columns") or {}),
        overlap_note=str(spec.get("overlap_note") or ""),
    )


def class_map_paths(trained_on: str, evaluated_on: str, experiment: str | None = None) -> list[Path]:
    """The shipped class maps ``<trained_on>_to_<evaluated_on>.yaml``: the experiment's first, then every paper's."""
    name = f"{trained_on}_to_{evaluated_on}.yaml"
    own = [EXPERIMENTS_DIR / experiment / "class_maps" / name] if experiment else []
    return [p for p in dict.fromkeys(own + sorted(EXPERIMENTS_DIR.glob(f"*/class_maps/{name}"))) if p.is_file()]


def available_class_maps(trained_on: str) -> list[str]:
    """Names of the shipped class maps from ``trained_on`` (for error messages)."""
    return sorted({p.stem for p in EXPERIMENTS_DIR.glob(f"*/class_maps/{trained_on}_to_*.yaml")})
