"""Registry of dataset sources: ``get_source("pad_ufes_20")`` -> :class:`DatasetSource`."""

from __future__ import annotations

import difflib
import importlib

from dermfuse_data.sources.base import DatasetSource, MetaFeature

#: dataset name -> module under ``dermfuse_data.sources`` that defines ``SOURCE``
SOURCE_MODULES = {
    "pad_ufes_20": "pad_ufes_20",
    "ham10000": "ham10000",
    "isic2017": "isic2017",
    "isic2018_task1": "isic2018_task1",
    "isic2019": "isic2019",
    "ph2": "ph2",
    "cbis_ddsm": "cbis_ddsm",
    "csv": "csv_table",
}


def get_source(name: str) -> DatasetSource:
    """The :class:`DatasetSource` registered as ``name``; an unknown name is a ``ValueError`` naming close ones."""
    if name not in SOURCE_MODULES:
        close = [k for k in SOURCE_MODULES if k.startswith(str(name))] or difflib.get_close_matches(
            str(name), SOURCE_MODULES, n=2, cutoff=0.5
        )
        guess = f"; did you mean {' or '.join(map(repr, close[:2]))}?" if close else ""
        raise ValueError(f"unknown dataset {name!r}{guess} (known: {', '.join(sorted(SOURCE_MODULES))})")
    module = importlib.import_module(f"dermfuse_data.sources.{SOURCE_MODULES[name]}")
    return module.SOURCE


__all__ = ["DatasetSource", "MetaFeature", "SOURCE_MODULES", "get_source"]
