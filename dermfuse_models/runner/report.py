"""``python -m dermfuse_models.runner report``: our runs beside the papers' numbers, as a reviewer reads them.

Writes ``runs/report.md`` and ``runs/report_<paper>.png``. Per paper, per **protocol** (dataset, source
options, task: a mass-only CBIS-DDSM run is never beside mass+calc numbers), one table::

    | run | metric | paper | ours: mean ± s.d. (n seeds) | 95% CI | difference | what differs |

* ``run`` is a comparison label (``A``, ``B``, ...: the runs that differ only by ``seed_everything``,
  :mod:`~dermfuse_models.runner.report_runs`), the same in every table and panel; the list under the
  table maps each label to its run folders, seeds, data (**SYNTHETIC** marked) and variant.
* ``ours`` is the mean over seeds with the sample s.d. (never a lone best seed); ``95% CI`` is the grouped
  bootstrap interval of that mean under test-set resampling (:mod:`~dermfuse_models.runner.report_stats`).
* ``difference`` is ours minus the paper's number for the same metric key; ``what differs`` names our
  data, split, image size and epochs and the paper row's split, ``protocol`` fields and note.
* Runs left out (failed; debug: ``fast_dev_run``, ``limit_*_batches``, fewer than ``--min-epochs``
  epochs) are listed with their reason, not compared. Sweep runs are compared as their own labelled
  variants (``sweep: fusion=concat ...``), beside the paper row of the same variant.

``experiments/<paper>/reported.yaml``::

    paper: <title>
    arxiv: "<id>"
    results:
      - dataset: cbis_ddsm             # a dermfuse dataset name
        source_options: {abnormality: both}   # optional (also read from protocol.source_options)
        task: classification           # default classification
        variant: full model            # shown as the paper's setting
        split: "not stated by the paper; ours: grouped 70/15/15"   # short text for the table
        overrides: {model.init_args.net.init_args.fusion: concat}   # optional: the sweep variant it is
        metrics: {test/f1_pos: 0.94}   # keys exactly as our runs log them (the metric it really is)
        protocol: {split: unknown, input: {stated: ..., quote: "..."}}   # what the paper states, per field
        differences: [{field: input, direction: ours lower, ...}]        # expected effect on our number
        note: optional text

A row without ``overrides`` is the paper's own model and is compared with runs of the paper's config;
a row with ``overrides`` with the sweep runs whose overrides include them.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dermfuse_models.runner.report_plot import plot_paper
from dermfuse_models.runner.report_runs import (
    MIN_EPOCHS,
    Comparison,
    Protocol,
    RunRecord,
    collect_runs,
    flatten,
    group_comparisons,
    known_papers,
    protocol_of,
)
from dermfuse_models.runner.report_stats import MetricStats, comparison_stats
from dermfuse_models.runner.runs import runs_root

#: metrics always shown for our runs of a task (besides those the paper reports)
DEFAULT_METRICS = {
    "classification": ("test/acc", "test/bal_acc", "test/auroc_macro", "test/f1_macro"),
    "segmentation": ("test/dice", "test/iou", "test/thresholded_jaccard"),
}
#: shown too where a run logged them (binary tasks)
BINARY_METRICS = ("test/f1_pos", "test/precision_pos", "test/sensitivity_pos", "test/specificity_pos")


@dataclass
class PaperRow:
    """One result row of a paper's ``reported.yaml``."""

    protocol: Protocol
    variant: str
    split: str
    metrics: dict[str, float | None]
    overrides: dict = field(default_factory=dict)
    fields: dict = field(default_factory=dict)  # protocol field -> what the paper states (or "unknown")
    note: str = ""
    differences: list = field(default_factory=list)  # [{field, stated, ours, direction, why}]

    def matches(self, comparison: Comparison) -> bool:
        """Whether ``comparison`` measures this row's variant on its protocol (see module doc)."""
        if comparison.protocol != self.protocol:
            return False
        if not self.overrides:
            return not comparison.is_sweep
        theirs = {k: str(v) for k, v in comparison.overrides.items()}
        return comparison.is_sweep and all(theirs.get(k) == str(v) for k, v in self.overrides.items())


