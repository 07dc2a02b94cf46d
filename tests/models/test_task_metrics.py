"""Metrics right by construction: macro averages over the classes present, positive-class metrics,
the ISIC 2018 thresholded Jaccard, and the per-sample test outputs a task keeps."""

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from torch.utils.data import DataLoader
from torchmetrics.classification import BinaryStatScores, MulticlassAUROC

from dermfuse_models.tasks.classification import ClassificationTask
from dermfuse_models.tasks.metrics import classification_metrics
from dermfuse_models.tasks.predictions import TestPredictionLog
from dermfuse_models.tasks.segmentation import JACCARD_THRESHOLD, SegmentationTask, segmentation_scores
from tests.models._support import quiet_trainer


def _nine_class_head(n: int = 400, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """ISIC 2019's shape: 9 outputs, class 8 (UNK) never occurs in the labels."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 8, (n,), generator=g)
    logits = torch.randn(n, 9, generator=g) + 1.5 * torch.nn.functional.one_hot(labels, 9)
    return logits.softmax(dim=1), labels


def test_nine_class_head_macro_metrics_equal_sklearn_over_the_eight_present_classes():
    probs, labels = _nine_class_head()
    metrics = classification_metrics(9, [f"c{k}" for k in range(9)])
    metrics.update(probs, labels)
    values = {k: float(v) for k, v in metrics.compute().items()}
    p, y = probs.double().numpy(), labels.numpy()
    present = range(8)
    auroc = np.mean([roc_auc_score(y == k, p[:, k]) for k in present])
    assert values["auroc_macro"] == pytest.approx(auroc, abs=1e-6)
    pred = p.argmax(axis=1)
    with pytest.warns(UserWarning, match="not in y_true"):  # the model does predict class 8 sometimes
        assert values["bal_acc"] == pytest.approx(balanced_accuracy_score(y, pred), abs=1e-6)
    assert values["f1_macro"] == pytest.approx(f1_score(y, pred, labels=list(present), average="macro"), abs=1e-6)
    assert np.isnan(values["recall_c8"]) and values["recall_c0"] == pytest.approx(recall_score(y == 0, pred == 0))
    # what torchmetrics' own macro reports: the absent class averaged in as 0
    with pytest.warns(UserWarning, match="No positive samples"):
        plain = float(MulticlassAUROC(9, average="macro")(probs, labels))
    assert plain == pytest.approx(auroc * 8 / 9, abs=1e-5) and plain < values["auroc_macro"] - 0.05


def test_the_task_logs_no_recall_for_an_absent_class():
    probs, labels = _nine_class_head(n=64)
    task = ClassificationTask(torch.nn.Identity(), num_classes=9, class_weights=None)
    task.test_metrics.update(probs, labels)
    logged = {}
    task.log_dict = lambda values, **kw: logged.update(values)
    task._log_metrics(task.test_metrics)
    assert "test/recall_0" in logged and "test/recall_8" not in logged and "test/auroc_macro" in logged


# hand-made binary example: 10 samples, positive class 1
BINARY_LABELS = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
BINARY_P1 = torch.tensor([0.9, 0.8, 0.6, 0.3, 0.7, 0.2, 0.1, 0.4, 0.55, 0.05])


def test_binary_positive_class_metrics_equal_sklearn():
    probs = torch.stack([1 - BINARY_P1, BINARY_P1], dim=1)
    metrics = classification_metrics(2, ["BENIGN", "MALIGNANT"])
    metrics.update(probs, BINARY_LABELS)
    values = {k: float(v) for k, v in metrics.compute().items()}
    y, pred = BINARY_LABELS.numpy(), (BINARY_P1 > 0.5).long().numpy()  # tp 3, fp 2, fn 1, tn 4
    assert values["precision_pos"] == pytest.approx(precision_score(y, pred)) == pytest.approx(3 / 5)
    assert values["f1_pos"] == pytest.approx(f1_score(y, pred)) == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    assert values["sensitivity_pos"] == pytest.approx(recall_score(y, pred)) == pytest.approx(3 / 4)
    assert values["specificity_pos"] == pytest.approx(recall_score(1 - y, 1 - pred)) == pytest.approx(4 / 6)
    assert values["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert values["f1_macro"] != pytest.approx(values["f1_pos"])  # the two are different numbers
    assert values["auroc_macro"] == pytest.approx(roc_auc_score(y, BINARY_P1.numpy()), abs=1e-6)


def test_multiclass_tasks_log_no_positive_class_metrics():
    assert not {"precision_pos", "f1_pos"} & set(classification_metrics(3, ["a", "b", "c"]).keys())


def _square(size: int, top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def _challenge_thresholded_jaccard(preds: list[np.ndarray], targets: list[np.ndarray]) -> float:
    """ISIC 2018 Task 1: per image |A & B| / |A | B|, set to 0 below 0.65, averaged over images."""
    scores = []
    for a, b in zip(preds, targets, strict=True):
        union = np.logical_or(a, b).sum()
        jaccard = np.logical_and(a, b).sum() / union if union else 1.0
        scores.append(jaccard if jaccard >= 0.65 else 0.0)
    return float(np.mean(scores))


def test_thresholded_jaccard_equals_the_challenge_definition_on_hand_made_masks():
    target = _square(10, 2, 2, 6)  # 36 pixels
    preds = [
        target.copy(),  # Jaccard 1
        _square(10, 2, 3, 6),  # overlap 30, union 42: 0.714 -> kept
        _square(10, 2, 4, 6),  # overlap 24, union 48: 0.5 -> 0
        _square(10, 3, 3, 6),  # overlap 25, union 47: 0.532 -> 0
    ]
    targets = [target] * len(preds)
    stats = BinaryStatScores(multidim_average="samplewise")
    stats.update(torch.as_tensor(np.stack(preds)).float(), torch.as_tensor(np.stack(targets)).long())
    scores = segmentation_scores(stats.compute())
    expected = _challenge_thresholded_jaccard(preds, targets)
    assert expected == pytest.approx((1 + 30 / 42) / 4)
    assert scores["thresholded_jaccard"].item() == pytest.approx(expected)
    assert scores["iou"].item() == pytest.approx((1 + 30 / 42 + 24 / 48 + 25 / 47) / 4)
    assert JACCARD_THRESHOLD == 0.65


def test_prediction_log_merges_ranks_once_per_sample_and_refuses_batches_without_ids():
    log = TestPredictionLog()
    log.add(["a", "b"], label=torch.tensor([0, 1]), probs=torch.eye(2))
    log.add(["c", "a"], label=torch.tensor([1, 0]), probs=torch.eye(2))  # "a" repeated, as DDP padding does
    out = log.gather()
    assert out["sample_id"].tolist() == ["a", "b", "c"] and out["label"].tolist() == [0, 1, 1]
    assert out["probs"].shape == (3, 2)
    log.add(None, label=torch.tensor([0]))
    assert log.gather() is None


class _Rows(torch.utils.data.Dataset):
    def __init__(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        self.logits, self.labels = probs.log(), labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        image = torch.zeros(3, 1, 2)
        image[0, 0] = self.logits[i]
        return {"image": image, "label": self.labels[i], "sample_id": f"s{i}"}


class _FirstRow(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, image, meta=None, mask=None):
        return {"logits": image[:, 0, 0, :] + self.dummy}


def test_trainer_test_leaves_every_samples_probabilities_in_test_predictions():
    probs = torch.stack([1 - BINARY_P1, BINARY_P1], dim=1)
    task = ClassificationTask(_FirstRow(), num_classes=2, class_weights=None)
    loader = DataLoader(_Rows(probs, BINARY_LABELS), batch_size=4)
    quiet_trainer().test(task, loader, verbose=False)
    out = task.test_predictions
    assert out["sample_id"].tolist() == [f"s{i}" for i in range(10)]
    np.testing.assert_allclose(out["probs"], probs.numpy(), atol=1e-6)
    assert out["label"].tolist() == BINARY_LABELS.tolist()


class _MaskFromImage(torch.nn.Module):
    output_kind = "mask_logits"

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, image, meta=None, mask=None):
        return {"logits": image[:, :1] * self.scale}


def test_segmentation_test_keeps_each_images_pixel_counts():
    target = torch.as_tensor(np.stack([_square(10, 2, 2, 6)] * 3)).float()[:, None]
    pred = torch.as_tensor(np.stack([_square(10, 2, 2, 6), _square(10, 2, 4, 6), np.zeros((10, 10), bool)]))
    image = ((pred.float() * 2 - 1) * 5)[:, None].expand(-1, 3, -1, -1)
    batch = {"image": image, "mask": target, "label": torch.tensor([0, 1, 2]), "sample_id": ["x", "y", "z"]}
    task = SegmentationTask(_MaskFromImage())
    quiet_trainer().test(task, DataLoader([batch], batch_size=None), verbose=False)
    out = task.test_predictions
    assert out["sample_id"].tolist() == ["x", "y", "z"] and out["label"].tolist() == [0, 1, 2]
    np.testing.assert_array_equal(out["stats"], [[36, 0, 64, 0], [24, 12, 52, 12], [0, 0, 64, 36]])
