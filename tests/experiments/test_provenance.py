"""provenance.json: versions, git state, command, host, and a dataset fingerprint that sees every change."""

from __future__ import annotations

import json

import pyarrow as pa

from dermfuse_models.runner.provenance import dataset_fingerprint, session_record, write_provenance

ROWS = {
    "sample_id": ["a", "b", "c"],
    "label": [0, 1, 0],
    "group_id": ["p1", "p2", "p3"],
    "split": ["train", "val", "test"],
    "image_path": ["x", "y", "z"],
}


def test_the_fingerprint_is_order_free_and_sees_labels_groups_and_splits():
    base = dataset_fingerprint(pa.table(ROWS))
    shuffled = pa.table({k: list(reversed(v)) for k, v in ROWS.items()})
    assert dataset_fingerprint(shuffled) == base
    assert base["rows"] == 3 and base["splits"] == {"train": 1, "val": 1, "test": 1}
    moved_paths = dict(ROWS, image_path=["q", "r", "s"])  # where files live is not what the run saw
    assert dataset_fingerprint(pa.table(moved_paths))["sha256"] == base["sha256"]
    for column, value in (("label", [1, 1, 0]), ("group_id", ["p1", "p1", "p3"]), ("split", ["val", "val", "test"])):
        assert dataset_fingerprint(pa.table(dict(ROWS, **{column: value})))["sha256"] != base["sha256"], column


def test_a_record_per_session_resumes_appended(tmp_path):
    first = session_record(["fit", "--config", "c.yaml"], pa.table(ROWS), "disabled", {"dataset": "x"})
    assert first["packages"]["torch"] and first["packages"]["pytorch-lightning"] and first["packages"]["dermfuse"]
    assert set(first["git"]) == {"commit", "dirty"} and first["host"] and first["wandb_mode"] == "disabled"
    assert first["command"][-3:] == ["fit", "--config", "c.yaml"]
    write_provenance(tmp_path, first, resumed=False)
    write_provenance(tmp_path, session_record(["fit", "--resume=true"], None, "offline", {}), resumed=True)
    saved = json.loads((tmp_path / "provenance.json").read_text())
    assert saved["dataset_fingerprint"]["rows"] == 3
    assert [r["command"][-1] for r in saved["resumed"]] == ["--resume=true"]
