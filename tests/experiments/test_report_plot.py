"""``make report``'s bar plot: one label per run in every panel (keyed to its folder), one data protocol per panel,
debug and failed runs left out and named, sweep runs marked, a legend of only what is drawn."""

from __future__ import annotations

import json
import math
import os

import yaml

from dermfuse_models.runner.report import build_report, collect_runs, load_reported
from dermfuse_models.runner.report_plot import left_out_reason, report_figure

KEYS = ["test/acc", "test/auroc_macro"]


def _run(runs, name, test, synthetic=True, max_epochs=20, options=None, sweep=False):
    folder = runs / "mammo_xattn" / name
    folder.mkdir(parents=True)
    summary = {
        "experiment": "mammo_xattn",
        "dataset": "cbis_ddsm",
        "source_options": options if options is not None else {"abnormality": "both"},
        "synthetic": synthetic,
        "epochs": max_epochs,
        "max_epochs": max_epochs,
        "image_size": 64,
        "test": test,
    }
    (folder / "metrics.json").write_text(json.dumps(summary))
    os.utime(folder / "metrics.json", (1e9 + len(list(runs.glob("*/*"))),) * 2)  # collect_runs: oldest first
    if sweep:
        (folder / "sweep_run.json").write_text(
            json.dumps({"overrides": {"model.init_args.net.init_args.dropout": 0.1}})
        )
    return folder


def _experiments(tmp_path):
    paper = tmp_path / "experiments" / "mammo_xattn"
    paper.mkdir(parents=True, exist_ok=True)
    (paper / "config.yaml").write_text(yaml.safe_dump({"data": {"source_options": {"abnormality": "both"}}}))
    results = [
        {"dataset": "cbis_ddsm", "variant": "cross-attention", "split": "paper's", "metrics": {"test/acc": 0.96}}
    ]
    (paper / "reported.yaml").write_text(yaml.safe_dump({"paper": "X", "arxiv": "1", "results": results}))
    return tmp_path / "experiments"


def _figure(tmp_path, runs):
    experiments = _experiments(tmp_path)
    _, reported = load_reported(experiments, "mammo_xattn")
    rows = reported + collect_runs(runs, ["mammo_xattn"])["mammo_xattn"]
    return report_figure("mammo_xattn", rows, KEYS, runs, experiments)


def _bars(ax) -> dict[str, float]:
    labels = [t.get_text() for t in ax.get_xticklabels()]
    return dict(zip(labels, [p.get_height() for p in ax.patches]))


def _write_runs(runs):
    _run(runs, "a-both", {"test/acc": 0.5, "test/auroc_macro": 0.6})
    _run(runs, "b-mass", {"test/acc": 0.7, "test/auroc_macro": 0.8}, options={"abnormality": "mass"})
    _run(runs, "c-debug", {"test/acc": 0.99}, max_epochs=1)
    _run(runs, "d-failed", {"test/acc": math.nan, "test/auroc_macro": 0.5})
    _run(runs, "e-sweep", {"test/acc": 0.55}, sweep=True)


def test_one_protocol_per_panel_with_stable_labels_and_a_key(tmp_path):
    runs = tmp_path / "runs"
    _write_runs(runs)
    fig = _figure(tmp_path, runs)
    panels = {ax.get_title(): _bars(ax) for ax in fig.axes if ax.get_title()}
    both, mass = "cbis_ddsm · abnormality=both", "cbis_ddsm · abnormality=mass"
    # the paper's mass+calc figure only beside the mass+calc runs; the mass-only run alone in its panels
    assert panels[f"test/acc\n{both}"] == {"P1": 0.96, "R1": 0.5, "R3": 0.55}
    assert panels[f"test/auroc_macro\n{both}"] == {"R1": 0.6}
    assert panels[f"test/acc\n{mass}"] == {"R2": 0.7} and panels[f"test/auroc_macro\n{mass}"] == {"R2": 0.8}
    key = fig._supxlabel.get_text()
    assert "R1  mammo_xattn/a-both" in key and "R2  mammo_xattn/b-mass" in key and "R3  mammo_xattn/e-sweep" in key
    assert "left out  mammo_xattn/c-debug  (debug: 1 epoch planned" in key
    assert "left out  mammo_xattn/d-failed  (failed: test/acc is NaN)" in key
    assert "SYNTHETIC" in fig._suptitle.get_text()
    sweep_bar = next(ax for ax in fig.axes if ax.get_title() == f"test/acc\n{both}").patches[2]
    assert sweep_bar.get_linestyle() == "--" and sweep_bar.get_hatch() == "//"


def test_legend_names_only_what_is_drawn(tmp_path):
    runs = tmp_path / "runs"
    _run(runs, "a-real", {"test/acc": 0.9}, synthetic=False)
    fig = _figure(tmp_path, runs)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["paper (reported)", "ours, real data"]
    assert "SYNTHETIC" not in fig._suptitle.get_text()
    _run(runs, "b-synthetic", {"test/acc": 0.4}, sweep=True)
    fig = _figure(tmp_path, runs)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["paper (reported)", "ours, real data", "ours, SYNTHETIC data", "sweep run (dashed edge)"]


def test_left_out_reasons():
    class Row:
        metrics = {"test/acc": 0.5}

    assert left_out_reason(Row, {"max_epochs": 1}) == "debug: 1 epoch planned (runs of at most 1 are left out)"
    assert left_out_reason(Row, {"max_epochs": 2}) is None
    assert left_out_reason(Row, {"max_epochs": -1, "epochs": 1}).startswith("debug: 1 epoch")
    Row.metrics = {}
    assert left_out_reason(Row, {"max_epochs": 50}) == "failed: no test metrics"


def test_build_report_writes_the_plot_of_only_debug_runs_as_paper_figures(tmp_path):
    runs = tmp_path / "runs"
    _run(runs, "a-debug", {"test/acc": 0.5}, max_epochs=1)
    build_report(runs, _experiments(tmp_path))
    assert (runs / "report_mammo_xattn.png").stat().st_size > 1000
    assert "a-debug" in (runs / "report.md").read_text()  # the table still lists it: only the plot leaves it out
