"""Registry of dataset sources: ``get_source("pad_ufes_20")`` -> :class:`DatasetSource`."""

from __future__ import annotations

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
    """The :class:`DatasetSource` registered as ``name``; unknown names list the known ones."""
    if name not in SOURCE_MODULES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(SOURCE_MODULES)}")
    module = importlib.import_module(f"dermfuse_data.sources.{SOURCE_MODULES[name]}")
    return module.SOURCE


__all__ = ["DatasetSource", "MetaFeature", "SOURCE_MODULES", "get_source"]
