"""What a dermfuse command prints: third-party chatter filtered at its source, aligned tables, the model summary.

:func:`quiet_third_party` is entered by the command-line entry points only (``python -m dermfuse_models.runner``,
``python -m dermfuse_models.runner.cli``), never at import, so tests and Python users keep every warning.
It drops what is not the user's business, each at the place it comes from:

* Lightning's "💡 Tip: ... litlogger" advertisement and its "already configured with model summary callbacks"
  notice (``rank_zero_info`` records of the ``pytorch_lightning`` / ``lightning_fabric`` rank-zero loggers);
* torch's ``FutureWarning`` "``isinstance(treespec, LeafSpec)`` is deprecated", raised inside Lightning 2.6's
  own pytree helper;
* LightningCLI's warning about ``args=`` given together with a command line (the runner forwards its command
  line on purpose);
* wandb's console chatter (``WANDB_SILENT`` defaults to true, as under ``make``): the run's own summary says
  where the offline wandb run is and how to sync it (:func:`run_outputs`).

:class:`RunModelSummary` is Lightning's rich model summary without the FLOPs column (and its "Total FLOPs: 0"
line) when the FLOPs are unknown, i.e. always unless the model sets ``example_input_array``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pytorch_lightning.callbacks import ModelSummary

#: messages of Lightning's rank-zero loggers that advertise or narrate instead of informing
NOISE_LOG_MESSAGES = ("Tip: For seamless cloud logging", "Skipping setting a default `ModelSummary`")
#: (message regex, category) of third-party warnings the user can do nothing about
NOISE_WARNINGS = (
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
    (r"LightningCLI's args parameter is intended to run from within Python", UserWarning),
)
_RANK_ZERO_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero")


class _DropMessages(logging.Filter):
    """A logging filter that drops records whose message contains one of ``fragments``."""

    def __init__(self, fragments: Iterable[str]) -> None:
        super().__init__()
        self.fragments = tuple(fragments)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


@contextlib.contextmanager
def quiet_third_party() -> Iterator[None]:
    """Within the block, the third-party noise of the module doc is filtered (warnings, log records, wandb)."""
    noise = _DropMessages(NOISE_LOG_MESSAGES)
    loggers = [logging.getLogger(name) for name in _RANK_ZERO_LOGGERS]
    silent_before = os.environ.get("WANDB_SILENT")
    os.environ.setdefault("WANDB_SILENT", "true")
    for logger in loggers:
        logger.addFilter(noise)
    try:
        with warnings.catch_warnings():
            for message, category in NOISE_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category)
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(noise)
        if silent_before is None:
            os.environ.pop("WANDB_SILENT", None)


def aligned(rows: Iterable[tuple[Any, Any]], indent: str = "  ") -> str:
    """``(name, value)`` rows as lines with the values in one column, whatever the names' length."""
    rows = [(str(name), str(value)) for name, value in rows]
    width = max((len(name) for name, _ in rows), default=0)
    return "\n".join(f"{indent}{name:<{width}}  {value}" for name, value in rows)


def metrics_table(metrics: Mapping[str, float], indent: str = "  ") -> str:
    """Metric name and value (4 decimals) per line, values aligned."""
    return aligned(((k, f"{v:.4f}") for k, v in metrics.items()), indent)


def run_outputs(run_dir: str | Path, best_checkpoint: str | None = None) -> list[tuple[str, str]]:
    """``(what, where)`` of the files a finished run left in ``run_dir`` (paths relative to it), including how to
    sync its offline wandb run."""
    run = Path(run_dir)
    rows: list[tuple[str, str]] = []
    if best_checkpoint:
        best = Path(best_checkpoint)
        rows.append(("best checkpoint", str(best.relative_to(run)) if best.is_relative_to(run) else str(best)))
    files = [name for name in ("config.yaml", "metrics.json", "metrics.csv") if (run / name).is_file()]
    if files:
        rows.append(("config, metrics", ", ".join(files)))
    figures = sorted(p.name for p in (run / "figures").glob("*.png"))
    if figures:
        rows.append(("figures", "figures/: " + ", ".join(figures)))
    if any((run / "wandb").glob("offline-run-*")):
        rows.append(("wandb (offline)", f"wandb sync {run / 'wandb'}/offline-run-*"))
    return rows


class RunModelSummary(ModelSummary):
    """Lightning's model summary (a rich table) without the FLOPs column and total when the FLOPs are unknown (0).

    Lightning counts FLOPs only for a model with ``example_input_array``; dermfuse tasks have none, so the stock
    summary shows a column of zeros and "Total FLOPs: 0". ``python -m dermfuse_models.runner profile`` measures them.
    """

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        """Print the table of ``summary_data`` (minus FLOPs when ``total_flops`` is 0) and the totals."""
        from pytorch_lightning.utilities.model_summary.model_summary import (
            get_formatted_model_size,
            get_human_readable_count,
        )
        from rich import get_console
        from rich.table import Table

        columns = [(name, values) for name, values in summary_data if name != "FLOPs" or total_flops]
        table = Table(header_style="bold magenta")
        for name, _ in columns:
            table.add_column(name, justify="right" if name in ("Params", "FLOPs") else "left", no_wrap=name == "Name")
        for row in zip(*(values for _, values in columns), strict=True):
            table.add_row(*row)
        totals = [
            ("Trainable params", get_human_readable_count(int(trainable_parameters))),
            ("Non-trainable params", get_human_readable_count(int(total_parameters - trainable_parameters))),
            ("Total params", get_human_readable_count(int(total_parameters))),
            ("Total estimated model params size (MB)", get_formatted_model_size(model_size)),
            ("Modules in train / eval mode", f"{total_training_modes['train']} / {total_training_modes['eval']}"),
        ]
        if total_flops:
            totals.append(("Total FLOPs", get_human_readable_count(total_flops)))
        console = get_console()
        console.print(table)
        console.print(aligned(totals, indent=""), highlight=False)
