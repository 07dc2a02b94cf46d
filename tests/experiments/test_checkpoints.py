"""Checkpoints survive kills and full disks, ``last.ckpt`` is the last epoch, ``val`` is the best epoch's.

Where the tests run as root, ``runs/`` and ``$TMPDIR`` are two real tmpfs mounts (and the full disk a
real 1 MiB tmpfs); elsewhere they are folders of one filesystem and the full disk is a monkeypatched
``ENOSPC``. The kill is a real SIGKILL of a forked writer in the middle of ``torch.save``.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from dermfuse_models.runner.atomic import atomic_write_text, stale_temp_files
from dermfuse_models.runner.checkpoints import AtomicCheckpointIO, RunCheckpoint, read_checkpoint
from dermfuse_models.runner.run_errors import CheckpointError, RunFolderError
from tests.experiments._filesystems import tmpfs
from tests.experiments._tiny import TinyTask, loader, tiny_trainer


def _state(value: float, mib: int = 2) -> dict:
    return {"value": value, "weights": torch.full((mib * 2**18,), value)}


def _killed_mid_save(path: Path, tmpdir: Path, timeout: float = 60.0) -> int:
    """Fork a writer that SIGKILLs itself halfway through ``torch.save`` of ``path``; its wait status.

    The checkpoint is built before the fork: a forked child must not run torch's thread pool.
    """
    state = _state(2.0)
    pid = os.fork()
    if pid == 0:  # the writer
        try:
            os.environ["TMPDIR"] = str(tmpdir)
            real_save = torch.save

            def save_then_die(obj, file):
                real_save(obj, file)
                file.truncate(file.tell() // 2)  # half of it is on disk ...
                file.flush()
                os.kill(os.getpid(), signal.SIGKILL)  # ... when the process dies

            torch.save = save_then_die
            AtomicCheckpointIO().save_checkpoint(state, path)
        finally:
            os._exit(1)  # never reached: killed above
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"the forked writer hung for {timeout} s")


def test_kill_during_a_save_keeps_the_previous_last_ckpt(tmp_path):
    runs, tmpdir = tmp_path / "runs", tmp_path / "tmp"
    with tmpfs(runs) as runs_mounted, tmpfs(tmpdir) as tmp_mounted:
        if runs_mounted and tmp_mounted:
            assert os.stat(runs).st_dev != os.stat(tmpdir).st_dev  # two filesystems, as on the cluster
        folder = runs / "vitatt" / "run" / "checkpoints"
        last = folder / "last.ckpt"
        AtomicCheckpointIO().save_checkpoint(_state(1.0), last)

        status = _killed_mid_save(last, tmpdir)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL

        assert read_checkpoint(last)["value"] == 1.0  # the previous checkpoint, whole
        assert torch.equal(torch.load(last, weights_only=False)["weights"], _state(1.0)["weights"])
        assert list(tmpdir.iterdir()) == []  # nothing went through $TMPDIR
        leftovers = stale_temp_files(folder)
        assert len(leftovers) == 1 and leftovers[0].name.startswith(".last.ckpt.")  # the killed write's temp file

        model = TinyTask()
        trainer = tiny_trainer(runs / "vitatt" / "run", [RunCheckpoint(dirpath=str(folder))], max_epochs=1)
        trainer.fit(model, loader(), loader())  # the next run in the folder removes it
        assert stale_temp_files(folder) == []
        assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
        assert read_checkpoint(last)["global_step"] == 3
        assert list(tmpdir.iterdir()) == []


def test_disk_full_leaves_no_partial_file(tmp_path, monkeypatch):
    folder = tmp_path / "full"
    with tmpfs(folder, size="1m") as real_disk:
        last = folder / "last.ckpt"
        AtomicCheckpointIO().save_checkpoint({"value": 1.0, "weights": torch.zeros(10)}, last)
        before = {p.name: p.read_bytes() for p in folder.iterdir()}
        if not real_disk:
            real_save = torch.save

            def save_until_full(obj, file):
                file.write(b"x" * 1000)
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(torch, "save", save_until_full)
        with pytest.raises(RunFolderError, match=f"{folder}.*(No space left|ENOSPC).*DERMFUSE_RUNS") as caught:
            AtomicCheckpointIO().save_checkpoint(_state(2.0, mib=2), folder / "best-epoch002.ckpt")
        if not real_disk:
            monkeypatch.setattr(torch, "save", real_save)
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no partial file, previous intact
        assert read_checkpoint(last)["value"] == 1.0
        assert "Traceback" not in str(caught.value)


def test_a_damaged_checkpoint_is_named_with_what_to_do(tmp_path):
    folder = tmp_path / "checkpoints"
    AtomicCheckpointIO().save_checkpoint(_state(1.0, mib=1), folder / "best-epoch001.ckpt")
    good = (folder / "best-epoch001.ckpt").read_bytes()
    (folder / "last.ckpt").write_bytes(good[: len(good) // 3])  # an old, cut-short save
    with pytest.raises(CheckpointError, match=r"last\.ckpt is damaged .*--ckpt_path=.*best-epoch001\.ckpt"):
        read_checkpoint(folder / "last.ckpt")
    (folder / "empty.ckpt").write_bytes(b"")
    (folder / "best-epoch001.ckpt").unlink()
    with pytest.raises(CheckpointError, match="no other checkpoint of this run loads: start a new run"):
        read_checkpoint(folder / "last.ckpt")


def test_atomic_text_write_replaces_whole_files_only(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    atomic_write_text(path, "old")

    def crash(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(path, "new")
    assert path.read_text() == "old" and stale_temp_files(tmp_path) == []


def _epoch_of(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=False)["epoch"])


@pytest.mark.parametrize("checkpoint_class", [RunCheckpoint, ModelCheckpoint])
def test_last_ckpt_is_the_last_epoch_even_when_the_monitor_stops_improving(tmp_path, checkpoint_class):
    folder = tmp_path / "checkpoints"
    ckpt = checkpoint_class(
        dirpath=str(folder), monitor="val/score", mode="max", save_last=True, filename="best-{epoch}"
    )
    trainer = tiny_trainer(tmp_path, [ckpt], max_epochs=3)
    trainer.fit(TinyTask(scores=(0.9, 0.5, 0.4)), loader(), loader())  # best at epoch 0, then worse
    assert Path(ckpt.best_model_path).name == "best-epoch=0.ckpt"
    if checkpoint_class is ModelCheckpoint:  # Lightning 2.6: last.ckpt only follows the best
        assert _epoch_of(folder / "last.ckpt") == 0
        return
    last = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 2 and last["global_step"] == 9  # 3 epochs x 3 batches
    assert ckpt.best_epoch == 0 and ckpt.best_val_metrics["val/score"] == pytest.approx(0.9)
    state = last["callbacks"][ckpt.state_key]
    assert state["best_epoch"] == 0 and state["best_val_metrics"]["val/score"] == pytest.approx(0.9)


def test_last_every_n_train_steps_writes_last_mid_epoch(tmp_path):
    last = tmp_path / "checkpoints" / "last.ckpt"
    seen = []

    class RecordLast(pl.Callback):
        def on_train_batch_start(self, trainer, *args):
            seen.append(read_checkpoint(last)["global_step"] if last.exists() else None)

    ckpt = RunCheckpoint(dirpath=str(last.parent), last_every_n_train_steps=2)
    trainer = tiny_trainer(tmp_path, [ckpt, RecordLast()], max_epochs=1, limit_val_batches=0)
    trainer.fit(TinyTask(), loader())
    assert seen == [None, None, 2]  # written after step 2 of the 3-step epoch ...
    assert read_checkpoint(last)["global_step"] == 3  # ... and at its end


def test_resume_from_a_damaged_last_ckpt_exits_with_what_to_do(runs_dir, capsys, tmp_path):
    from dermfuse_models.runner.cli import run_from_command_line
    from tests.experiments._support import EXPERIMENTS

    run_dir = runs_dir / "vitatt" / "20260101-000000-pad_ufes_20"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")  # what Lightning's cross-device copy left
    vitatt = EXPERIMENTS / "vitatt"
    args = ["fit", "--config", str(vitatt / "config.yaml"), "--config", str(vitatt / "smoke.yaml")]
    with pytest.raises(SystemExit) as caught:
        run_from_command_line([*args, f"--run_dir={run_dir}", "--resume=true"])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and "Traceback" not in err
    assert f"checkpoint {run_dir / 'checkpoints' / 'last.ckpt'} is damaged (0 bytes" in err
    assert "start a new run (without RESUME)" in err