def load_reported(experiments: Path, paper: str) -> tuple[dict, list[PaperRow]]:
    """The paper's header info and its reported rows ({} and [] without reported.yaml)."""
    path = experiments / paper / "reported.yaml"
    if not path.is_file():
        return {}, []
    data = yaml.safe_load(path.read_text()) or {}
    rows = []
    for i, r in enumerate(data.get("results") or []):
        metrics = r.get("metrics") or {}
        if not isinstance(metrics, dict):
            raise ValueError(f"{path}: results[{i}].metrics must map metric keys (e.g. test/acc) to numbers")
        fields = r.get("protocol") if isinstance(r.get("protocol"), dict) else {}
        options = r.get("source_options") or fields.get("source_options")
        rows.append(
            PaperRow(
                protocol_of(str(r.get("dataset", "?")), options, r.get("task")),
                str(r.get("variant", "")),
                str(r.get("split", "")),
                {k: None if v is None else float(v) for k, v in metrics.items()},
                flatten(dict(r.get("overrides") or {})),
                {
                    k: v.get("stated", v) if isinstance(v, dict) else v
                    for k, v in fields.items()
                    if k != "source_options"
                },
                str(r.get("note", "")),
                [d for d in r.get("differences") or [] if isinstance(d, dict)],
            )
        )
    return data, rows


