"""Each run folder keeps its split (``split.csv``); a resumed run refuses data whose split changed."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import build_table
from dermfuse_data.sources import get_source
from dermfuse_data.split_file import read_split_file
from dermfuse_data.splits import make_splits
from dermfuse_data.synthetic import write_synthetic
from dermfuse_models.runner.run_split import BEFORE_RESUME, RUN_SPLIT, record_run_split
from tests.experiments.test_resume import SMOKE


def _datamodule(n: int, relabel: int | None = None) -> SimpleNamespace:
    rows = [
        dict(
            sample_id=f"s{i}",
            image_path=f"/x/{i}.png",
            label=(i + (i == relabel)) % 2,
            label_name="x",
            group_id=f"g{i // 2}",
        )
        for i in range(n)
    ]
    return SimpleNamespace(table=make_splits(build_table(rows)), split_file=Path("/cache/ds/splits-abc.csv"))


def test_run_split_is_written_and_verified_on_resume(tmp_path, capsys):
    path = record_run_split(tmp_path, _datamodule(40))
    assert path == tmp_path / RUN_SPLIT
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["sample_id", "group_id", "label", "split"] and len(rows) == 40
    assert rows[3] == {"sample_id": "s3", "group_id": "g1", "label": "1", "split": rows[3]["split"]}
    before = path.read_bytes()
    assert record_run_split(tmp_path, _datamodule(40), resume=True) == path and path.read_bytes() == before

    for changed, what in ((_datamodule(41), "1 added (s40)"), (_datamodule(40, relabel=5), "1 relabelled (s5)")):
        with pytest.raises(
            DatasetError, match=rf"(?s)split\.csv: the data changed.*{re.escape(what)}.*splits-abc\.csv.*accept"
        ):
            record_run_split(tmp_path, changed, resume=True)
        assert path.read_bytes() == before  # the run's copy is untouched by a refusal

    record_run_split(tmp_path, _datamodule(39), resume=True, accept_changed=True)
    assert len(read_split_file(path)) == 39 and (tmp_path / BEFORE_RESUME).read_bytes() == before
    assert "1 removed (s39)" in capsys.readouterr().err


def test_older_run_without_a_copy_gets_one_with_a_note(tmp_path, capsys):
    record_run_split(tmp_path, _datamodule(10), resume=True)
    assert (tmp_path / RUN_SPLIT).is_file() and "cannot be verified" in capsys.readouterr().err
    record_run_split(tmp_path / "rank1", _datamodule(10), write=False)
    assert not (tmp_path / "rank1").exists()


@pytest.mark.slow
def test_resume_after_a_data_edit_refuses_naming_the_split_file(runs_dir, tmp_path, capsys):
    """``fit`` on a dataset folder, remove one image's row, ``--resume=true``: refused; accepted: goes on."""
    from dermfuse_models.runner.cli import main

    root = write_synthetic("pad_ufes_20", tmp_path / "PAD-UFES-20", 0)
    args = [
        "fit",
        *SMOKE,
        f"--data.root={root}",
        f"--data.cache_dir={tmp_path / 'cache'}",
        "--trainer.max_epochs=1",
    ]
    first = main(args)
    run_dir = Path(first.trainer.default_root_dir)
    copy = read_split_file(run_dir / RUN_SPLIT)
    assert set(copy) == set(first.datamodule.table.column("sample_id").to_pylist())

    metadata = root / "metadata.csv"
    lines = metadata.read_text().splitlines(keepends=True)
    metadata.write_text("".join([lines[0], *lines[2:]]))  # the first image's row removed
    (removed_id,) = set(copy) - set(get_source("pad_ufes_20").read(root).column("sample_id").to_pylist())
    with pytest.raises(
        DatasetError, match=rf"(?s){re.escape(str(run_dir))}/split\.csv.*1 removed \({re.escape(removed_id)}\).*splits-"
    ):
        main([*args, "--trainer.max_epochs=2", "--resume=true", "--extend=true"])
    resumed = main([*args, "--trainer.max_epochs=2", "--resume=true", "--extend=true", "--accept_changed_split=true"])
    assert Path(resumed.trainer.default_root_dir) == run_dir and resumed.trainer.current_epoch == 2
    assert removed_id not in read_split_file(run_dir / RUN_SPLIT) and removed_id in read_split_file(
        run_dir / BEFORE_RESUME
    )
