"""``python -m dermfuse_models.runner.report``: finished runs beside the papers' reported numbers.

Gathers every finished run (``runs/**/metrics.json``, written by ``python -m dermfuse_models.runner.cli
fit``) and, per paper, writes one Markdown table to ``runs/report.md`` and one bar plot to
``runs/report_<paper>.png``. Each table lists the paper's own figures first (from
``experiments/<paper>/reported.yaml``, machine-readable, taken from the paper summaries in
``shared/papers/``) and then our runs' TEST metrics with dataset, split, seed and variant (a sweep
run's overrides). Runs on the synthetic miniature are marked **SYNTHETIC** in the table and hatched
in the plot: their numbers say nothing about the paper. The plot (:mod:`dermfuse_models.runner.report_plot`) labels
each run once (``R1`` ...) with a key to its folder, draws one data protocol per panel and leaves debug and failed
runs out.

``reported.yaml`` format::

    paper: <title>
    arxiv: "<id>"
    results:
      - dataset: ham10000            # a dermfuse dataset name
        variant: full model          # matched to nothing; shown as the setting
        split: paper's test split
        metrics: {test/acc: 0.9347}  # keys as our runs log them
        note: optional text
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dermfuse_models.runner.report_plot import plot_paper

#: metrics always shown for our runs of a task (besides those the paper reports)
DEFAULT_METRICS = {
    "classification": ("test/acc", "test/bal_acc", "test/auroc_macro", "test/f1_macro"),
    "segmentation": ("test/dice", "test/iou"),
}


@dataclass
class Row:
    """One line of a paper's table: the paper's figure or one of our runs."""

    source: str  # "paper" or the run folder (relative to the runs root)
    dataset: str
    variant: str
    split: str
    seed: str
    synthetic: bool
    task: str
    metrics: dict[str, float] = field(default_factory=dict)
    note: str = ""


def known_papers(experiments: Path) -> list[str]:
    """Paper slugs: folders of ``experiments`` with a config.yaml or reported.yaml."""
    return sorted(
        p.name
        for p in experiments.iterdir()
        if p.is_dir() and ((p / "config.yaml").is_file() or (p / "reported.yaml").is_file())
    )


def paper_of(experiment: str, papers: list[str]) -> str:
    """The paper an experiment name belongs to (``dualnet_segmenter`` -> ``dualnet``)."""
    if experiment in papers:
        return experiment
    prefixes = [p for p in papers if experiment.startswith(p + "_")]
    return max(prefixes, key=len) if prefixes else experiment


def load_reported(experiments: Path, paper: str) -> tuple[dict, list[Row]]:
    """The paper's header info and its reported figures as rows ({} and [] if no reported.yaml)."""
    path = experiments / paper / "reported.yaml"
    if not path.is_file():
        return {}, []
    data = yaml.safe_load(path.read_text()) or {}
    rows = []
    for i, r in enumerate(data.get("results") or []):
        metrics = r.get("metrics") or {}
        if not isinstance(metrics, dict):
            raise ValueError(f"{path}: results[{i}].metrics must map metric keys (e.g. test/acc) to numbers")
        rows.append(
            Row(
                "paper",
                str(r.get("dataset", "?")),
                str(r.get("variant", "")),
                str(r.get("split", "")),
                "",
                False,
                str(r.get("task", "classification")),
                {k: float(v) for k, v in metrics.items() if v is not None},
                str(r.get("note", "")),
            )
        )
    return data, rows


def _variant(run_dir: Path, metrics: dict) -> str:
    sweep = run_dir / "sweep_run.json"
    if sweep.is_file():
        from dermfuse_models.runner.sweep import describe

        return "sweep: " + describe(json.loads(sweep.read_text()).get("overrides") or {})
    parts = []
    if metrics.get("source_options"):
        parts.append(",".join(f"{k}={v}" for k, v in metrics["source_options"].items()))
    if metrics.get("test_meta_missing_fraction"):
        parts.append(f"test meta missing {metrics['test_meta_missing_fraction']:.0%}")
    if metrics.get("predicted_masks"):
        parts.append("predicted masks")
    return "; ".join(parts) or "config"


