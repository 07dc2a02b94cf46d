"""The bar plot of ``make report``: a paper's reported figures beside our runs, one data protocol per panel.

* **Stable labels.** Each of our runs gets one label (``R1``, ``R2`` ... oldest first) used in every panel, and the
  key under the panels maps each label to its run folder; the paper's figures are ``P1``, ``P2`` ...
* **One protocol per panel.** A panel is one metric on one dataset with one set of source options (CBIS-DDSM
  ``abnormality=mass`` is not mass+calc). The paper's figures are drawn only in the panels of the data protocol of
  ``experiments/<paper>/config.yaml`` (the one ``make train-<paper>`` reproduces).
* **What is not a result stays out.** Debug runs (planned for at most :data:`DEBUG_EPOCHS` epochs) and failed runs
  (no test metrics, or a NaN one) are left out and listed in the key with the reason; sweep runs are drawn with a
  dashed edge; runs on synthetic data are hatched and the caption says SYNTHETIC.
* **An honest legend.** The legend lists only what the plot shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dermfuse_models.figure_style import SYNTHETIC_MARK, figure_style
from dermfuse_models.runner.runs import run_metrics

#: runs planned for at most this many epochs (``max_epochs=1``, ``fast_dev_run``) are debug runs, left out of the plot
DEBUG_EPOCHS = 1
PAPER_COLOUR, REAL_COLOUR, SYNTHETIC_COLOUR = "#555555", "#1f77b4", "#f4b183"


@dataclass(frozen=True)
class PlotEntry:
    """One bar source: a paper figure (``P<n>``) or one of our runs (``R<n>``) with its data protocol."""

    label: str
    row: Any  # dermfuse_models.runner.report.Row
    protocol: tuple[str, str]  # (dataset, "key=value, ..." source options or "")
    sweep: bool = False

    @property
    def is_paper(self) -> bool:
        """Whether this is one of the paper's own figures."""
        return self.row.source == "paper"


def options_text(options: dict | None) -> str:
    """Source options as ``abnormality=mass, view=full`` (sorted; ``""`` when there are none)."""
    return ", ".join(f"{k}={v}" for k, v in sorted((options or {}).items()))


def paper_options(experiments: Path | None, paper: str) -> dict:
    """``data.source_options`` of ``experiments/<paper>/config.yaml``: the protocol the paper's figures belong to."""
    path = (experiments / paper / "config.yaml") if experiments else None
    if path is None or not path.is_file():
        return {}
    data = (yaml.safe_load(path.read_text()) or {}).get("data") or {}
    data = data.get("init_args", data)
    return dict(data.get("source_options") or {})


def left_out_reason(row: Any, metrics: dict | None) -> str | None:
    """Why a run is not drawn (``"debug: 1 epoch planned"``, ``"failed: no test metrics"``), or ``None``."""
    if not row.metrics:
        return "failed: no test metrics"
    nan = sorted(k for k, v in row.metrics.items() if isinstance(v, float) and math.isnan(v))
    if nan:
        return f"failed: {', '.join(nan)} is NaN"
    metrics = metrics or {}
    planned = metrics.get("max_epochs")
    planned = metrics.get("epochs") if planned in (None, -1) else planned
    if isinstance(planned, int) and planned <= DEBUG_EPOCHS:
        return (
            f"debug: {planned} epoch{'s' if planned != 1 else ''} planned (runs of at most {DEBUG_EPOCHS} are left out)"
        )
    return None


def plot_entries(
    rows: list, runs: Path, experiments: Path | None, paper: str
) -> tuple[list[PlotEntry], list[tuple[str, str]]]:
    """The entries to draw (papers' ``P<n>``, our runs' ``R<n>``) and the runs left out as (folder, reason)."""
    default = options_text(paper_options(experiments, paper))
    entries: list[PlotEntry] = []
    left_out: list[tuple[str, str]] = []
    papers = [r for r in rows if r.source == "paper"]
    ours = [r for r in rows if r.source != "paper"]
    entries += [PlotEntry(f"P{i}", r, (r.dataset, default)) for i, r in enumerate(papers, 1)]
    for row in ours:
        metrics = run_metrics(runs / row.source)
        reason = left_out_reason(row, metrics)
        if reason:
            left_out.append((row.source, reason))
            continue
        protocol = (row.dataset, options_text((metrics or {}).get("source_options")))
        sweep = (runs / row.source / "sweep_run.json").is_file()
        entries.append(PlotEntry(f"R{len(entries) - len(papers) + 1}", row, protocol, sweep))
    return entries, left_out


def _panels(entries: list[PlotEntry], keys: list[str]) -> list[tuple[str, tuple[str, str], list[PlotEntry]]]:
    """(metric, protocol, entries) for every protocol one of our runs (or the paper) has a value of the metric in."""
    protocols: list[tuple[str, str]] = []
    for e in entries:
        if e.protocol not in protocols:
            protocols.append(e.protocol)
    panels = []
    for protocol in protocols:
        for key in keys:
            shown = [e for e in entries if e.protocol == protocol and key in e.row.metrics]
            if shown:
                panels.append((key, protocol, shown))
    return panels


