"""A run's config checked against its data before anything is built: one line naming the key and the fix.

:func:`check_config` runs before the model, the loggers or the run folder exist (it only needs the
parsed config and the dataset's source description); :func:`check_batch_size` needs the split sizes
and runs once the data table is read, before the first step. Each problem is a
:class:`~dermfuse_models.runner.run_errors.ConfigError` (the command line prints it, exit 2):

* ``data.image_size`` below 1 or above :data:`MAX_IMAGE_SIZE`;
* ``model.init_args.num_classes`` / ``model.init_args.net.init_args.num_classes`` given explicitly (in a
  config file or on the command line) but not the dataset's number of classes, and a net ``img_size``
  given explicitly but not ``data.image_size``: the CLI links both from the data and would silently
  replace them;
* clinical metadata asked for (``data.meta_features`` not null) of a dataset that has none a model may use;
* a ``data.batch_size`` larger than the training split (per process), which ``drop_last`` would train on
  nothing or on one short batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from dermfuse_models.runner.run_errors import ConfigError

#: the largest square side a run may ask for (a 4096 px RGB batch of 32 is already ~6 GB)
MAX_IMAGE_SIZE = 4096
NUM_CLASSES_KEYS = ("model.init_args.num_classes", "model.init_args.net.init_args.num_classes")
IMG_SIZE_KEY = "model.init_args.net.init_args.img_size"
CONFIG_FLAGS = ("--config", "-c")


def _short(key: str) -> str:
    """``model.init_args.net.init_args.img_size`` -> ``model.net.img_size`` (jsonargparse accepts both)."""
    return ".".join(part for part in key.split(".") if part != "init_args")


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def explicit_values(args: Sequence[str], keys: Sequence[str]) -> dict[str, tuple[Any, str]]:
    """The value each of ``keys`` was given explicitly in ``args`` (its config files in order, then
    ``--key=value`` / ``--key value``; the last one wins), with where: ``{key: (value, source)}``."""
    wanted = {_short(k): k for k in keys}
    found: dict[str, tuple[Any, str]] = {}
    args = list(args)
    i = 0
    while i < len(args):
        arg = str(args[i])
        name, eq, value = arg.partition("=")
        if not eq and i + 1 < len(args) and (name in CONFIG_FLAGS or _short(name.lstrip("-")) in wanted):
            value, i = str(args[i + 1]), i + 1
        if name in CONFIG_FLAGS and Path(value).is_file():
            tree = yaml.safe_load(Path(value).read_text()) or {}
            for key, val in _flatten(tree).items():
                if _short(key) in wanted:
                    found[wanted[_short(key)]] = (val, value)
        elif name.startswith("--") and _short(name[2:]) in wanted:
            found[wanted[_short(name[2:])]] = (yaml.safe_load(value), "the command line")
        i += 1
    return found


def _image_side(value: Any) -> set[int] | None:
    if isinstance(value, int):
        return {value}
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
        return set(value)
    return None


def check_config(cfg, args: Sequence[str], source) -> None:
    """The checks of the module doc that need no data table; ``source`` is the dataset's ``DatasetSource``."""
    data = cfg.data
    size = data.get("image_size")
    if not isinstance(size, int) or not 1 <= size <= MAX_IMAGE_SIZE:
        raise ConfigError(
            f"data.image_size={size}: must be a whole number of pixels between 1 and {MAX_IMAGE_SIZE} "
            "(the side every image is resized to, e.g. 224)."
        )
    explicit = explicit_values(args, [*NUM_CLASSES_KEYS, IMG_SIZE_KEY])
    value, where = explicit.get(IMG_SIZE_KEY, (None, ""))
    if value is not None and _image_side(value) != {size}:
        raise ConfigError(
            f"{IMG_SIZE_KEY}={value} (from {where}) but data.image_size={size}: the CLI sets the net's img_size "
            f"from data.image_size. Remove {IMG_SIZE_KEY} and set --data.image_size instead."
        )
    if source.declare is not None:
        return  # classes and features declared by the data itself (the csv source): the DataModule checks them
    classes = len(source.classes_with(data.get("source_options")))
    for key in NUM_CLASSES_KEYS:
        value, where = explicit.get(key, (None, ""))
        if value is not None and value != classes:
            raise ConfigError(
                f"{key}={value} (from {where}) but {source.name} has {classes} classes: the CLI sets it from "
                f"the data (data.num_classes). Remove {key}, or choose a dataset with {value} classes."
            )
    meta = data.get("meta_features")
    if meta not in (None, "", []):
        usable = [f for f in source.features if data.get("allow_leaky_metadata") or not f.leaks_label]
        if not usable:
            what = "no clinical metadata" if not source.features else "only label-leaking metadata"
            raise ConfigError(
                f"data.meta_features={meta!r} but {source.name} has {what}: set --data.meta_features=null "
                "(and model.init_args.net.init_args.use_metadata=false where the net has it)."
            )


def check_batch_size(batch_size: int, train_size: int, dataset: str, processes: int = 1) -> None:
    """Refuse a ``data.batch_size`` larger than the training split each of ``processes`` sees."""
    per_process = math.ceil(train_size / max(processes, 1))
    if batch_size > per_process:
        share = f", {per_process} per process over {processes} processes" if processes > 1 else ""
        raise ConfigError(
            f"data.batch_size={batch_size} is larger than the train split of {dataset} ({train_size} "
            f"samples{share}): every epoch would be one short batch. Set --data.batch_size={per_process} or less."
        )


def processes_of(trainer_cfg) -> int:
    """How many training processes a trainer config asks for (``devices`` x ``num_nodes``; 1 if ``auto``)."""
    devices = trainer_cfg.get("devices")
    if isinstance(devices, (list, tuple)):
        count = len(devices)
    elif isinstance(devices, int) or (isinstance(devices, str) and devices.isdigit()):
        count = max(int(devices), 1)
    else:
        count = 1
    return count * max(int(trainer_cfg.get("num_nodes") or 1), 1)
