"""Every config check stops the command before any work, in one line naming the key, without a traceback."""

from __future__ import annotations

import errno
import os

import pytest
import yaml

from dermfuse_data.sources import get_source
from dermfuse_models.runner.config_checks import check_config, explicit_values
from tests.experiments._filesystems import tmpfs
from tests.experiments._support import VITATT_SMOKE

VITATT = [
    "fit",
    *VITATT_SMOKE,
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=1",
    "--trainer.limit_val_batches=1",
]


def _refused(args: list[str], capsys) -> str:
    """Run the command line; it must exit 2 without a traceback. Returns its stderr."""
    from dermfuse_models.runner.cli import run_from_command_line

    with pytest.raises(SystemExit) as caught:
        run_from_command_line(args)
    err = capsys.readouterr().err
    assert caught.value.code == 2, err[-2000:]
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("size", ["0", "-5", "100000"])
def test_image_size_out_of_range(size, runs_dir, capsys):
    err = _refused([*VITATT, f"--data.image_size={size}"], capsys)
    assert f"data.image_size={size}: must be a whole number of pixels between 1 and 4096" in err
    assert not runs_dir.exists()  # nothing was created


def test_explicit_num_classes_that_disagrees_with_the_data(runs_dir, capsys, tmp_path):
    err = _refused([*VITATT, "--model.init_args.num_classes=3"], capsys)
    assert "model.init_args.num_classes=3 (from the command line) but pad_ufes_20 has 6 classes" in err
    overlay = tmp_path / "three.yaml"
    overlay.write_text(yaml.safe_dump({"model": {"init_args": {"net": {"init_args": {"num_classes": 3}}}}}))
    err = _refused([*VITATT, "--config", str(overlay)], capsys)
    assert f"model.init_args.net.init_args.num_classes=3 (from {overlay})" in err
    assert not runs_dir.exists()


def test_explicit_net_img_size_that_disagrees_with_the_data(runs_dir, capsys):
    err = _refused([*VITATT, "--model.init_args.net.init_args.img_size=96"], capsys)
    assert "model.init_args.net.init_args.img_size=96 (from the command line) but data.image_size=64" in err


def test_metadata_asked_of_a_dataset_without_any(runs_dir, capsys):
    err = _refused([*VITATT, "--data.dataset=ph2"], capsys)  # every PH2 column leaks the diagnosis
    assert "data.meta_features='all' but ph2 has only label-leaking metadata" in err
    err = _refused([*VITATT, "--data.dataset=isic2018_task1"], capsys)
    assert "data.meta_features='all' but isic2018_task1 has no clinical metadata" in err


def test_extend_without_resume_is_refused(runs_dir, capsys):
    err = _refused([*VITATT, "--extend=true"], capsys)
    assert "--extend=true continues a finished run: add --resume=true" in err
    assert not runs_dir.exists()


def test_batch_larger_than_the_train_split(runs_dir, capsys):
    err = _refused([*VITATT, "--data.batch_size=100000"], capsys)
    assert "data.batch_size=100000 is larger than the train split of pad_ufes_20 (111 samples)" in err
    assert list((runs_dir / "vitatt").iterdir()) == []  # the new run folder is removed again


def test_agreeing_explicit_values_and_the_usual_configs_pass():
    from dermfuse_models.runner.cli import parse_config

    args = [*VITATT, "--model.init_args.num_classes=6", "--model.init_args.net.init_args.img_size=64"]
    check_config(parse_config(args), args, get_source("pad_ufes_20"))
    image_only = [*VITATT, "--data.dataset=ph2", "--data.meta_features=null"]
    check_config(parse_config(image_only), image_only, get_source("ph2"))


def test_explicit_values_read_configs_then_overrides_in_order(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"model": {"init_args": {"num_classes": 4}}}))
    key = "model.init_args.num_classes"
    assert explicit_values(["fit", "--config", str(config)], [key]) == {key: (4, str(config))}
    assert explicit_values(["fit", f"--config={config}", "--model.num_classes", "5"], [key]) == {
        key: (5, "the command line")
    }
    assert explicit_values(["fit", "--model.init_args.num_classes=7", "-c", str(config)], [key])[key][0] == 4
    assert explicit_values(["fit", "--data.image_size=64"], [key]) == {}


def test_an_unwritable_runs_folder_names_it_and_the_variable(runs_dir, capsys, monkeypatch, tmp_path):
    read_only = tmp_path / "read-only"
    with tmpfs(read_only, size="1m", read_only=True) as mounted:
        if not mounted:  # not root: the same refusal, monkeypatched

            def refuse(path, *args, **kwargs):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))

            monkeypatch.setattr(os, "mkdir", refuse)
        monkeypatch.setenv("DERMFUSE_RUNS", str(read_only / "runs"))
        err = _refused(VITATT, capsys)
    assert f"cannot write to the run folder {read_only / 'runs' / 'vitatt'}" in err
    assert "DERMFUSE_RUNS=" in err and ("Read-only file system" in err or "Permission denied" in err)


def test_a_full_disk_while_writing_a_run_file_names_the_folder(capsys, tmp_path):
    from dermfuse_models.runner.cli import exit_on_user_error

    metrics = tmp_path / "run" / "metrics.csv"
    wrapped = RuntimeError("file write failed")
    wrapped.__context__ = OSError(errno.ENOSPC, "No space left on device", str(metrics))
    with pytest.raises(SystemExit) as caught:
        exit_on_user_error(wrapped)
    err = capsys.readouterr().err
    assert caught.value.code == 2
    assert f"cannot write to the run folder {metrics.parent}: [Errno {errno.ENOSPC}] No space left" in err
    assert "DERMFUSE_RUNS=" in err
    with pytest.raises(KeyError):  # anything else keeps its traceback
        exit_on_user_error(KeyError("a bug"))


def test_a_full_cache_disk_names_the_cache_folder_and_leaves_no_run(runs_dir, capsys, monkeypatch, tmp_path):
    """PIL's ENOSPC carries no file name: the write inside the data package names the cache, not the runs."""
    import PIL.Image

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setenv("DERMFUSE_CACHE", str(tmp_path / "cache"))  # fresh: the synthetic images get written
    monkeypatch.setattr(PIL.Image.Image, "save", disk_full)
    err = _refused(VITATT, capsys)
    assert f"cannot write to the cache folder {tmp_path / 'cache'}: [Errno {errno.ENOSPC}]" in err
    assert "DERMFUSE_CACHE=" in err and "run folder" not in err
    assert not any(runs_dir.rglob("*-pad_ufes_20"))  # the run folder made for it is gone again
