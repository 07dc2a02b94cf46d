"""``python -m dermfuse_data split --out file.csv``: the partition training uses, one row per sample."""

from __future__ import annotations

import csv

import pytest

from dermfuse_data.datamodule import DermDataModule
from dermfuse_data.split_file import read_split_file
from dermfuse_data.splits import crossing_groups


def _rows(path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


@pytest.mark.parametrize("dataset", ["pad_ufes_20", "csv"])
def test_exported_split_is_the_datamodules(dataset, miniature, tmp_path, cli, session_cache):
    root = miniature(dataset)
    out = tmp_path / "export" / "split.csv"
    rc, stdout, _ = cli("split", "--dataset", dataset, "--root", root, "--out", out, "--seed", "3")
    assert rc == 0 and str(out) in stdout
    header, rows = _rows(out)
    assert header == ["sample_id", "group", "label", "label_name", "split"]
    dm = DermDataModule(dataset, root=str(root), seed=3, meta_features=None)
    table = dm.table
    assert [r["sample_id"] for r in rows] == table.column("sample_id").to_pylist()
    assert [r["split"] for r in rows] == table.column("split").to_pylist()
    assert [r["group"] for r in rows] == table.column("group_id").to_pylist()
    assert [int(r["label"]) for r in rows] == table.column("label").to_pylist()
    assert {r["split"] for r in rows} == {"train", "val", "test"} and crossing_groups(table) == {}
    assert str(dm.split_file) in stdout  # the file training reads, the same partition
    saved = {sid: sample.split for sid, sample in read_split_file(dm.split_file).items()}
    assert {r["sample_id"]: r["split"] for r in rows} == saved


def test_export_of_a_missing_dataset_is_a_clear_error(tmp_path, cli, session_cache):
    rc, _, err = cli("split", "--dataset", "ph2", "--root", tmp_path / "nowhere", "--out", tmp_path / "s.csv")
    assert rc == 2 and "dataset folder does not exist" in err and not (tmp_path / "s.csv").exists()
