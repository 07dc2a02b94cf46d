"""One look for dermfuse_models' figures (test report, segmentation samples) and the caption naming what they show.

:func:`figure_style` is the one place the package sets matplotlib's rcParams (as a context, never globally);
:class:`FigureContext` names the dataset, split, run and checkpoint under every figure title and says
SYNTHETIC DATA where the numbers come from a generated miniature.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

#: rcParams of every figure drawn by dermfuse_models (compact, readable in a two-column paper at 100%)
STYLE: dict[str, Any] = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "figure.titlesize": 9,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "image.interpolation": "nearest",
}
#: what marks a figure drawn from synthetic data
SYNTHETIC_MARK = "SYNTHETIC DATA (a pipeline check, not a result)"


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    """Draw and save inside this block to get :data:`STYLE` (matplotlib reads rcParams when artists are made)."""
    with matplotlib.rc_context(STYLE):
        yield


@dataclass(frozen=True)
class FigureContext:
    """What a figure was made from, for its caption.

    Attributes:
        dataset: dataset name (``ham10000``). split: ``train`` / ``val`` / ``test``.
        run: the run folder's name (``mammo_xattn/20261201-113736-cbis_ddsm-both``).
        checkpoint: the checkpoint file's name, or ``None`` (weights in memory).
        synthetic: the data is a generated miniature (the caption says so).
    """

    dataset: str | None = None
    split: str | None = None
    run: str | None = None
    checkpoint: str | None = None
    synthetic: bool = False

    def caption(self, width: int | None = None) -> str:
        """``"ham10000 · test split · run mammo_xattn/2026... · best-epoch009.ckpt · SYNTHETIC DATA (...)"``;
        with ``width``, broken into lines of at most about ``width`` characters between its parts."""
        parts = [
            self.dataset,
            self.split and f"{self.split} split",
            self.run and f"run {self.run}",
            f"checkpoint {self.checkpoint}" if self.checkpoint else "weights in memory (no checkpoint)",
            SYNTHETIC_MARK if self.synthetic else None,
        ]
        parts = [p for p in parts if p]
        if width is None:
            return " · ".join(parts)
        lines = [parts[0]]
        for part in parts[1:]:
            if len(lines[-1]) + 3 + len(part) > width:
                lines.append(part)
            else:
                lines[-1] += " · " + part
        return "\n".join(lines)

    @classmethod
    def from_trainer(cls, trainer: Any, split: str) -> FigureContext:
        """The context of ``trainer``'s current evaluation: its datamodule's dataset (``hparams.dataset``,
        ``is_synthetic``), run folder (``default_root_dir``, with its parent folder) and ``ckpt_path``."""
        datamodule = getattr(trainer, "datamodule", None)
        hparams = getattr(datamodule, "hparams", None) or {}
        run_dir = getattr(trainer, "default_root_dir", None)
        run = Path(run_dir) if run_dir else None
        ckpt = getattr(trainer, "ckpt_path", None)
        return cls(
            dataset=hparams.get("dataset") if hasattr(hparams, "get") else None,
            split=split,
            run=f"{run.parent.name}/{run.name}" if run else None,
            checkpoint=Path(ckpt).name if ckpt else None,
            synthetic=bool(getattr(datamodule, "is_synthetic", False)),
        )
