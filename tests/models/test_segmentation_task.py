"""SegmentationTask: metrics on constructed masks, deep-supervision loss, learning (optimisation: test_task_base.py)."""

import time
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.losses import DiceCELoss
from monai.networks.nets import BasicUNet
from torch.utils.data import DataLoader, Dataset
from torchmetrics.classification import BinaryStatScores

from dermfuse_data.synthetic.lesions import draw_lesion
from dermfuse_models.losses import halving_weights
from dermfuse_models.protocol import ImageOnlyNet
from dermfuse_models.tasks.segmentation import METRIC_NAMES, SegmentationTask, segmentation_scores
from tests.models._support import quiet_trainer

pytestmark = pytest.mark.usefixtures("single_thread")


class LogitsFromImage(nn.Module):
    """Returns channel 0 of the image as logits (so tests choose the prediction exactly)."""

    def __init__(self, deep_sizes: tuple[int, ...] = (), aux: float | None = None) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.deep_sizes, self.aux = deep_sizes, aux

    output_kind = "mask_logits"

    def forward(self, image: torch.Tensor, meta: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> dict:
        logits = image[:, :1] * self.scale
        out: dict = {"logits": logits}
        if self.training and self.deep_sizes:
            out["deep_logits"] = [F.avg_pool2d(logits, logits.shape[-1] // s) for s in self.deep_sizes]
        if self.aux is not None:
            out["aux_losses"] = {"reg": torch.tensor(self.aux)}
        return out


def _batch_from(pred: torch.Tensor, target: torch.Tensor) -> dict:
    """Batch whose net output (LogitsFromImage) thresholds exactly to ``pred``."""
    image = (pred.float() * 2 - 1).expand(-1, 3, -1, -1) * 5
    return {"image": image, "mask": target.float(), "sample_id": [f"s{i}" for i in range(len(pred))]}


def _stats(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    metric = BinaryStatScores(multidim_average="samplewise")
    metric.update(pred.float(), target.long())
    return metric.compute()


def _masks() -> dict[str, torch.Tensor]:
    full = torch.zeros(1, 1, 8, 8)
    full[..., 2:6, 2:6] = 1  # 16 pixels
    left = torch.zeros(1, 1, 8, 8)
    left[..., :, :2] = 1  # 16 pixels, disjoint from `full`
    return {"lesion": full, "disjoint": left, "empty": torch.zeros(1, 1, 8, 8)}


# ------------------------------------------------------------------------------------ metrics
def test_scores_perfect_disjoint_and_empty_masks():
    m = _masks()
    perfect = segmentation_scores(_stats(m["lesion"], m["lesion"]))
    assert all(perfect[k].item() == pytest.approx(1.0) for k in METRIC_NAMES)

    disjoint = segmentation_scores(_stats(m["disjoint"], m["lesion"]))
    assert disjoint["dice"].item() == 0 and disjoint["iou"].item() == 0
    assert disjoint["sensitivity"].item() == 0 and disjoint["precision"].item() == 0
    assert disjoint["pixel_acc"].item() == pytest.approx(32 / 64)
    assert disjoint["specificity"].item() == pytest.approx(32 / 48)

    empty = segmentation_scores(_stats(m["empty"], m["empty"]))
    assert all(empty[k].item() == pytest.approx(1.0) for k in METRIC_NAMES)

    false_alarm = segmentation_scores(_stats(m["lesion"], m["empty"]))
    assert false_alarm["dice"].item() == 0 and false_alarm["iou"].item() == 0
    assert false_alarm["specificity"].item() == pytest.approx(48 / 64)


def test_scores_partial_overlap_are_per_image_means():
    target = torch.zeros(2, 1, 4, 4)
    target[0, 0, 0, :4] = 1  # 4 pixels
    pred = torch.zeros(2, 1, 4, 4)
    pred[0, 0, 0, :2] = 1  # 2 TP
    pred[0, 0, 1, :2] = 1  # 2 FP, 2 FN
    # image 1: empty/empty -> 1
    scores = segmentation_scores(_stats(pred, target))
    assert scores["dice"].item() == pytest.approx((0.5 + 1.0) / 2)
    assert scores["iou"].item() == pytest.approx((2 / 6 + 1.0) / 2)
    assert scores["precision"].item() == pytest.approx((0.5 + 1.0) / 2)
    assert scores["sensitivity"].item() == pytest.approx((0.5 + 1.0) / 2)
    assert scores["pixel_acc"].item() == pytest.approx((12 / 16 + 1.0) / 2)


def test_task_validation_metrics_and_ddp_style_merge():
    m = _masks()
    pred = torch.cat([m["lesion"], m["disjoint"], m["empty"]])
    target = torch.cat([m["lesion"], m["lesion"], m["empty"]])
    task = SegmentationTask(LogitsFromImage())
    task.eval()
    task.validation_step(_batch_from(pred[:2], target[:2]), 0)
    other_rank = SegmentationTask(LogitsFromImage()).eval()
    other_rank.validation_step(_batch_from(pred[2:], target[2:]), 0)
    task.val_stats.merge_state(other_rank.val_stats)  # what DDP's all-gather of the states does
    scores = segmentation_scores(task.val_stats.compute())
    assert scores["dice"].item() == pytest.approx((1 + 0 + 1) / 3)
    assert scores["iou"].item() == pytest.approx((1 + 0 + 1) / 3)


# ------------------------------------------------------------------------------------ loss
def test_loss_with_deep_supervision_is_the_weighted_sum():
    torch.manual_seed(0)
    image = torch.randn(2, 3, 16, 16)
    mask = (torch.rand(2, 1, 16, 16) > 0.6).float()
    batch = {"image": image, "mask": mask}
    base = DiceCELoss(sigmoid=True)
    logits = image[:, :1]
    deep = [F.avg_pool2d(logits, 4), F.avg_pool2d(logits, 2)]  # 4x4 (coarse), 8x8 (fine)

    def up(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t, size=(16, 16), mode="bilinear", align_corners=False)

    task = SegmentationTask(LogitsFromImage(deep_sizes=(4, 8)))
    expected = base(logits, mask) + 0.25 * base(up(deep[0]), mask) + 0.5 * base(up(deep[1]), mask)
    assert task.training_step(batch, 0).item() == pytest.approx(expected.item(), rel=1e-5)
    assert halving_weights(2) == [0.25, 0.5]

    weighted = SegmentationTask(LogitsFromImage(deep_sizes=(4, 8)), deep_supervision_weights=[1.0, 0.0])
    expected = base(logits, mask) + base(up(deep[0]), mask)
    assert weighted.training_step(batch, 0).item() == pytest.approx(expected.item(), rel=1e-5)

    wrong = SegmentationTask(LogitsFromImage(deep_sizes=(4, 8)), deep_supervision_weights=[1.0])
    with pytest.raises(ValueError, match="deep_supervision_weights has 1 values but the net returned 2"):
        wrong.training_step(batch, 0)


def test_loss_weights_and_aux_losses():
    torch.manual_seed(0)
    batch = {"image": torch.randn(2, 3, 8, 8), "mask": (torch.rand(2, 1, 8, 8) > 0.5).float()}
    logits = batch["image"][:, :1]
    dice_only = SegmentationTask(LogitsFromImage(), dice_weight=1.0, bce_weight=0.0)
    expected = DiceCELoss(sigmoid=True, lambda_ce=0.0)(logits, batch["mask"])
    assert dice_only.training_step(batch, 0).item() == pytest.approx(expected.item(), rel=1e-5)
    plain = SegmentationTask(LogitsFromImage()).training_step(batch, 0)
    with_aux = SegmentationTask(LogitsFromImage(aux=0.3)).training_step(batch, 0)
    assert with_aux.item() == pytest.approx(plain.item() + 0.3, rel=1e-5)
    with pytest.raises(ValueError, match="mask"):
        SegmentationTask(LogitsFromImage()).training_step({"image": batch["image"]}, 0)


def test_meta_is_passed_to_the_net_and_never_the_mask():
    class MetaNet(nn.Module):
        output_kind = "mask_logits"

        def forward(
            self, image: torch.Tensor, meta: torch.Tensor | None = None, mask: torch.Tensor | None = None
        ) -> dict:
            assert mask is None, "the mask is the segmentation target, not an input"
            return {"logits": image[:, :1] + meta.sum(1).view(-1, 1, 1, 1)}

    batch = {"image": torch.randn(2, 3, 8, 8), "meta": torch.ones(2, 3), "mask": torch.zeros(2, 1, 8, 8)}
    assert torch.allclose(SegmentationTask(MetaNet())(batch)["logits"], batch["image"][:, :1] + 3)
    assert SegmentationTask(LogitsFromImage())(batch)["logits"].shape == (2, 1, 8, 8)
    SegmentationTask(MetaNet()).training_step(batch, 0)  # the loss still sees the mask


def test_a_bare_tensor_output_is_a_clear_error():
    conv = nn.Conv2d(3, 1, 1)
    batch = {"image": torch.randn(2, 3, 8, 8), "mask": torch.zeros(2, 1, 8, 8)}
    with pytest.raises(TypeError, match="ImageOnlyNet"):
        SegmentationTask(conv)(batch)
    assert SegmentationTask(ImageOnlyNet(conv))(batch)["logits"].shape == (2, 1, 8, 8)


def test_threshold_must_be_a_probability():
    with pytest.raises(ValueError, match="threshold"):
        SegmentationTask(LogitsFromImage(), threshold=1.5)


# ------------------------------------------------------------------------------------ learning
class LesionMasks(Dataset):
    """Synthetic dermoscopy-like images (``draw_lesion``) with their lesion masks, 32 px."""

    def __init__(self, n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        drawn = [draw_lesion(rng, 32, i % 3, 3) for i in range(n)]
        self.images = torch.stack([torch.from_numpy(img).permute(2, 0, 1).float() / 127.5 - 1 for img, _ in drawn])
        self.masks = torch.stack([torch.from_numpy(mask)[None].float() for _, mask in drawn])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "mask": self.masks[i], "sample_id": f"s{i}"}


def test_tiny_unet_learns_to_segment_synthetic_lesions():
    torch.manual_seed(0)
    train, val = LesionMasks(96, seed=0), LesionMasks(32, seed=1)
    net = ImageOnlyNet(BasicUNet(spatial_dims=2, in_channels=3, out_channels=1, features=(8, 8, 16, 16, 32, 8)))
    task = SegmentationTask(net, optimizer=partial(torch.optim.Adam, lr=1e-2))
    trainer = quiet_trainer(max_epochs=8, num_sanity_val_steps=0)
    start = time.perf_counter()
    trainer.fit(task, DataLoader(train, batch_size=16, shuffle=True), DataLoader(val, batch_size=16))
    elapsed = time.perf_counter() - start
    metrics = trainer.callback_metrics
    for key in ("train/loss", "val/loss", *(f"val/{k}" for k in METRIC_NAMES)):
        assert key in metrics, key
    assert metrics["val/dice"] > 0.7, (metrics["val/dice"], elapsed)

    preds = trainer.predict(task, DataLoader(val, batch_size=16))
    assert set(preds[0]) == {"sample_id", "probs"}
    assert preds[0]["probs"].shape == (16, 1, 32, 32)
    assert preds[0]["probs"].min() >= 0 and preds[0]["probs"].max() <= 1


def test_task_trains_eamnet_with_deep_supervision():
    from dermfuse_models.nets.eamnet import EAMNet

    torch.manual_seed(0)
    net = EAMNet(base_channels=8, blocks_per_stage=1, memory_size=8, fusion_channels=4)
    task = SegmentationTask(net)
    batch = {"image": torch.randn(2, 3, 32, 32), "mask": (torch.rand(2, 1, 32, 32) > 0.5).float()}
    task.train()
    loss = task.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert net.msef.classifier.weight.grad is not None  # deep outputs are in the loss
    task.eval()
    with torch.no_grad():
        task.validation_step(batch, 0)
    assert set(segmentation_scores(task.val_stats.compute())) == set(METRIC_NAMES)


def test_loss_terms_and_aux_losses_are_logged_with_their_values():
    """``train/loss_main``, ``train/loss_deep``, ``{stage}/aux_<name>`` and ``{stage}/loss`` values.

    lr = 0 keeps the net fixed, so the logged epoch means (weighted by batch size: batches of
    3 and 1 images) can be computed beforehand. In eval mode the net returns no deep outputs:
    ``val/loss`` is the main loss + aux, and the deep/main split is only logged in training.
    """
    torch.manual_seed(0)
    images = torch.randn(4, 3, 16, 16)
    masks = (torch.rand(4, 1, 16, 16) > 0.6).float()
    base = DiceCELoss(sigmoid=True)

    def up(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t, size=(16, 16), mode="bilinear", align_corners=False)

    sizes, main, deep = [3, 1], [], []
    for b in (slice(0, 3), slice(3, 4)):
        logits, target = images[b, :1], masks[b]
        main.append(base(logits, target).item())
        coarse, fine = up(F.avg_pool2d(logits, 4)), up(F.avg_pool2d(logits, 2))  # halving weights 1/4, 1/2
        deep.append((0.25 * base(coarse, target) + 0.5 * base(fine, target)).item())

    def weighted(values: list[float]) -> float:
        return sum(v * n for v, n in zip(values, sizes, strict=True)) / sum(sizes)

    class Pairs(Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> dict:
            return {"image": images[i], "mask": masks[i]}

    task = SegmentationTask(LogitsFromImage(deep_sizes=(4, 8), aux=0.3), optimizer=partial(torch.optim.Adam, lr=0.0))
    trainer = quiet_trainer(max_epochs=1, num_sanity_val_steps=0)
    loader = DataLoader(Pairs(), batch_size=3)
    trainer.fit(task, loader, loader)
    metrics = {k: v.item() for k, v in trainer.callback_metrics.items()}
    assert metrics["train/loss_main"] == pytest.approx(weighted(main), rel=1e-5)
    assert metrics["train/loss_deep"] == pytest.approx(weighted(deep), rel=1e-5)
    assert metrics["train/aux_reg"] == pytest.approx(0.3, rel=1e-6)
    assert metrics["train/loss"] == pytest.approx(weighted(main) + weighted(deep) + 0.3, rel=1e-5)
    assert metrics["val/aux_reg"] == pytest.approx(0.3, rel=1e-6)
    assert metrics["val/loss"] == pytest.approx(weighted(main) + 0.3, rel=1e-5)
    assert not {"val/loss_main", "val/loss_deep"} & set(metrics)
