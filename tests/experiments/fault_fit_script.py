"""A ``fit`` with injected faults, run by test_run_lifecycle.py in a subprocess.

``python fault_fit_script.py [--kill-at-step N] [--stamp STAMP] -- <fit arguments>``

* ``--kill-at-step N``: the process SIGKILLs itself when optimiser step N is about to start (a real
  kill: no cleanup, no exception handler);
* ``--stamp STAMP``: every run folder is named as if started at ``STAMP`` (two processes then race for
  the same folder name, as two runs started in the same second do).

Exits as ``python -m dermfuse_models.runner fit`` does (clear errors, their status).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import types

import pytorch_lightning as pl


class KillAtStep(pl.Callback):
    """SIGKILL this process at the start of optimiser step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kill-at-step", type=int, default=None)
    parser.add_argument("--stamp", default=None)
    split = argv.index("--") if "--" in argv else len(argv)
    options, fit_args = parser.parse_args(argv[:split]), argv[split + 1 :]

    from dermfuse_models.runner import cli

    if options.stamp:
        cli.time = types.SimpleNamespace(strftime=lambda *args: options.stamp)
    callbacks = [KillAtStep(options.kill_at_step)] if options.kill_at_step is not None else []
    try:
        cli.main(["fit", *fit_args], trainer_defaults={"callbacks": callbacks})
    except Exception as err:
        cli.exit_on_user_error(err)


if __name__ == "__main__":
    main(sys.argv[1:])
