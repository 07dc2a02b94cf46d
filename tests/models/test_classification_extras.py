"""ClassificationTask extras: ECE, test report (confusion matrix / ROC figures + JSON, wandb), aux losses with MSViT."""

import json
from functools import partial

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import CSVLogger, WandbLogger
from torch.utils.data import DataLoader, Dataset

from dermfuse_models.tasks.classification import ClassificationTask
from dermfuse_models.tasks.classification_report import confusion_summary
from tests.models._support import FixedLogitsNet, quiet_trainer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# true 0,0,1,1,2,2 ; predicted 0,1,1,1,0,2
LABELS = torch.tensor([0, 0, 1, 1, 2, 2])
PREDS = torch.tensor([0, 1, 1, 1, 0, 2])
EXPECTED_MATRIX = [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def _images(preds: torch.Tensor, scale: float = 5.0) -> torch.Tensor:
    image = torch.zeros(len(preds), 3, 1, 3)
    image[:, 0, 0, :] = F.one_hot(preds, 3).float() * scale
    return image


class _FixedSet(Dataset):
    def __init__(self) -> None:
        self.images = _images(PREDS)

    def __len__(self) -> int:
        return len(LABELS)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": LABELS[i], "sample_id": f"s{i}"}


def _trainer(tmp_path, loggers, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        logger=loggers,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        **kwargs,
    )


def test_ece_is_logged_with_the_existing_metric_keys():
    task = ClassificationTask(FixedLogitsNet(), num_classes=3, class_weights=None, class_names=["a", "b", "c"])
    task.validation_step({"image": _images(PREDS), "label": LABELS}, 0)
    values = task.val_metrics.compute()
    assert {"val/acc", "val/bal_acc", "val/f1_macro", "val/auroc_macro", "val/recall_a", "val/ece"} <= set(values)
    confidence = torch.softmax(torch.tensor([5.0, 0.0, 0.0]), 0)[0].item()  # same for every sample: one bin
    accuracy = (PREDS == LABELS).float().mean().item()
    assert values["val/ece"].item() == pytest.approx(abs(confidence - accuracy), abs=1e-5)


def test_test_report_figures_and_confusion_json(tmp_path):
    task = ClassificationTask(FixedLogitsNet(), num_classes=3, class_weights=None, class_names=["nev", "mel", "bcc"])
    trainer = _trainer(tmp_path, CSVLogger(save_dir=tmp_path, name="", version=""))
    metrics = trainer.test(task, DataLoader(_FixedSet(), batch_size=4), verbose=False)[0]
    assert metrics["test/ece"] >= 0 and metrics["test/acc"] == pytest.approx(4 / 6)
    for name in ("confusion_matrix.png", "roc_curves.png"):
        data = (tmp_path / "figures" / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000
    report = json.loads((tmp_path / "test_confusion_matrix.json").read_text())
    assert report["matrix"] == EXPECTED_MATRIX and report["class_names"] == ["nev", "mel", "bcc"]
    assert report["per_class"]["mel"] == {
        "tp": 2,
        "fp": 1,
        "fn": 0,
        "tn": 3,
        "support": 2,
        "recall": 1.0,
        "precision": pytest.approx(2 / 3),
    }
    assert report["per_class"]["bcc"]["recall"] == 0.5 and report["total"] == 6


@pytest.mark.parametrize("disabled_by", ["argument", "no_logger", "fast_dev_run"])
def test_no_report_when_disabled_without_logger_or_in_fast_dev_run(tmp_path, disabled_by):
    task = ClassificationTask(
        FixedLogitsNet(), num_classes=3, class_weights=None, save_test_report=disabled_by != "argument"
    )
    logger = False if disabled_by == "no_logger" else CSVLogger(save_dir=tmp_path, name="", version="")
    trainer = _trainer(tmp_path, logger, fast_dev_run=disabled_by == "fast_dev_run")
    metrics = trainer.test(task, DataLoader(_FixedSet(), batch_size=6), verbose=False)[0]
    assert "test/ece" in metrics
    assert not (tmp_path / "figures").exists() and not (tmp_path / "test_confusion_matrix.json").exists()


class _RecordingWandbLogger(WandbLogger):
    """WandbLogger (mode disabled) that records ``log_image`` calls."""

    def __init__(self, **kwargs) -> None:
        super().__init__(mode="disabled", **kwargs)
        self.images: dict[str, list] = {}

    def log_image(self, key, images, step=None, **kwargs) -> None:
        self.images[key] = list(images)


def test_figures_are_logged_to_wandb_when_present(tmp_path):
    wandb_logger = _RecordingWandbLogger(save_dir=str(tmp_path))
    task = ClassificationTask(FixedLogitsNet(), num_classes=3, class_weights=None)
    _trainer(tmp_path, [CSVLogger(save_dir=tmp_path, name="", version=""), wandb_logger]).test(
        task, DataLoader(_FixedSet(), batch_size=6), verbose=False
    )
    assert set(wandb_logger.images) == {"test/confusion_matrix", "test/roc_curves"}
    assert wandb_logger.images["test/roc_curves"] == [str(tmp_path / "figures" / "roc_curves.png")]


def test_confusion_summary_handles_an_absent_class():
    summary = confusion_summary(torch.tensor([[3, 0], [0, 0]]), ["a", "b"])
    assert summary["per_class"]["b"]["recall"] is None and summary["per_class"]["b"]["precision"] is None


def test_msvit_attention_regulariser_is_added_to_the_task_loss():
    from dermfuse_models.nets.msvit import MSViT

    torch.manual_seed(0)
    net = MSViT(num_classes=3, backbone="vit_tiny_patch16_224", img_size=32, attn_reg_weight=0.5)
    task = ClassificationTask(net, num_classes=3, class_weights=None)
    mask = torch.zeros(2, 1, 32, 32)
    mask[..., :16, :16] = 1.0
    batch = {"image": torch.randn(2, 3, 32, 32), "label": torch.tensor([0, 2]), "mask": mask}
    out = net(batch["image"], mask=mask)
    expected = F.cross_entropy(out["logits"], batch["label"]) + out["aux_losses"]["attn_reg"]
    loss = task.training_step(batch, 0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert 0 < out["aux_losses"]["attn_reg"].item() <= 0.5
    loss.backward()
    assert net.attention_blocks[-1].qkv.weight.grad is not None
    no_mask = task.training_step({k: v for k, v in batch.items() if k != "mask"}, 0)
    assert no_mask.item() == pytest.approx(F.cross_entropy(out["logits"], batch["label"]).item(), rel=1e-5)


class _MaskedSet(Dataset):
    """Images, labels and lesion masks (a different lesion per sample) for MSViT at 32 px."""

    def __init__(self, n: int = 4) -> None:
        g = torch.Generator().manual_seed(3)
        self.images = torch.randn(n, 3, 32, 32, generator=g)
        self.labels = torch.arange(n) % 3
        self.masks = torch.zeros(n, 1, 32, 32)
        for i in range(n):  # lesions of growing size in the top-left corner
            self.masks[i, :, : 8 * (i + 1), : 8 * (i + 1)] = 1.0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": self.labels[i], "mask": self.masks[i], "sample_id": f"s{i}"}


def test_aux_losses_are_logged_per_stage_with_their_batch_weighted_values():
    """``{stage}/aux_attn_reg`` is the epoch mean of MSViT's regulariser, weighted by batch size.

    lr = 0 keeps the weights fixed and ViT-Tiny has no dropout, so the values the trainer logs
    can be computed beforehand from the net itself; batches of 3 and 1 samples make the
    batch-size weighting visible (an unweighted mean of the two batches would differ).
    """
    from dermfuse_models.nets.msvit import MSViT

    torch.manual_seed(0)
    net = MSViT(num_classes=3, backbone="vit_tiny_patch16_224", img_size=32, attn_reg_weight=0.5)
    data = _MaskedSet(4)
    batches = [slice(0, 3), slice(3, 4)]
    net.eval()
    with torch.no_grad():
        outs = [net(data.images[b], mask=data.masks[b]) for b in batches]
    aux = [o["aux_losses"]["attn_reg"].item() for o in outs]
    ce = [F.cross_entropy(o["logits"], data.labels[b]).item() for o, b in zip(outs, batches, strict=True)]
    sizes = [3, 1]
    assert abs(aux[0] - aux[1]) > 1e-3  # the two batches differ, so the weighting matters

    def weighted(values: list[float]) -> float:
        return sum(v * n for v, n in zip(values, sizes, strict=True)) / sum(sizes)

    task = ClassificationTask(net, num_classes=3, class_weights=None, optimizer=partial(torch.optim.Adam, lr=0.0))
    trainer = quiet_trainer(max_epochs=1, num_sanity_val_steps=0)
    loader = DataLoader(data, batch_size=3)
    trainer.fit(task, loader, loader)
    metrics = trainer.callback_metrics
    for stage in ("train", "val"):
        assert metrics[f"{stage}/aux_attn_reg"].item() == pytest.approx(weighted(aux), rel=1e-4), stage
        total = [c + a for c, a in zip(ce, aux, strict=True)]
        assert metrics[f"{stage}/loss"].item() == pytest.approx(weighted(total), rel=1e-4), stage
    test_metrics = trainer.test(task, loader, verbose=False)[0]
    assert test_metrics["test/aux_attn_reg"] == pytest.approx(weighted(aux), rel=1e-4)
    assert {k for k in metrics if "/aux_" in k} == {"train/aux_attn_reg", "val/aux_attn_reg"}