def _fmt(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _ours(stats: MetricStats | None) -> str:
    if stats is None:
        return "not logged"
    sd = f" ± {stats.sd:.4f}" if stats.sd is not None else ""
    return f"{stats.mean:.4f}{sd} (n={stats.n})"


def _ci(stats: MetricStats | None) -> str:
    if stats is None:
        return ""
    return f"[{stats.ci[0]:.4f}, {stats.ci[1]:.4f}]" if stats.ci else stats.ci_note


def _split_kind(run: RunRecord) -> str:
    official = run.summary.get("official_split")
    return "official split" if official else "grouped split" if official is False else "split ?"


def what_differs(comparison: Comparison, row: PaperRow | None) -> str:
    """Our data, split, image size and epochs against the paper row's split, protocol fields (what the paper
    states) and note, then each known difference's expected effect on our number (``reported.yaml``)."""
    run = comparison.runs[0]
    data = "**SYNTHETIC** miniature" if comparison.synthetic else "real data"
    ours = f"ours: {data}, {_split_kind(run)}, {run.summary.get('image_size', '?')} px, "
    ours += f"{run.summary.get('max_epochs', '?')} epochs"
    if row is None:
        return ours
    paper = [row.split] if row.split else []
    paper += [f"{k}: {v}" for k, v in row.fields.items()]
    paper += [row.note] if row.note else []
    expected = [f"{d.get('field')} -> {d.get('direction', 'unknown')}" for d in row.differences]
    text = ours + ("; paper: " + "; ".join(paper) if paper else "")
    return text + ("; expected effect on ours: " + ", ".join(expected) if expected else "")


def metric_keys(comparison: Comparison, rows: list[PaperRow]) -> list[str]:
    """The paper rows' metric keys, then the task's default metrics (and binary ones where logged)."""
    keys = [k for row in rows for k in row.metrics]
    keys += list(DEFAULT_METRICS.get(comparison.protocol.task, ()))
    logged = {k for r in comparison.runs for k in (r.summary.get("test") or {})}
    keys += [k for k in BINARY_METRICS if k in logged]
    return list(dict.fromkeys(keys))


@dataclass
class ProtocolSection:
    """What the report shows for one protocol of one paper."""

    protocol: Protocol
    rows: list[PaperRow]
    comparisons: list[Comparison]
    stats: dict[str, dict[str, MetricStats]]  # label -> metric -> stats


def protocol_sections(rows: list[PaperRow], comparisons: list[Comparison]) -> list[ProtocolSection]:
    """One section per protocol of the paper's rows and our comparisons (paper's protocols first)."""
    protocols = list(dict.fromkeys([r.protocol for r in rows] + [c.protocol for c in comparisons]))
    sections = []
    for protocol in protocols:
        ours = [c for c in comparisons if c.protocol == protocol]
        theirs = [r for r in rows if r.protocol == protocol]
        stats = {c.label: comparison_stats(c, metric_keys(c, [r for r in theirs if r.matches(c)])) for c in ours}
        sections.append(ProtocolSection(protocol, theirs, ours, stats))
    return sections


def section_table(section: ProtocolSection) -> list[str]:
    """The Markdown table of one protocol section."""
    header = ["run", "metric", "paper", "ours: mean ± s.d. (n seeds)", "95% CI", "difference", "what differs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def add(cells: list[str]) -> None:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")

    matched: set[int] = set()
    for comparison in section.comparisons:
        stats = section.stats[comparison.label]
        rows = [r for r in section.rows if r.matches(comparison)]
        matched |= {id(r) for r in rows}
        for row in rows or [None]:
            for key in metric_keys(comparison, [row] if row else []):
                paper = row.metrics.get(key) if row else None
                ours = stats.get(key)
                diff = f"{ours.mean - paper:+.4f}" if (ours and paper is not None) else ""
                reported = _fmt(paper) if row and key in row.metrics else ""
                differs = what_differs(comparison, row) if reported else ""
                add([comparison.label, key, reported, _ours(ours), _ci(ours), diff, differs])
    for row in section.rows:
        if id(row) not in matched:
            for key, value in row.metrics.items():
                add(["—", key, _fmt(value), "no compared run", "", "", "; ".join(filter(None, [row.split, row.note]))])
    return lines


def comparison_lines(comparisons: list[Comparison]) -> list[str]:
    """Label -> variant, data, seeds, epochs and run folders."""
    lines = []
    for c in comparisons:
        data = "**SYNTHETIC**" if c.synthetic else "real"
        seeds = ", ".join(str(s) for s in c.seeds)
        folders = ", ".join(f"`{r.name}`" for r in c.runs)
        lines.append(
            f"- **{c.label}**: {c.variant}; {data} data; {len(c.runs)} seed(s) ({seeds}); "
            f"{c.protocol.describe()}; runs: {folders}"
        )
    return lines


def build_report(
    runs: str | Path | None = None,
    experiments: str | Path = "experiments",
    out: str | Path | None = None,
    min_epochs: int = MIN_EPOCHS,
) -> Path:
    """Write ``report.md`` (and one PNG per paper) into ``runs``; returns the Markdown path."""
    runs = Path(runs).resolve() if runs else runs_root()
    experiments = Path(experiments).resolve()
    runs.mkdir(parents=True, exist_ok=True)
    out = Path(out) if out else runs / "report.md"
    papers = known_papers(experiments) if experiments.is_dir() else []
    records = collect_runs(runs, papers, min_epochs)
    comparisons = group_comparisons(records)
    parts = [
        "# dermfuse results",
        "",
        "Our TEST metrics (best checkpoint of each run) beside the papers' reported figures "
        "(`experiments/<paper>/reported.yaml`), one table per protocol (dataset, source options, task). "
        "ours = mean ± sample s.d. over the seeds of one comparison (runs that differ only by `seed_everything`); "
        "95% CI = grouped bootstrap (patients / lesions / images resampled, 1000 resamples, percentile) of that "
        "mean; difference = ours − paper. Rows on **SYNTHETIC** data say nothing about the papers.",
        "",
    ]
    for paper in sorted(set(papers) | {r.paper for r in records}):
        info, rows = load_reported(experiments, paper)
        ours = comparisons.get(paper, [])
        left_out = [r for r in records if r.paper == paper and r.excluded]
        arxiv = f" (arXiv {info['arxiv']})" if info.get("arxiv") else ""
        parts += [f"## {paper}: {info.get('paper', paper)}{arxiv}", ""]
        if not rows and not ours:
            parts += ["No reported figures and no compared runs yet.", ""]
        elif not ours:
            parts += [f'No compared runs yet (`make train-{paper} SEEDS="0 1 2"`).', ""]
        sections = protocol_sections(rows, ours)
        for section in sections:
            parts += [f"### {section.protocol.describe()}", "", *section_table(section), ""]
        if ours:
            parts += ["Runs compared:", "", *comparison_lines(ours), ""]
        if left_out:
            parts += ["Not compared:", ""]
            parts += [f"- `{r.name}`: {r.excluded}" for r in left_out]
            parts += [""]
        png = plot_paper(paper, sections, runs / f"report_{paper}.png")
        if png is not None:
            parts += [f"![{paper}]({png.name})", ""]
        if info.get("notes"):
            parts += [str(info["notes"]).strip(), ""]
    out.write_text("\n".join(parts))
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: ``--runs``, ``--experiments``, ``--out``, ``--min-epochs``."""
    parser = argparse.ArgumentParser(
        prog="python -m dermfuse_models.runner report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", default=None, help="folder of run folders (default $DERMFUSE_RUNS or runs)")
    parser.add_argument("--experiments", default="experiments", help="experiments folder (reported.yaml)")
    parser.add_argument("--out", default=None, help="Markdown file (default <runs>/report.md)")
    parser.add_argument(
        "--min-epochs",
        "--min_epochs",
        type=int,
        default=MIN_EPOCHS,
        help=f"runs with fewer max_epochs are debug runs, not compared (default {MIN_EPOCHS})",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    path = build_report(args.runs, args.experiments, args.out, args.min_epochs)
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
