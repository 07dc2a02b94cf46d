"""``<run>/split.csv``: the partition a run trains on (``sample_id,group_id,label,split``), checked on resume.

A fresh ``fit`` writes it (:mod:`dermfuse_data.split_file` format). ``--resume=true`` compares it with what the
data gives now and refuses a run whose samples, splits, labels or groups changed (an image added to or
removed from the dataset, a relabelled sample), naming both split files; ``--accept_changed_split=true``
continues on the changed data, keeping the old copy as ``split-before-resume.csv``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dermfuse_data.errors import DatasetError
from dermfuse_data.split_file import read_split_file, split_changes, table_samples, write_split_file

RUN_SPLIT = "split.csv"
BEFORE_RESUME = "split-before-resume.csv"


def record_run_split(
    run_dir: str | Path, datamodule, resume: bool = False, accept_changed: bool = False, write: bool = True
) -> Path:
    """Write (fresh run) or verify (``resume``) ``<run_dir>/split.csv`` against ``datamodule.table``.

    A changed split on resume is a :class:`DatasetError` unless ``accept_changed``; an older run without a
    copy gets one, with a note that it could not be verified. ``write=False`` (DDP ranks other than 0)
    only verifies. Returns the path of the run's copy.
    """
    path = Path(run_dir) / RUN_SPLIT
    current = table_samples(datamodule.table)
    if resume and path.is_file():
        changes = split_changes(read_split_file(path), current)
        if not changes:
            return path
        if not accept_changed:
            raise DatasetError(
                f"the data changed since this run started: {changes.summary()}",
                path=path,
                hint=f"resume on the data the run trained on (its dataset split file is {datamodule.split_file}), "
                "start a fresh run without RESUME, or pass --accept_changed_split=true to go on with the changed data",
            )
        if write:
            path.replace(path.with_name(BEFORE_RESUME))
        print(
            f"resuming on changed data (--accept_changed_split): {changes.summary()}; "
            f"the run's earlier split is kept as {path.with_name(BEFORE_RESUME)}",
            file=sys.stderr,
        )
    elif resume:
        print(
            f"{path.parent} has no {RUN_SPLIT} (an older run): its split cannot be verified; recording it now",
            file=sys.stderr,
        )
    return write_split_file(path, current) if write else path
