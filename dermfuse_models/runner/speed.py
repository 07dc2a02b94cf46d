"""``speed:`` in every config: channels-last memory format and ``torch.compile`` for the run's net.

A callback the CLI adds to every run (``--speed.channels_last=false``, ``--speed.compile=true``):

* ``channels_last``: the net's weights (in ``setup``, before the strategy moves and wraps it) and every
  batch's ``image``/``mask`` (at each batch start) become NHWC, the layout tensor-core convolutions run
  fastest in under bf16/fp16 autocast. Convolutional nets gain; a ViT only has its patch embedding.
  Applied on accelerators only (:data:`CPU_CHANNELS_LAST_BUG`): a CPU run says so and keeps NCHW.
* ``compile``: ``nn.Module.compile`` on the net, in place (state-dict keys unchanged, so checkpoints stay
  loadable without it). Compiling takes seconds to minutes per net, then steps run faster: ``make bench``
  measures both per paper net.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn

#: why channels-last is not applied on CPU (measured with torch 2.15.0, oneDNN, this repository's CPU machine)
CPU_CHANNELS_LAST_BUG = (
    "the CPU (oneDNN) backward of a strided 1x1 convolution in channels-last layout corrupts the heap in "
    "torch 2.15 (Conv2d(8, 16, 1, stride=2) on a 2x8x64x64 input aborts: 'free(): invalid next size')"
)


def to_channels_last(batch: Any) -> Any:
    """The batch's 4-D ``image`` and ``mask`` tensors in channels-last layout (in place in the dict)."""
    if isinstance(batch, MutableMapping):
        for key in ("image", "mask"):
            value = batch.get(key)
            if torch.is_tensor(value) and value.dim() == 4:
                batch[key] = value.contiguous(memory_format=torch.channels_last)
    return batch


class SpeedOptions(pl.Callback):
    """Channels-last layout and/or ``torch.compile`` for ``pl_module.net`` (the module itself if it has none).

    Args:
        channels_last: NHWC weights and batches.
        compile: compile the net (``torch.compile`` defaults, or ``compile_mode``).
        compile_mode: ``torch.compile`` mode (``default``, ``reduce-overhead``, ``max-autotune``) or ``None``.
    """

    def __init__(self, channels_last: bool = False, compile: bool = False, compile_mode: str | None = None):
        self.channels_last, self.compile, self.compile_mode = channels_last, compile, compile_mode
        self._compiled: set[int] = set()

    @staticmethod
    def _net(pl_module: pl.LightningModule) -> torch.nn.Module:
        net = getattr(pl_module, "net", None)
        return net if isinstance(net, torch.nn.Module) else pl_module

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Convert and/or compile the net once, before the strategy moves it to the device and wraps it."""
        net = self._net(pl_module)
        on_cpu = trainer is not None and trainer.strategy.root_device.type == "cpu"
        if self.channels_last and on_cpu:
            rank_zero_warn(f"speed.channels_last=true is not applied on CPU (NCHW kept): {CPU_CHANNELS_LAST_BUG}")
            self._applied_channels_last = False
        elif self.channels_last:
            net.to(memory_format=torch.channels_last)
            self._applied_channels_last = True
        if self.compile and id(net) not in self._compiled:
            net.compile(mode=self.compile_mode)
            self._compiled.add(id(net))

    _applied_channels_last = False

    def _batch(self, batch: Any) -> None:
        if self._applied_channels_last:
            to_channels_last(batch)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch(batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch(batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch(batch)

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch(batch)
