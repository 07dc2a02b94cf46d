"""Folder conventions shared by the ISIC challenge sources (ISIC 2017, ISIC 2018 Task 1).

The challenges ship each split as flat folders of ``ISIC_<7 digits>.jpg`` images and
``ISIC_<7 digits>_segmentation.png`` masks, next to licence/attribution text files. This module
indexes such folders without decoding anything and parses the ``splits`` read option, so that both
sources report a missing, doubled or misplaced file in the same words.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import SPLITS

#: the ``splits`` read option's help, shared by both ISIC sources
SPLITS_OPTION_HELP = ("comma-separated official splits to read, of train,val,test (default all "
                      "three); e.g. splits=train when only the training part is downloaded")


def shown(items: Sequence[str], k: int = 5) -> str:
    """The first ``k`` items joined by commas, with ``...`` when there are more."""
    return ", ".join(items[:k]) + (", ..." if len(items) > k else "")


def parse_splits(value: str | Iterable[str] | None, root: Path) -> tuple[str, ...]:
    """The ``splits`` option (``"train,val"`` or a list) as split names in train/val/test order.

    Raises :class:`DatasetError` naming the bad value; ``None`` means all three splits.
    """
    if value is None:
        return SPLITS
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [str(n).strip().lower() for n in names if str(n).strip()]
    unknown = [n for n in names if n not in SPLITS]
    if unknown or not names:
        raise DatasetError(f"option splits={value!r} names no split or unknown split(s) {unknown}",
                           path=root, hint=f"choose among {list(SPLITS)}, e.g. splits=train,val")
    return tuple(s for s in SPLITS if s in names)


def index_folder(folder: Path, suffix: str, skip: tuple[str, ...] = ()) -> dict[str, Path]:
    """Sample id -> path of the files in ``folder`` whose name ends in ``suffix`` (any case).

    The id is the name without ``suffix``; names ending in one of ``skip`` (e.g. ``_superpixels.png``)
    and every other file (licences, ``.DS_Store``, CSVs) are ignored. Not recursive, except that a
    same-named single subfolder (``X/X/*.jpg``, a common unzip result) is entered. Two files for one
    id (``ISIC_1.jpg`` and ``ISIC_1.JPG``) raise :class:`DatasetError`.
    """
    found: dict[str, Path] = {}
    low_suffix, low_skip = suffix.lower(), tuple(s.lower() for s in skip)
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        low = entry.name.lower()
        if not low.endswith(low_suffix) or low.endswith(low_skip) or not entry.is_file():
            continue
        sample_id = entry.name[: -len(suffix)]
        if sample_id in found:
            raise DatasetError(
                f"two files for id {sample_id!r}: {found[sample_id].name} and {entry.name}",
                path=folder, hint="keep one file per image (delete the copy)")
        found[sample_id] = Path(entry.path)
    nested = folder / folder.name
    if not found and nested.is_dir():
        return index_folder(nested, suffix, skip)
    return found


def check_cross_split_duplicates(ids_by_split: dict[str, list[str]], where: dict[str, Path]) -> None:
    """Raise :class:`DatasetError` if one id is in two splits (naming both files or folders)."""
    first: dict[str, str] = {}
    for split, ids in ids_by_split.items():
        for sample_id in ids:
            if sample_id in first:
                other = first[sample_id]
                raise DatasetError(
                    f"duplicate id {sample_id!r}: listed in the {other} split ({where[other].name}) "
                    f"and again in the {split} split", path=where[split],
                    hint="an image belongs to one official split only; remove the copy")
            first[sample_id] = split