def _key_lines(entries: list[PlotEntry], left_out: list[tuple[str, str]]) -> list[str]:
    lines = []
    for e in entries:
        r = e.row
        if e.is_paper:
            lines.append(f"{e.label}  paper: {r.variant} ({r.dataset}, {r.split})")
        else:
            data = "SYNTHETIC" if r.synthetic else "real data"
            lines.append(f"{e.label}  {r.source}  ({r.variant}; {data}; {r.note})")
    lines += [f"left out  {folder}  ({reason})" for folder, reason in left_out]
    return lines


def plot_paper(
    paper: str,
    rows: list,
    path: Path,
    metric_keys: list[str],
    runs: Path | None = None,
    experiments: Path | None = None,
) -> Path | None:
    """Save :func:`report_figure` of ``rows`` as ``path`` (``runs`` default: ``path``'s folder); ``None`` if
    there is nothing to draw."""
    fig = report_figure(paper, rows, metric_keys, Path(runs) if runs else Path(path).parent, experiments)
    if fig is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    with figure_style():
        fig.savefig(path)
    return path


def report_figure(paper: str, rows: list, metric_keys: list[str], runs: Path, experiments: Path | None = None):
    """The bar plot (a matplotlib ``Figure``) of ``metric_keys`` for ``rows`` (the paper's figures and our runs,
    whose folders are relative to ``runs``), or ``None`` when no row has one of the metrics. ``experiments`` holds
    ``<paper>/config.yaml`` (the paper's data protocol; without it the paper's figures go with runs that have no
    source options)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    entries, left_out = plot_entries(rows, runs, experiments, paper)
    keys = [k for k in metric_keys if any(k in e.row.metrics for e in entries)]
    panels = _panels(entries, keys)
    if not panels:
        return None
    key_lines = _key_lines(entries, left_out)
    columns = min(len(panels), 4)
    grid_rows = math.ceil(len(panels) / columns)
    with figure_style():
        fig = Figure(figsize=(2.4 * columns + 1.6, 2.3 * grid_rows + 0.6 + 0.13 * len(key_lines)), layout="constrained")
        axes = fig.subplots(grid_rows, columns, squeeze=False).ravel()
        for ax, (key, (dataset, options), shown) in zip(axes, panels):
            values = [e.row.metrics[key] for e in shown]
            bars = ax.bar(range(len(shown)), values, color=[_colour(e) for e in shown], edgecolor="black", lw=0.6)
            for bar, e in zip(bars, shown):
                bar.set_hatch("//" if not e.is_paper and e.row.synthetic else None)
                bar.set_linestyle("--" if e.sweep else "-")
            ax.bar_label(bars, [f"{v:.2f}" for v in values], fontsize=6, padding=1)
            ax.set_xticks(range(len(shown)), [e.label for e in shown])
            ax.set_xlim(-0.6, max(len(shown), 3) - 0.4)  # one bar stays one bar wide
            in_unit_range = all(0 <= v <= 1 for v in values)
            ax.set_ylim(0, 1.08 if in_unit_range else (max(values + [0.0]) * 1.15 or 1.0))
            ax.set_title(f"{key}\n{dataset}" + (f" · {options}" if options else ""))
        for ax in axes[len(panels) :]:
            ax.set_axis_off()
        legend = _legend_handles(entries, Patch)
        fig.legend(handles=legend, loc="outside right upper", frameon=False)
        synthetic = any(not e.is_paper and e.row.synthetic for e in entries)
        fig.suptitle(
            f"{paper}: TEST metrics, the paper's figures beside our runs" + (f"\n{SYNTHETIC_MARK}" * synthetic)
        )
        fig.supxlabel("\n".join(_clip(line, 160) for line in key_lines), fontsize=6, ha="left", x=0.01)
    return fig


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _colour(entry: PlotEntry) -> str:
    if entry.is_paper:
        return PAPER_COLOUR
    return SYNTHETIC_COLOUR if entry.row.synthetic else REAL_COLOUR


def _legend_handles(entries: list[PlotEntry], patch: type) -> list:
    """Legend patches for only the kinds of bar the plot draws."""
    kinds = {
        "paper (reported)": any(e.is_paper for e in entries),
        "ours, real data": any(not e.is_paper and not e.row.synthetic for e in entries),
        "ours, SYNTHETIC data": any(not e.is_paper and e.row.synthetic for e in entries),
        "sweep run (dashed edge)": any(e.sweep for e in entries),
    }
    style = {
        "paper (reported)": {"facecolor": PAPER_COLOUR},
        "ours, real data": {"facecolor": REAL_COLOUR},
        "ours, SYNTHETIC data": {"facecolor": SYNTHETIC_COLOUR, "hatch": "//"},
        "sweep run (dashed edge)": {"facecolor": "white", "linestyle": "--"},
    }
    return [patch(edgecolor="black", label=k, **style[k]) for k, shown in kinds.items() if shown]
