"""Lightning callbacks shared by the paper experiments."""

from __future__ import annotations

import logging
from operator import attrgetter

import pytorch_lightning as pl
import torch.nn as nn
from pytorch_lightning.callbacks import BaseFinetuning
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer

log = logging.getLogger(__name__)

FREEZE_MODES = ("auto", "requires_grad", "zero_lr")


class FreezeBackbone(BaseFinetuning):
    """Train with the backbone (or its lower stages) frozen for the first epochs, then fine-tune it at a lower lr.

    The mammography paper (arXiv 2508.16000) freezes the ImageNet ResNet-50's lower layers at first
    and fine-tunes them afterwards (paper: "freezing the backbone initially, followed by fine-tuning";
    "freeze lower layers for the first 10 epochs"). ``frozen_modules`` names the part that is frozen
    (e.g. the stem and ``layer1``-``layer3`` of a ResNet: the rest trains from the start); ``None``
    freezes the whole backbone. Built on Lightning's ``BaseFinetuning``:

    * ``freeze_before_training`` (runs before ``configure_optimizers``): every parameter of the
      frozen part of ``pl_module.<backbone_attr>`` gets ``requires_grad=False``, so the task's optimiser (which
      keeps only trainable parameters) starts without them. While frozen, the backbone's
      BatchNorm layers are kept in eval mode (``frozen_bn_eval``): the frozen backbone is then a
      fixed function using its pretrained running statistics, identical in training and
      evaluation (Lightning's default would normalise with batch statistics during training only).
    * At the start of epoch ``unfreeze_at_epoch`` (0-based) the frozen part becomes trainable again
      (BatchNorm included) and its parameters are added to the optimiser as a new parameter
      group with ``lr = lr_factor x`` the current lr of the first group. Schedulers keep working on
      the extra group (torch schedulers step every group). Checkpoint resume restores the group
      through ``BaseFinetuning``'s state.

    Multi-GPU: DDP builds its gradient all-reduce from the parameters that require grad when it
    wraps the model, so parameters unfrozen later are never synchronised and the ranks' backbones
    drift apart silently (Lightning issue #20340). With more than one process (``freeze_mode=
    "auto"``) the backbone is therefore frozen by learning rate instead (``"zero_lr"``): its
    parameters keep ``requires_grad=True`` and are moved, before the first step, into their own
    optimiser group with ``lr = 0`` (BatchNorm still in eval mode), which gets ``lr_factor x`` the
    first group's lr at ``unfreeze_at_epoch``. The frozen phase then costs a backbone backward pass,
    but every rank stays identical.

    Args:
        unfreeze_at_epoch: first epoch (0-based) in which the backbone trains; 0 = never frozen.
        backbone_attr: dotted attribute path from the LightningModule to the backbone
            (``"net.backbone"`` for ``ClassificationTask`` + ``MammoXAttn``). A missing attribute is
            an error; an attribute that is ``None`` (e.g. a clinical-only ablation without
            backbone) makes the callback a no-op with a log message.
        lr_factor: backbone lr relative to the rest of the model at unfreeze time.
        frozen_modules: dotted names of the backbone's submodules to freeze (``["conv1", "bn1",
            "layer1", "layer2", "layer3"]``: a ResNet's lower stages); ``None`` = the whole backbone.
            A name the backbone lacks is an error listing its children.
        frozen_bn_eval: keep the frozen backbone's BatchNorm layers in eval mode.
        freeze_mode: ``"auto"`` (``"zero_lr"`` when ``trainer.world_size > 1``, else
            ``"requires_grad"``), ``"requires_grad"`` or ``"zero_lr"`` (see above).
    """

    def __init__(
        self,
        unfreeze_at_epoch: int = 5,
        backbone_attr: str = "net.backbone",
        lr_factor: float = 0.1,
        frozen_bn_eval: bool = True,
        freeze_mode: str = "auto",
        frozen_modules: list[str] | None = None,
    ) -> None:
        super().__init__()
        if unfreeze_at_epoch < 0:
            raise ValueError(f"FreezeBackbone unfreeze_at_epoch must be >= 0, got {unfreeze_at_epoch}.")
        if lr_factor <= 0:
            raise ValueError(f"FreezeBackbone lr_factor must be > 0, got {lr_factor}.")
        self.unfreeze_at_epoch = int(unfreeze_at_epoch)
        self.backbone_attr = backbone_attr
        self.lr_factor = float(lr_factor)
        if freeze_mode not in FREEZE_MODES:
            raise ValueError(f"FreezeBackbone freeze_mode={freeze_mode!r} is not one of {FREEZE_MODES}.")
        self.frozen_bn_eval = frozen_bn_eval
        self.freeze_mode = freeze_mode
        self.frozen_modules = None if frozen_modules is None else [str(m) for m in frozen_modules]
        if self.frozen_modules is not None and not self.frozen_modules:
            raise ValueError("FreezeBackbone frozen_modules is empty: name submodules or use null (whole backbone).")
        self._frozen = False
        self._zero_lr = False

    def backbone(self, pl_module: pl.LightningModule) -> nn.Module | None:
        """The module at ``backbone_attr`` (``None`` if the net has no backbone)."""
        try:
            module = attrgetter(self.backbone_attr)(pl_module)
        except AttributeError as err:
            raise AttributeError(
                f"FreezeBackbone(backbone_attr={self.backbone_attr!r}) found no such attribute on "
                f"{type(pl_module).__name__}: {err}. Set backbone_attr to the dotted path of the backbone."
            ) from None
        if module is not None and not isinstance(module, nn.Module):
            raise TypeError(f"FreezeBackbone: {self.backbone_attr!r} is a {type(module).__name__}, not an nn.Module.")
        return module

    def frozen_part(self, pl_module: pl.LightningModule) -> list[nn.Module]:
        """The modules that are frozen: the backbone, or its ``frozen_modules`` (``[]`` without a backbone)."""
        backbone = self.backbone(pl_module)
        if backbone is None:
            return []
        if self.frozen_modules is None:
            return [backbone]
        parts = []
        for name in self.frozen_modules:
            try:
                parts.append(backbone.get_submodule(name))
            except AttributeError:
                children = [n for n, _ in backbone.named_children()]
                raise AttributeError(
                    f"FreezeBackbone(frozen_modules=...): {self.backbone_attr} has no submodule {name!r}; "
                    f"its children are {children}."
                ) from None
        return parts

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        """Freeze the backbone (or its ``frozen_modules``) unless training starts at or after ``unfreeze_at_epoch``."""
        backbone = self.frozen_part(pl_module)
        if not backbone:
            log.info("FreezeBackbone: %s is None, nothing to freeze.", self.backbone_attr)
            return
        trainer = pl_module._trainer
        start_epoch = trainer.current_epoch if trainer is not None else 0
        self._frozen = self._zero_lr = False
        if self.unfreeze_at_epoch <= start_epoch:
            return
        world_size = trainer.world_size if trainer is not None else 1
        self._zero_lr = self.freeze_mode == "zero_lr" or (self.freeze_mode == "auto" and world_size > 1)
        if not self._zero_lr:
            self.freeze(backbone, train_bn=False)
        self._frozen = True

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Restore groups on resume (``BaseFinetuning``); in ``zero_lr`` mode split off the backbone group."""
        super().on_fit_start(trainer, pl_module)
        if self._frozen and self._zero_lr:
            for optimizer in trainer.optimizers:
                self._split_zero_lr_group(self.frozen_part(pl_module), optimizer)

    @staticmethod
    def _split_zero_lr_group(frozen: list[nn.Module], optimizer: Optimizer) -> None:
        """Move the frozen part's parameters out of shared groups into one new group with lr 0."""
        ids = {id(p) for module in frozen for p in module.parameters()}
        if any(g["params"] and all(id(p) in ids for p in g["params"]) for g in optimizer.param_groups):
            return  # already separate (resumed run): keep the restored group and its lr
        moved = []
        for group in optimizer.param_groups:
            moved += [p for p in group["params"] if id(p) in ids]
            group["params"] = [p for p in group["params"] if id(p) not in ids]
        if moved:
            optimizer.add_param_group({"params": moved, "lr": 0.0})

    def finetune_function(self, pl_module: pl.LightningModule, epoch: int, optimizer: Optimizer) -> None:
        """At ``unfreeze_at_epoch``: unfreeze and add the backbone as a new optimiser group."""
        if not self._frozen or epoch < self.unfreeze_at_epoch:
            return
        backbone = self.frozen_part(pl_module)
        lr = optimizer.param_groups[0]["lr"] * self.lr_factor
        if self._zero_lr:
            ids = {id(p) for module in backbone for p in module.parameters()}
            for group in optimizer.param_groups:
                if group["params"] and all(id(p) in ids for p in group["params"]):
                    group["lr"] = lr
        else:
            self.unfreeze_and_add_param_group(backbone, optimizer, lr=lr, train_bn=True)
        for module in backbone:
            module.train(pl_module.training)  # BatchNorm layers were held in eval mode while frozen
        self._frozen = False
        log.info("FreezeBackbone: epoch %d, unfroze %s (lr %.3g).", epoch, self.backbone_attr, lr)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Unfreeze when due; otherwise keep the frozen backbone's BatchNorm in eval mode."""
        super().on_train_epoch_start(trainer, pl_module)
        if self._frozen and self.frozen_bn_eval:
            for part in self.frozen_part(pl_module):
                for module in part.modules():
                    if isinstance(module, _BatchNorm):
                        module.eval()
