"""``runs/report_<paper>.png``: one panel per protocol, the paper's numbers and ours with 95% CI error bars.

In a panel each metric is a cluster of bars: the paper's rows of that protocol (greys, one per row)
and our comparisons (one colour per label, the same label and colour in every panel; hatched where
the data is synthetic), each bar the mean over seeds with the comparison's 95% CI as its error bar.
Our comparisons plotted are the paper's config runs and the sweep variants a paper row names; the
legend (from the drawn bars, nothing promised in the title) maps labels to the report's run list.
Drawn with matplotlib's object API (no global pyplot state).
"""

from __future__ import annotations

from pathlib import Path

from matplotlib import colormaps
from matplotlib.figure import Figure

PAPER_GREYS = ("#4d4d4d", "#808080", "#b3b3b3", "#d9d9d9")


def _plotted(section) -> list:
    return [c for c in section.comparisons if not c.is_sweep or any(r.matches(c) for r in section.rows)]


def _panel_keys(section, comparisons) -> list[str]:
    keys = [k for r in section.rows for k, v in r.metrics.items() if v is not None]
    keys += [k for c in comparisons for k in section.stats[c.label]]
    return list(dict.fromkeys(keys))


def plot_paper(paper: str, sections: list, path: Path) -> Path | None:
    """Draw the panels of ``sections`` (``report.ProtocolSection``) into ``path``; ``None`` if nothing to draw."""
    panels = []
    for section in sections:
        comparisons = _plotted(section)
        keys = _panel_keys(section, comparisons)
        rows = [r for r in section.rows if any(v is not None for v in r.metrics.values())]
        if keys and (rows or comparisons):
            panels.append((section, rows, comparisons, keys))
    if not panels:
        return None
    labels = sorted({c.label for _, _, cs, _ in panels for c in cs}, key=lambda s: (len(s), s))
    colours = {label: colormaps["tab10"](i % 10) for i, label in enumerate(labels)}
    width = min(16.0, max(6.0, max(0.8 * len(keys) * (len(rows) + len(cs)) ** 0.5 + 3 for _, rows, cs, keys in panels)))
    fig = Figure(figsize=(width, 3.6 * len(panels)), dpi=100)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (section, rows, comparisons, keys) in zip(axes, panels, strict=True):
        series = len(rows) + len(comparisons)
        bar = 0.8 / series
        for i, row in enumerate(rows):
            xs = [j + (i - series / 2 + 0.5) * bar for j, k in enumerate(keys) if row.metrics.get(k) is not None]
            ys = [row.metrics[k] for k in keys if row.metrics.get(k) is not None]
            ax.bar(xs, ys, bar, color=PAPER_GREYS[i % len(PAPER_GREYS)], label=f"reported: {row.variant}"[:60])
        for i, comparison in enumerate(comparisons, start=len(rows)):
            stats = section.stats[comparison.label]
            shown = [(j, stats[k]) for j, k in enumerate(keys) if k in stats]
            xs = [j + (i - series / 2 + 0.5) * bar for j, _ in shown]
            means = [s.mean for _, s in shown]
            low = [max(0.0, s.mean - s.ci[0]) if s.ci else 0.0 for _, s in shown]
            high = [max(0.0, s.ci[1] - s.mean) if s.ci else 0.0 for _, s in shown]
            n = max((s.n for _, s in shown), default=0)
            name = f"{comparison.label}: {comparison.variant}, n={n}" + (" (SYNTHETIC)" if comparison.synthetic else "")
            ax.bar(
                xs,
                means,
                bar,
                yerr=[low, high],
                capsize=2,
                color=colours[comparison.label],
                hatch="//" if comparison.synthetic else None,
                edgecolor="white" if comparison.synthetic else None,
                label=name[:70],
            )
        ax.set_xticks(range(len(keys)), [k.removeprefix("test/") for k in keys], fontsize=7, rotation=20, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("test metric")
        ax.set_title(f"{paper}: {section.protocol.describe()}", fontsize=9)
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.text(0.01, 0.005, "bars: mean over seeds; error bars: 95% CI (grouped bootstrap)", fontsize=6)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
