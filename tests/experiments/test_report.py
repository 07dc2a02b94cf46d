"""``make report``: finished runs beside the papers' reported figures, synthetic runs marked."""

from __future__ import annotations

import json

import yaml

from dermfuse_models.runner.report import build_report, collect_runs, known_papers, paper_of
from tests.experiments._support import EXPERIMENTS, PAPERS


def _run(runs, experiment, name, dataset, synthetic, test, **extra):
    folder = runs / experiment / name
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(
        json.dumps(
            {
                "experiment": experiment,
                "dataset": dataset,
                "synthetic": synthetic,
                "split": "test",
                "official_split": False,
                "seed": 3,
                "seed_everything": 0,
                "epochs": 2,
                "image_size": 64,
                "task": extra.pop("task", "classification"),
                "test": test,
                **extra,
            }
        )
    )
    return folder


def test_report_tables_plot_and_synthetic_marking(tmp_path):
    runs, experiments = tmp_path / "runs", tmp_path / "experiments"
    (experiments / "msvit").mkdir(parents=True)
    (experiments / "msvit" / "reported.yaml").write_text(
        yaml.safe_dump(
            {
                "paper": "MSViT",
                "arxiv": "2502.06243",
                "results": [
                    {
                        "dataset": "isic2017",
                        "variant": "full",
                        "split": "official test",
                        "metrics": {"test/acc": 0.895, "test/auroc_macro": 0.938},
                    }
                ],
            }
        )
    )
    (experiments / "dualnet").mkdir()
    (experiments / "dualnet" / "config.yaml").write_text("{}")
    _run(
        runs,
        "msvit",
        "a-isic2017",
        "isic2017",
        True,
        {"test/acc": 0.41, "test/auroc_macro": 0.6, "test/bal_acc": 0.4, "test/f1_macro": 0.3},
    )
    real = _run(runs, "msvit", "b-isic2017", "isic2017", False, {"test/acc": 0.88, "test/auroc_macro": 0.93})
    (real / "sweep_run.json").write_text(json.dumps({"overrides": {"model.init_args.net.init_args.patch_size": 32}}))
    _run(
        runs,
        "dualnet_segmenter",
        "c-isic2018",
        "isic2018_task1",
        True,
        {"test/dice": 0.7, "test/iou": 0.55},
        task="segmentation",
    )
    path = build_report(runs, experiments)
    text = path.read_text()
    start = text.index("## msvit")
    end = text.find("\n## ", start + 3)
    msvit = text[start : end if end > 0 else len(text)]
    lines = [line for line in msvit.splitlines() if line.startswith("| ")]
    header, paper_row, synthetic_row, real_row = lines
    assert "test/acc" in header and "test/auroc_macro" in header and "seed" in header and "split" in header
    assert paper_row.startswith("| paper | isic2017") and "0.8950" in paper_row and "0.9380" in paper_row
    assert "**SYNTHETIC**" in synthetic_row and "0.4100" in synthetic_row and "3/0" in synthetic_row
    assert "| real |" in real_row and "patch_size=32" in real_row and "**SYNTHETIC**" not in real_row
    assert "## dualnet" in text and "0.7000" in text  # dualnet_segmenter runs belong to dualnet
    assert (runs / "report_msvit.png").stat().st_size > 1000 and (runs / "report_dualnet.png").is_file()


def test_paper_of_and_known_papers():
    papers = known_papers(EXPERIMENTS)
    assert set(papers) >= {p for p in PAPERS if (EXPERIMENTS / p / "config.yaml").is_file()}
    assert paper_of("dualnet_segmenter", papers) == "dualnet" and paper_of("mammo_xattn", papers) == "mammo_xattn"
    assert paper_of("adhoc", papers) == "adhoc"


def test_every_reported_file_uses_logged_metric_keys():
    for path in EXPERIMENTS.glob("*/reported.yaml"):
        data = yaml.safe_load(path.read_text())
        assert data["arxiv"] and data["results"], path
        for row in data["results"]:
            assert row["dataset"] and all(k.startswith("test/") for k in row["metrics"]), path


def test_empty_runs_folder(tmp_path):
    path = build_report(tmp_path / "runs", EXPERIMENTS)
    assert "No finished runs yet" in path.read_text()
    assert collect_runs(tmp_path / "runs", []) == {}
