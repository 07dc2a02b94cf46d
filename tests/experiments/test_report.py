"""``make report``: per paper and protocol, the paper's number beside our mean +- s.d. over seeds, its
95% CI and the difference; debug, failed and other-protocol runs never mixed in."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml

from dermfuse_data.sources import get_source
from dermfuse_models.runner.report import build_report, load_reported
from dermfuse_models.runner.report_runs import collect_runs, group_comparisons, known_papers, paper_of
from dermfuse_models.runner.test_predictions import write_test_predictions
from dermfuse_models.runner.weighted_metrics import classification_evaluator
from dermfuse_models.tasks.metrics import classification_metrics
from dermfuse_models.tasks.segmentation import METRIC_NAMES
from tests.experiments._support import EXPERIMENTS, PAPERS

NAMES = ["BENIGN", "MALIGNANT"]


def _config(seed: int, lr: float = 1e-3, **trainer) -> dict:
    return {
        "seed_everything": seed,
        "trainer": {"max_epochs": 5, "default_root_dir": f"/somewhere/{seed}", "logger": [{"x": seed}], **trainer},
        "model": {"init_args": {"optimizer": {"init_args": {"lr": lr}}}},
        "data": {"dataset": "cbis_ddsm", "seed": 0},
        "run_dir": f"/somewhere/{seed}",
    }


def _run(runs, name, seed, *, options=None, status=None, config=None, overrides=None, flip=0.0):
    """A finished mammo_xattn run folder with metrics.json, config.yaml and test_predictions.csv."""
    folder = runs / "mammo_xattn" / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    labels = np.arange(40) % 2
    p1 = np.clip(0.25 + 0.5 * labels + rng.normal(0, 0.2 + flip, 40), 0.01, 0.99)
    probs = np.column_stack([1 - p1, p1])
    predictions = {"sample_id": np.array([f"img{i}" for i in range(40)]), "label": labels, "probs": probs}
    write_test_predictions(folder, predictions, np.array([f"P{i // 2}" for i in range(40)]), NAMES)
    test = {f"test/{k}": float(v[0]) for k, v in classification_evaluator(probs, labels, NAMES)(np.ones(40)).items()}
    summary = {
        "experiment": "mammo_xattn",
        "dataset": "cbis_ddsm",
        "source_options": options or {},
        "task": "classification",
        "synthetic": True,
        "official_split": True,
        "seed": 0,
        "seed_everything": seed,
        "split_file": "/cache/cbis_ddsm/splits-abc.csv",
        "image_size": 64,
        "max_epochs": (config or {}).get("trainer", {}).get("max_epochs", 5),
        "test": test,
        "ci95": {k: [v - 0.1, v + 0.1] for k, v in test.items()},
    }
    if status:
        summary["status"] = status
    (folder / "metrics.json").write_text(json.dumps(summary))
    (folder / "config.yaml").write_text(yaml.safe_dump(config or _config(seed)))
    if overrides is not None:
        (folder / "sweep_run.json").write_text(json.dumps({"overrides": overrides}))
    return folder, test


REPORTED = {
    "paper": "Mammo",
    "arxiv": "2508.16000",
    "results": [
        {
            "dataset": "cbis_ddsm",
            "variant": "cross-attention",
            "split": "paper's test split",
            "metrics": {"test/f1_pos": 0.94, "test/auroc_macro": 0.98},
            "protocol": {"classes": "benign vs malignant"},
        },
        {
            "dataset": "cbis_ddsm",
            "variant": "concatenation",
            "split": "paper's test split",
            "overrides": {"model.init_args.net.init_args.fusion": "concat"},
            "metrics": {"test/auroc_macro": 0.81},
        },
    ],
}


def _section(text: str, title: str) -> str:
    start = text.index(title)
    end = min(i for i in (text.find("\n### ", start + 1), text.find("\n## ", start + 1), len(text)) if i > 0)
    return text[start:end]


@pytest.fixture
def report(tmp_path):
    runs, experiments = tmp_path / "runs", tmp_path / "experiments"
    (experiments / "mammo_xattn").mkdir(parents=True)
    (experiments / "mammo_xattn" / "reported.yaml").write_text(yaml.safe_dump(REPORTED))
    tests = [_run(runs, f"s{seed}", seed)[1] for seed in (0, 1, 2)]
    _run(runs, "mass", 0, options={"abnormality": "mass"})
    _run(runs, "debug", 0, config=_config(0, fast_dev_run=True))
    _run(runs, "one-epoch", 0, config=_config(0, max_epochs=1))
    _run(runs, "failed", 0, status="failed")
    _run(runs, "other-lr", 0, config=_config(0, lr=0.1))
    key = "model.init_args.net.init_args"
    _run(runs, "sweep/00-concat", 0, overrides={key: {"fusion": "concat"}, "seed_everything": 0})
    _run(runs, "sweep/01-cross", 0, overrides={key: {"fusion": "cross"}, "seed_everything": 0})
    text = build_report(runs, experiments).read_text()
    return text, tests, runs


def test_seed_mean_sd_ci_and_difference_against_the_same_metric(report):
    text, tests, _ = report
    both = _section(text, "### cbis_ddsm (abnormality=both, view=full)")
    f1 = [line for line in both.splitlines() if line.startswith("| A | test/f1_pos |")]
    assert len(f1) == 1, both
    cells = [c.strip() for c in f1[0].strip("|").split("|")]
    values = [t["test/f1_pos"] for t in tests]
    mean, sd = np.mean(values), np.std(values, ddof=1)
    assert cells[2] == "0.9400" and cells[3] == f"{mean:.4f} ± {sd:.4f} (n=3)"
    lo, hi = (float(x) for x in re.findall(r"[0-9.]+", cells[4]))
    assert lo <= mean <= hi and hi - lo < 0.6
    assert cells[5] == f"{mean - 0.94:+.4f}"
    assert "**SYNTHETIC**" in cells[6] and "paper's test split" in cells[6]
    assert "classes: benign vs malignant" in cells[6]
    assert "| A | test/f1_macro |" in both  # ours shown too, but no paper number beside it
    assert not any(line.startswith("| A | test/f1_macro | 0.94") for line in both.splitlines())


def test_labels_map_to_folders_and_other_configs_are_other_comparisons(report):
    text, _, _ = report
    listing = {m[0]: m[1] for m in re.findall(r"- \*\*([A-Z]+)\*\*: (.*)", text)}
    assert "3 seed(s) (0, 1, 2)" in listing["A"] and all(f"`mammo_xattn/s{s}`" in listing["A"] for s in (0, 1, 2))
    other_lr = next(label for label, line in listing.items() if "other-lr" in line)
    assert other_lr != "A" and "1 seed(s)" in listing[other_lr]


def test_mass_only_runs_get_their_own_protocol(report):
    text, _, _ = report
    both = _section(text, "### cbis_ddsm (abnormality=both, view=full)")
    mass = _section(text, "### cbis_ddsm (abnormality=mass, view=full)")
    listing = {m[0]: m[1] for m in re.findall(r"- \*\*([A-Z]+)\*\*: (.*)", text)}
    mass_label = next(label for label, line in listing.items() if "`mammo_xattn/mass`" in line)
    assert f"| {mass_label} |" in mass and f"| {mass_label} |" not in both
    assert "0.9400" not in mass  # the paper's mass+calc numbers are never beside a mass-only run


def test_debug_and_failed_runs_are_listed_not_compared(report):
    text, _, _ = report
    left = text[text.index("Not compared:") :]
    assert "`mammo_xattn/debug`: debug: fast_dev_run" in left
    assert "`mammo_xattn/one-epoch`: debug: max_epochs=1" in left
    assert "`mammo_xattn/failed`: status failed" in left
    compared = text[: text.index("Not compared:")]
    assert not any(name in compared for name in ("`mammo_xattn/debug`", "`mammo_xattn/failed`", "one-epoch"))


def test_a_sweep_variant_is_compared_with_the_paper_row_of_that_variant(report):
    text, _, runs = report
    both = _section(text, "### cbis_ddsm (abnormality=both, view=full)")
    listing = {m[0]: m[1] for m in re.findall(r"- \*\*([A-Z]+)\*\*: (.*)", text)}
    concat = next(label for label, line in listing.items() if "00-concat" in line)
    cross = next(label for label, line in listing.items() if "01-cross" in line)
    assert "sweep: fusion=concat" in listing[concat]
    assert any(line.startswith(f"| {concat} | test/auroc_macro | 0.8100 |") for line in both.splitlines())
    assert not any(line.startswith(f"| {cross} | test/auroc_macro | 0.8100") for line in both.splitlines())
    assert not any(line.startswith(f"| {concat} | test/f1_pos | 0.9400") for line in both.splitlines())
    assert (runs / "report_mammo_xattn.png").stat().st_size > 5000


def test_seeds_group_by_config_without_bookkeeping(tmp_path):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        _run(runs, f"s{seed}", seed)
    _run(runs, "lr", 0, config=_config(0, lr=0.5))
    groups = group_comparisons(collect_runs(runs, ["mammo_xattn"]))["mammo_xattn"]
    assert [len(g.runs) for g in groups] == [2, 1] and [g.label for g in groups] == ["A", "B"]


def test_paper_of_and_known_papers():
    papers = known_papers(EXPERIMENTS)
    assert set(papers) >= {p for p in PAPERS if (EXPERIMENTS / p / "config.yaml").is_file()}
    assert paper_of("dualnet_segmenter", papers) == "dualnet" and paper_of("mammo_xattn", papers) == "mammo_xattn"
    assert paper_of("adhoc", papers) == "adhoc"


def _logged_test_keys(dataset: str, task: str) -> set[str]:
    if task == "segmentation":
        return {f"test/{k}" for k in METRIC_NAMES}
    classes = list(get_source(dataset).classes)
    return {f"test/{k}" for k in classification_metrics(len(classes), classes)}


def test_every_reported_number_names_a_metric_our_runs_log():
    for path in EXPERIMENTS.glob("*/reported.yaml"):
        data = yaml.safe_load(path.read_text())
        assert data["arxiv"] and data["results"], path
        for row in data["results"]:
            logged = _logged_test_keys(row["dataset"], row.get("task", "classification"))
            assert set(row["metrics"]) <= logged, (path, set(row["metrics"]) - logged)


def test_the_mammography_f1_is_compared_with_the_positive_class_f1():
    rows = yaml.safe_load((EXPERIMENTS / "mammo_xattn" / "reported.yaml").read_text())["results"]
    assert rows[0]["metrics"]["test/f1_pos"] == 0.94 and rows[0]["metrics"]["test/precision_pos"] == 0.92
    assert not any("test/f1_macro" in r["metrics"] for r in rows)


def test_empty_runs_folder(tmp_path):
    path = build_report(tmp_path / "runs", EXPERIMENTS)
    assert "No compared runs yet" in path.read_text()
    assert collect_runs(tmp_path / "runs", []) == []


def test_reported_protocol_fields_read_as_what_the_paper_states_and_the_expected_direction():
    """``reported.yaml``'s ``{stated, quote}`` protocol fields reach the report as the stated text, and each known
    difference as its field and expected direction (never a raw dict in the "what differs" column)."""
    _, rows = load_reported(EXPERIMENTS, "mammo_xattn")
    cross = rows[0]
    assert cross.fields["split"] == "unknown" and cross.fields["classes"] == "benign vs malignant"
    assert all(isinstance(v, str) for row in rows for v in row.fields.values())
    assert {"field": "input", "direction": "ours lower"}.items() <= cross.differences[0].items()
