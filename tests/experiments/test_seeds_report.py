"""``make train-vitatt SEEDS="0 1 2"`` then ``make report``: three seeds on one split, each with grouped
bootstrap CIs, reported as mean +- s.d. with the CI of the seed mean (slow: three short fits)."""

from __future__ import annotations

import csv
import json
import re

import pytest

from tests.experiments._support import make

SHORT = " ".join(
    [
        "--trainer.max_epochs=2",
        "--data.image_size=32",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ]
)


@pytest.mark.slow
def test_three_seeds_one_command_then_the_report(runs_dir):
    fit = make("train-vitatt", "SEEDS=0 1 2", f"ARGS={SHORT}", timeout=1800)
    assert fit.returncode == 0, fit.stderr[-3000:]
    folders = sorted((runs_dir / "vitatt").iterdir())
    summaries = [json.loads((f / "metrics.json").read_text()) for f in folders]
    assert sorted(s["seed_everything"] for s in summaries) == [0, 1, 2]
    assert len({s["split_file"] for s in summaries}) == 1 and {s["seed"] for s in summaries} == {0}  # one split
    for folder, summary in zip(folders, summaries, strict=True):
        test, ci = summary["test"], summary["ci95"]
        assert set(ci) == {k for k in test if k != "test/loss"}, folder
        for key, (lo, hi) in ci.items():
            assert lo <= test[key] <= hi, (folder.name, key, lo, test[key], hi)
        assert summary["ci_groups"] >= 2 and summary["ci_method"]["unit"] == "patient"
        with (folder / "test_predictions.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        assert rows and {"sample_id", "group", "label", "prob_NEV"} <= set(rows[0])
        assert len({r["group"] for r in rows}) == summary["ci_groups"]

    report = make("report")
    assert report.returncode == 0, report.stderr[-3000:]
    text = (runs_dir / "report.md").read_text()
    section = text[text.index("### pad_ufes_20") :]
    line = next(x for x in section.splitlines() if x.startswith("| A | test/bal_acc |"))
    mean_sd, ci = (c.strip() for c in line.strip("|").split("|")[3:5])
    values = [s["test"]["test/bal_acc"] for s in summaries]
    assert re.fullmatch(r"\d\.\d{4} ± \d\.\d{4} \(n=3\)", mean_sd) and mean_sd.startswith(f"{sum(values) / 3:.4f}")
    lo, hi = (float(x) for x in re.findall(r"\d\.\d{4}", ci))
    assert lo <= sum(values) / 3 <= hi
    assert "3 seed(s) (0, 1, 2)" in text and (runs_dir / "report_vitatt.png").is_file()
