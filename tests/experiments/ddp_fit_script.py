"""Standalone 2-process CPU DDP fit of vitatt's smoke config (test_ddp.py, test_multinode.py: subprocesses).

``python ddp_fit_script.py OUT_DIR [--key=value ...]``: Lightning's ``strategy=ddp`` relaunches this script
for rank 1 (gloo backend on CPU); extra arguments replace ``--trainer.devices=2`` (``torchrun --nnodes=2``
starts one copy per node with ``--trainer.num_nodes=2 --trainer.devices=1``). Every rank writes
``OUT_DIR/rank<k>.json`` with the sample ids it saw in training and validation and the validation metrics
it logged (after the epoch's synchronisation).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytorch_lightning as pl

REPO = Path(__file__).resolve().parents[2]


class RankRecorder(pl.Callback):
    """Records, per rank, the sample ids of its batches and the logged validation metrics."""

    def __init__(self, out: Path) -> None:
        self.out, self.train_ids, self.val_ids, self.val_metrics = out, [], [], {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.train_ids += list(batch["sample_id"])

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            self.val_ids += list(batch["sample_id"])

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.val_metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}

    def on_fit_end(self, trainer, pl_module):
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{trainer.global_rank}.json").write_text(
            json.dumps(
                {
                    "rank": trainer.global_rank,
                    "world_size": trainer.world_size,
                    "train_ids": self.train_ids,
                    "val_ids": self.val_ids,
                    "val_metrics": self.val_metrics,
                    "run_dir": trainer.default_root_dir,
                }
            )
        )


def main(out: str, launch: list[str]) -> None:
    from dermfuse_models.runner.cli import main as cli_main

    experiments = REPO / "experiments" / "vitatt"
    cli_main(
        [
            "fit",
            "--config",
            str(experiments / "config.yaml"),
            "--config",
            str(experiments / "smoke.yaml"),
            "--trainer.accelerator=cpu",
            *(launch or ["--trainer.devices=2"]),
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=2",
            "--trainer.limit_test_batches=1",
            "--data.batch_size=8",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
        ],
        trainer_defaults={"callbacks": [RankRecorder(Path(out))]},
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
