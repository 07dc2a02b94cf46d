"""Synthetic miniatures of every dataset (``../shared/DESIGN.md``, "Synthetic miniatures").

``write_synthetic("ph2", out, seed)`` writes a small copy of a dataset in its publisher's exact
on-disk layout and returns the root to pass to the dataset's reader (:mod:`dermfuse_data.sources`).
One convention: each dataset has a writer module here, named as in :data:`WRITER_MODULES`, whose
``write_miniature(out, seed) -> root`` does the work; writers may import constants from their reader,
never the other way round. The helpers they share:

* :mod:`~dermfuse_data.synthetic.lesions`: lesion drawing and class planning (re-exported here);
* :mod:`~dermfuse_data.synthetic.files`: byte-deterministic images, 1-bit BMPs and CSVs;
* :mod:`~dermfuse_data.synthetic.dicom`: minimal valid DICOM files.

The same seed gives byte-identical files. :func:`miniature_key` hashes the code a miniature is made
from, so that a cached miniature is rewritten exactly when that code changes.
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from types import ModuleType

from dermfuse_data.sources import SOURCE_MODULES

#: dataset name -> module under ``dermfuse_data.synthetic`` that defines ``write_miniature`` (named as the
#: dataset's reader module under ``dermfuse_data.sources``)
WRITER_MODULES = dict(SOURCE_MODULES)
#: where the writer modules and the shared helpers are (module attributes so tests can point them elsewhere)
SYNTHETIC_DIR = Path(__file__).resolve().parent
SOURCES_DIR = SYNTHETIC_DIR.parent / "sources"


def _known(name: str) -> None:
    if name not in WRITER_MODULES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(WRITER_MODULES)}")


def writer(name: str) -> ModuleType:
    """The writer module of dataset ``name`` (unknown names list the known ones)."""
    _known(name)
    return importlib.import_module(f"dermfuse_data.synthetic.{WRITER_MODULES[name]}")


def write_synthetic(name: str, out: str | Path, seed: int = 0) -> Path:
    """Write the synthetic miniature of dataset ``name`` into ``out``; returns the root for ``read``.

    Byte-identical files for the same ``seed``. Files already in ``out`` are overwritten where the
    miniature writes the same path and left alone otherwise.
    """
    return Path(writer(name).write_miniature(Path(out), int(seed)))


def miniature_sources(name: str) -> list[Path]:
    """The module files the miniature of ``name`` is made from.

    The shared helpers (every module of this package that is not a dataset's writer), the dataset's
    writer and its reader (whose constants shape the files). Another dataset's reader or writer is
    not among them.
    """
    _known(name)
    writers = {f"{module}.py" for module in WRITER_MODULES.values()}
    shared = sorted(p for p in SYNTHETIC_DIR.glob("*.py") if p.name not in writers)
    return shared + [SYNTHETIC_DIR / f"{WRITER_MODULES[name]}.py", SOURCES_DIR / f"{SOURCE_MODULES[name]}.py"]


def miniature_key(name: str) -> str:
    """A short hash of :func:`miniature_sources` (names and bytes): changes exactly when that code does."""
    digest = hashlib.sha256()
    for path in miniature_sources(name):
        digest.update(f"{path.parent.name}/{path.name}".encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:10]


__all__ = ["WRITER_MODULES", "miniature_key", "miniature_sources", "write_synthetic", "writer"]