def collect_runs(runs: Path, papers: list[str]) -> dict[str, list[Row]]:
    """Our finished runs grouped by paper, oldest first."""
    grouped: dict[str, list[Row]] = defaultdict(list)
    files = sorted(runs.glob("**/metrics.json"), key=lambda p: p.stat().st_mtime)
    for path in files:
        try:
            m = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        run_dir = path.parent
        rel = run_dir.relative_to(runs)
        experiment = m.get("experiment") or rel.parts[0]
        official = m.get("official_split")
        split = f"{m.get('split', 'test')} ({'official' if official else 'grouped' if official is False else '?'})"
        grouped[paper_of(experiment, papers)].append(
            Row(
                str(rel),
                str(m.get("dataset", "?")),
                _variant(run_dir, m),
                split,
                f"{m.get('seed', '')}/{m.get('seed_everything', '')}",
                bool(m.get("synthetic")),
                str(m.get("task", "classification")),
                dict(m.get("test") or {}),
                f"{m.get('epochs', '?')} epochs, {m.get('image_size', '?')} px",
            )
        )
    return grouped


def _metric_columns(rows: list[Row]) -> list[str]:
    keys: list[str] = []
    for r in rows:
        wanted = list(r.metrics) if r.source == "paper" else list(DEFAULT_METRICS.get(r.task, ()))
        keys += [k for k in wanted if k not in keys]
    return keys


def _fmt(value: float | None) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def markdown_table(rows: list[Row]) -> str:
    """The Markdown table of one paper's rows (paper's figures first)."""
    keys = _metric_columns(rows)
    header = ["source", "dataset", "variant", "split", "seed (data/init)", "data", *keys, "note"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        data = "paper" if r.source == "paper" else ("**SYNTHETIC**" if r.synthetic else "real")
        cells = [r.source, r.dataset, r.variant, r.split, r.seed, data, *[_fmt(r.metrics.get(k)) for k in keys], r.note]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def build_report(
    runs: str | Path = "runs", experiments: str | Path = "experiments", out: str | Path | None = None
) -> Path:
    """Write ``report.md`` (and one PNG per paper) into ``runs``; returns the Markdown path."""
    runs, experiments = Path(runs).resolve(), Path(experiments).resolve()
    runs.mkdir(parents=True, exist_ok=True)
    out = Path(out) if out else runs / "report.md"
    papers = known_papers(experiments) if experiments.is_dir() else []
    ours = collect_runs(runs, papers)
    parts = [
        "# dermfuse results",
        "",
        "Our TEST metrics (best checkpoint, `metrics.json` of each run) beside the papers' reported figures "
        "(`experiments/<paper>/reported.yaml`). Rows marked **SYNTHETIC** ran on the generated miniature "
        "datasets and say nothing about the papers. seed = data split seed / `seed_everything`.",
        "",
    ]
    for paper in sorted(set(papers) | set(ours)):
        info, reported = load_reported(experiments, paper)
        rows = reported + ours.get(paper, [])
        title = info.get("paper", paper)
        arxiv = f" (arXiv {info['arxiv']})" if info.get("arxiv") else ""
        parts += [f"## {paper}: {title}{arxiv}", ""]
        if not rows:
            parts += ["No reported figures and no finished runs yet.", ""]
            continue
        if not ours.get(paper):
            parts += ["No finished runs yet (`make train-" + paper + "`).", ""]
        parts += [markdown_table(rows), ""]
        png = plot_paper(paper, rows, runs / f"report_{paper}.png", _metric_columns(rows), experiments=experiments)
        if png is not None:
            parts += [f"![{paper}]({png.name})", ""]
        if info.get("notes"):
            parts += [str(info["notes"]).strip(), ""]
    out.write_text("\n".join(parts))
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: ``--runs``, ``--experiments``, ``--out``."""
    parser = argparse.ArgumentParser(
        prog="python -m dermfuse_models.runner.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", default="runs", help="folder of run folders (default runs)")
    parser.add_argument("--experiments", default="experiments", help="experiments folder (reported.yaml)")
    parser.add_argument("--out", default=None, help="Markdown file (default <runs>/report.md)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    path = build_report(args.runs, args.experiments, args.out)
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
