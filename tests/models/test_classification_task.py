"""ClassificationTask: loss protocol, class weights, learning above chance (optimisation: test_task_base.py)."""

import math
from functools import partial

import pytest
import pytorch_lightning as pl
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from dermfuse_models.protocol import ImageOnlyNet
from dermfuse_models.tasks.classification import ClassificationTask
from tests.models._support import FixedLogitsNet, quiet_trainer


class TinyConvNet(nn.Module):
    """Image-only net following the protocol: ``{"logits": ...}``."""

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(4, num_classes)

    def forward(
        self, image: torch.Tensor, meta: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        return {"logits": self.head(self.features(image))}


class MetaNetWithAux(nn.Module):
    """Uses meta and returns a fixed aux loss, to check the task's protocol handling."""

    def __init__(self, aux_value: float | None = None) -> None:
        super().__init__()
        self.linear = nn.Linear(3 + 2, 2)
        self.aux_value = aux_value
        self.seen_meta = False
        self.seen_mask: torch.Tensor | None = None

    def forward(self, image: torch.Tensor, meta: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> dict:
        self.seen_meta = meta is not None
        self.seen_mask = mask
        meta = meta if meta is not None else image.new_zeros(image.shape[0], 2)
        out = {"logits": self.linear(torch.cat([image.mean(dim=(2, 3)), meta], dim=1))}
        if self.aux_value is not None:
            out["aux_losses"] = {"reg": torch.tensor(self.aux_value)}
        return out


class BrightnessDataset(Dataset):
    """Class 1 images are bright, class 0 dark; batches are the datamodule's dict format."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % 2
        noise = torch.rand(n, 3, 8, 8, generator=g) * 0.5
        self.images = noise + self.labels.view(-1, 1, 1, 1).float() * 0.5 - 0.25

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": self.labels[i], "sample_id": f"s{i}"}


class BrightnessDataModule(pl.LightningDataModule):
    """Minimal datamodule exposing ``class_counts`` like dermfuse_data's."""

    def __init__(self) -> None:
        super().__init__()
        self.train_set, self.val_set = BrightnessDataset(64, 0), BrightnessDataset(32, 1)

    @property
    def class_counts(self) -> list[int]:
        return torch.bincount(self.train_set.labels, minlength=2).tolist()

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=16, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=16)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=16)


