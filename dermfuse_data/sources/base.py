"""What every dataset source declares: its classes, metadata features and how to read it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

MISSING_TOKENS = ("", "UNK", "unknown", "NA", "nan", "None")


@dataclass(frozen=True)
class MetaFeature:
    """One clinical feature, as the tabular encoder should treat it.

    ``kind``: ``categorical`` (one-hot), ``numeric`` (standardised), ``multi`` (multi-hot over
    ``separator``-joined compound values such as ``OVAL-LYMPH_NODE``). Every kind gets an explicit
    missing indicator. ``leaks_label`` marks columns that encode the diagnosis (refused by default).
    """

    name: str
    column: str
    kind: Literal["categorical", "numeric", "multi"] = "categorical"
    missing: tuple[str, ...] = MISSING_TOKENS
    separator: str = "-"
    leaks_label: bool = False
    why_leaks: str = ""


@dataclass(frozen=True)
class DatasetSource:
    """A dataset as its publisher ships it.

    ``read(root, **options)`` returns the common table (:mod:`dermfuse_data.schema`) or raises
    :class:`~dermfuse_data.errors.DatasetError`. ``options`` documents the keyword options ``read``
    accepts (name -> help), e.g. CBIS-DDSM's ``abnormality``; the DataModule passes them as
    ``source_options`` and ``check`` as ``--option name=value``. The synthetic miniature in the same
    on-disk layout is written by :func:`dermfuse_data.synthetic.write_synthetic` (readers never
    depend on their writers). ``classes_for(**options)``, where given, names the classes ``read``
    labels with under those options (a protocol variant that relabels, e.g. ISIC 2017
    ``labels=melanoma``); :meth:`classes_with` is the one way to ask.
    """

    name: str
    title: str
    classes: tuple[str, ...]
    read: Callable[..., pa.Table]
    features: tuple[MetaFeature, ...] = ()
    group: str = "image"
    has_masks: bool = False
    tasks: tuple[str, ...] = ("classification",)
    notes: str = ""
    options: dict[str, str] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    #: ``(root, options) -> DatasetSource`` for a source whose classes and features are declared by
    #: the data itself (the ``csv`` source reads them from its spec file); ``None`` for the rest
    declare: Callable[[Path, dict], DatasetSource] | None = None

    def for_data(self, root: str | Path, options: dict | None = None) -> DatasetSource:
        """This source as declared for the copy at ``root`` read with ``options``: itself, except for
        sources with :attr:`declare` (their classes and features come from the data's own files)."""
        return self if self.declare is None else self.declare(Path(root), dict(options or {}))

    classes_for: Callable[..., tuple[str, ...]] | None = None

    def classes_with(self, options: Mapping[str, Any] | None = None) -> tuple[str, ...]:
        """The class names, in label order, of a table read with ``options`` (``classes`` unless an option relabels)."""
        if self.classes_for is None:
            return self.classes
        return tuple(self.classes_for(**dict(options or {})))

    def feature(self, name: str) -> MetaFeature:
        """The feature called ``name`` (raises ``KeyError`` listing the known names)."""
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no metadata feature {name!r}; known: {[f.name for f in self.features]}")
