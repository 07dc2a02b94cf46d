"""Every number in ``experiments/*/reported.yaml`` names its protocol: the paper's and ours (issue 11).

The paper's fields (metric, dataset, split, classes, input) are ``unknown`` or a reading with a verbatim
quote of the paper part of its summary; ours point at the configs of the comparison and their class count
and input size are what those configs give; every difference names the expected direction of our number.
"""

from __future__ import annotations

import pytest
import yaml

from tests import paper_text
from tests.experiments._support import EXPERIMENTS, PAPERS

FIELDS = ("metric", "dataset", "split", "classes", "input")
DIRECTIONS = ("ours lower", "ours higher", "none", "unknown")


def _results(paper: str) -> list[dict]:
    return yaml.safe_load((EXPERIMENTS / paper / "reported.yaml").read_text())["results"]


def _merged(paper: str, configs: list[str]) -> dict:
    """The configs layered in order (dicts merged, everything else replaced), as LightningCLI layers them."""

    def merge(base: dict, top: dict) -> dict:
        out = dict(base)
        for key, value in top.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    merged: dict = {}
    for name in configs:
        merged = merge(merged, yaml.safe_load((EXPERIMENTS / paper / name).read_text()))
    return merged


ENTRIES = [(paper, i) for paper in PAPERS for i in range(len(_results(paper)))]


@pytest.mark.parametrize(("paper", "index"), ENTRIES)
def test_every_reported_number_states_the_papers_protocol(paper, index):
    entry = _results(paper)[index]
    assert entry["metrics"], "a result without metrics"
    protocol = entry["protocol"]
    assert set(protocol) == set(FIELDS), f"protocol must give exactly {FIELDS}"
    for field in FIELDS:
        value = protocol[field]
        if value == "unknown":
            continue
        assert set(value) == {"stated", "quote"} and value["stated"], f"{field}: {{stated, quote}} or unknown"
        quotes = value["quote"] if isinstance(value["quote"], list) else [value["quote"]]
        assert quotes and all(isinstance(q, str) and q for q in quotes), field
        if paper_text.available():
            missing = [q for q in quotes if not paper_text.paper_text(paper).has("paper", q)]
            assert missing == [], f"{paper} results[{index}].protocol.{field}: not in the paper's text: {missing}"


@pytest.mark.parametrize(("paper", "index"), ENTRIES)
def test_ours_is_what_the_named_configs_run(paper, index, tmp_path):
    from dermfuse_data.datamodule import DermDataModule

    entry = _results(paper)[index]
    ours = entry["ours"]
    assert {"config", "metric", "dataset", "split", "classes", "input"} <= set(ours)
    for name in ours["config"]:
        assert (EXPERIMENTS / paper / name).is_file(), f"ours.config names {name}, which experiments/{paper}/ lacks"
    data = _merged(paper, ours["config"])["data"]
    assert data["dataset"] == ours["dataset"] == entry["dataset"]
    assert data["image_size"] == ours["input"], "ours.input must be the configs' data.image_size"
    task = entry.get("task", "classification")
    assert data.get("task", "classification") == task
    if task == "segmentation":  # one lesion-mask channel, whatever diagnoses the dataset also has
        assert ours["classes"] == 1
        return
    dm = DermDataModule(data["dataset"], source_options=data.get("source_options"), cache_dir=str(tmp_path))
    assert dm.num_classes == ours["classes"], "ours.classes must be the class count of the configs' data"


@pytest.mark.parametrize(("paper", "index"), ENTRIES)
def test_every_difference_says_which_way_it_should_move_our_number(paper, index):
    differences = _results(paper)[index]["differences"]
    assert differences, "list at least the fields the paper leaves unknown"
    for d in differences:
        assert {"field", "stated", "ours", "direction", "why"} <= set(d), d
        assert d["direction"] in DIRECTIONS, f"direction {d['direction']!r} is not one of {DIRECTIONS}"
    unknown = {f for f, v in _results(paper)[index]["protocol"].items() if v == "unknown"}
    missing = unknown - {d["field"] for d in differences}
    assert not missing, f"fields the paper leaves unknown need a difference entry (what we run instead): {missing}"


def test_the_checks_reject_a_protocol_without_a_quote_or_with_a_made_up_one():
    if not paper_text.available():
        pytest.skip("../shared/papers is absent")
    summary = paper_text.paper_text("dualnet")
    assert summary.has("paper", "HAM10000 test accuracy: 93.47%")
    assert not summary.has("paper", "HAM10000 test accuracy on the official split: 93.47%")
    assert not summary.has("paper", "Test cross-attention with different head configurations")  # a suggestion