def _batch(n: int = 4) -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.randn(n, 3, 8, 8, generator=g),
        "label": torch.tensor([0, 1] * (n // 2)),
        "meta": torch.randn(n, 2, generator=g),
        "mask": torch.ones(n, 1, 8, 8),
        "sample_id": [f"s{i}" for i in range(n)],
    }


def test_training_step_returns_finite_scalar_with_grad():
    task = ClassificationTask(TinyConvNet(), class_weights=None)
    loss = task.training_step(_batch(), 0)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.requires_grad


def test_meta_and_mask_reach_every_net_which_ignores_what_it_does_not_use():
    net = MetaNetWithAux()
    task = ClassificationTask(net, class_weights=None)
    batch = _batch()
    task.training_step(batch, 0)
    assert net.seen_meta and net.seen_mask is batch["mask"]
    task.training_step({k: v for k, v in batch.items() if k not in ("meta", "mask")}, 0)
    assert not net.seen_meta and net.seen_mask is None  # absent keys arrive as None
    # an image-only net ignores meta and mask
    ClassificationTask(TinyConvNet(), class_weights=None).training_step(batch, 0)


def test_a_bare_module_is_a_clear_error_and_image_only_net_adapts_it():
    bare = nn.Sequential(nn.Conv2d(3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())  # image -> logits tensor
    with pytest.raises(TypeError, match="ImageOnlyNet"):
        ClassificationTask(bare, class_weights=None).training_step(_batch(), 0)
    loss = ClassificationTask(ImageOnlyNet(bare), class_weights=None).training_step(_batch(), 0)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_aux_losses_are_added_to_the_loss():
    torch.manual_seed(0)
    plain = MetaNetWithAux()
    with_aux = MetaNetWithAux(aux_value=0.75)
    with_aux.load_state_dict(plain.state_dict())
    batch = _batch()
    loss_plain = ClassificationTask(plain, class_weights=None).training_step(batch, 0)
    loss_aux = ClassificationTask(with_aux, class_weights=None).training_step(batch, 0)
    assert loss_aux.item() == pytest.approx(loss_plain.item() + 0.75, abs=1e-6)


def test_inverse_frequency_weights_from_counts():
    weights = ClassificationTask.inverse_frequency_weights([90, 10])
    torch.testing.assert_close(weights, torch.tensor([100 / (2 * 90), 100 / (2 * 10)]))


def test_inverse_frequency_weights_read_from_datamodule_in_setup():
    class _Trainer:
        datamodule = type("DM", (), {"class_counts": [90, 10]})()

    task = ClassificationTask(TinyConvNet())
    task._trainer = _Trainer()
    task.setup("fit")
    torch.testing.assert_close(task.class_weight, torch.tensor([100 / 180, 100 / 20]))
    assert "class_weight" in task.state_dict()


def test_explicit_weights_change_the_loss():
    torch.manual_seed(0)
    net = TinyConvNet()
    batch = _batch()
    plain = ClassificationTask(net, class_weights=None).training_step(batch, 0)
    weighted = ClassificationTask(net, class_weights=[1.0, 3.0]).training_step(batch, 0)
    logits = net(batch["image"])["logits"]
    expected = nn.functional.cross_entropy(logits, batch["label"], weight=torch.tensor([1.0, 3.0]))
    assert weighted.item() == pytest.approx(expected.item(), rel=1e-5)
    assert not math.isclose(plain.item(), weighted.item(), rel_tol=1e-4)
    with pytest.raises(ValueError, match="num_classes"):
        ClassificationTask(net, class_weights=[1.0, 2.0, 3.0])


def test_fit_learns_above_chance_and_logs_metric_keys():
    torch.manual_seed(0)
    task = ClassificationTask(
        TinyConvNet(), optimizer=partial(torch.optim.Adam, lr=0.05), class_names=["dark", "bright"]
    )
    trainer = quiet_trainer(max_epochs=3)
    dm = BrightnessDataModule()
    trainer.fit(task, datamodule=dm)
    metrics = trainer.callback_metrics
    for key in (
        "train/loss",
        "val/loss",
        "val/acc",
        "val/bal_acc",
        "val/f1_macro",
        "val/auroc_macro",
        "val/recall_dark",
        "val/recall_bright",
    ):
        assert key in metrics, key
    assert metrics["val/bal_acc"] > 0.8
    torch.testing.assert_close(task.class_weight, torch.ones(2))  # balanced counts [32, 32]

    preds = trainer.predict(task, datamodule=dm)
    assert set(preds[0]) == {"sample_id", "probs", "label"}
    assert preds[0]["probs"].shape == (16, 2)
    torch.testing.assert_close(preds[0]["probs"].sum(-1), torch.ones(16))


def test_validation_metrics_values_and_keys():
    # true 0,0,1,1,2,2 ; predicted 0,1,1,1,0,2 -> recalls 0.5, 1.0, 0.5
    pred = torch.tensor([0, 1, 1, 1, 0, 2])
    image = torch.zeros(6, 3, 1, 3)
    image[:, 0, 0, :] = nn.functional.one_hot(pred, 3).float() * 5
    batch = {"image": image, "label": torch.tensor([0, 0, 1, 1, 2, 2])}
    task = ClassificationTask(FixedLogitsNet(), num_classes=3, class_weights=None, class_names=["nev us", "mel", "bcc"])
    task.validation_step(batch, 0)
    values = task.val_metrics.compute()
    assert values["val/acc"].item() == pytest.approx(4 / 6)
    assert values["val/bal_acc"].item() == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert values["val/recall_nev_us"].item() == pytest.approx(0.5)
    assert values["val/recall_mel"].item() == pytest.approx(1.0)
    assert {"val/f1_macro", "val/auroc_macro"} <= set(values)


def test_inverse_frequency_without_datamodule_warns_and_is_unweighted(caplog):
    task = ClassificationTask(TinyConvNet())
    task._trainer = object()  # a trainer without datamodule
    with caplog.at_level("WARNING"):
        task.setup("fit")
    assert "unweighted" in caplog.text
    torch.testing.assert_close(task.class_weight, torch.ones(2))


def test_task_with_vitatt_passes_metadata():
    from dermfuse_models.nets.vitatt import ViTAtt

    torch.manual_seed(0)
    net = ViTAtt(num_classes=2, meta_groups=[1, 1], backbone="vit_tiny_patch16_224", img_size=16)
    task = ClassificationTask(net, class_weights=[1.0, 2.0])
    batch = _batch()
    batch["image"] = torch.randn(4, 3, 16, 16)
    loss = task.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in net.meta_tokenizer.parameters())
