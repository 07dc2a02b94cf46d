"""Grouped bootstrap intervals: the weighted metrics equal scikit-learn's and the logged ones, the
intervals cover the truth at their nominal rate, and grouping keeps duplicated samples from narrowing them."""

import time

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from dermfuse_models.runner.bootstrap import grouped_bootstrap, mean_of, resample_weights
from dermfuse_models.runner.weighted_metrics import classification_evaluator, segmentation_evaluator
from dermfuse_models.tasks.metrics import classification_metrics
from dermfuse_models.tasks.segmentation import segmentation_scores


def _predictions(n: int = 300, k: int = 4, seed: int = 0, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.2 * np.eye(k)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return (np.round(probs, 1) if ties else probs.astype(np.float32).astype(np.float64)), labels


@pytest.mark.parametrize("ties", [False, True])
def test_weighted_classification_metrics_equal_sklearn_with_sample_weights(ties):
    probs, labels = _predictions(ties=ties)
    weights = np.random.default_rng(1).integers(0, 4, len(labels)).astype(float)  # a bootstrap draw
    values = {k: v[0] for k, v in classification_evaluator(probs, labels, list("abcd"))(weights).items()}
    pred = probs.argmax(axis=1)
    assert values["acc"] == pytest.approx(accuracy_score(labels, pred, sample_weight=weights))
    assert values["bal_acc"] == pytest.approx(balanced_accuracy_score(labels, pred, sample_weight=weights))
    assert values["f1_macro"] == pytest.approx(f1_score(labels, pred, average="macro", sample_weight=weights))
    aurocs = [roc_auc_score(labels == c, probs[:, c], sample_weight=weights) for c in range(4)]
    assert values["auroc_macro"] == pytest.approx(np.mean(aurocs))
    assert values["recall_b"] == pytest.approx(recall_score(labels == 1, pred == 1, sample_weight=weights))


def test_weighted_binary_metrics_equal_sklearn_with_sample_weights():
    probs, labels = _predictions(k=2)
    weights = np.random.default_rng(2).integers(0, 3, len(labels)).astype(float)
    values = {k: v[0] for k, v in classification_evaluator(probs, labels, ["neg", "pos"])(weights).items()}
    pred = (probs[:, 1] > 0.5).astype(int)
    assert values["precision_pos"] == pytest.approx(precision_score(labels, pred, sample_weight=weights))
    assert values["sensitivity_pos"] == pytest.approx(recall_score(labels, pred, sample_weight=weights))
    assert values["specificity_pos"] == pytest.approx(recall_score(1 - labels, 1 - pred, sample_weight=weights))
    assert values["f1_pos"] == pytest.approx(f1_score(labels, pred, sample_weight=weights))


@pytest.mark.parametrize("k", [2, 9])
def test_unit_weights_give_the_logged_torchmetrics_values(k):
    probs, labels = _predictions(n=200, k=k)
    labels = np.where(labels == k - 1, 0, labels) if k == 9 else labels  # k=9: the last class absent (UNK)
    names = [f"c{i}" for i in range(k)]
    logged = classification_metrics(k, names)
    logged.update(torch.as_tensor(probs, dtype=torch.float32), torch.as_tensor(labels))
    ours = classification_evaluator(probs, labels, names)(np.ones(len(labels)))
    for key, value in logged.compute().items():
        if np.isnan(float(value)):
            assert np.isnan(ours[key][0]), key
        else:
            assert ours[key][0] == pytest.approx(float(value), abs=1e-5), key


def test_segmentation_evaluator_is_the_weighted_per_image_mean():
    rng = np.random.default_rng(3)
    stats = rng.integers(0, 50, size=(20, 4)).astype(float)
    stats[0] = [0, 0, 100, 0]  # empty target, empty prediction
    ones = segmentation_evaluator(stats)(np.ones(20))
    logged = segmentation_scores(torch.as_tensor(stats))
    assert {k: ones[k][0] for k in logged} == pytest.approx({k: float(v) for k, v in logged.items()})
    twice_first = segmentation_evaluator(stats)(np.r_[2.0, np.ones(19)])
    duplicated = segmentation_scores(torch.as_tensor(np.vstack([stats[:1], stats])))
    assert twice_first["dice"][0] == pytest.approx(float(duplicated["dice"]))


def test_resample_weights_count_each_drawn_group_for_each_of_its_samples():
    sample_group = np.array([0, 0, 1, 2, 2, 2])
    weights = resample_weights(np.array([[0, 0, 2], [1, 1, 1]]), sample_group, 3)
    np.testing.assert_array_equal(weights, [[2, 2, 0, 1, 1, 1], [0, 0, 3, 0, 0, 0]])


def _accuracy_evaluator(correct: np.ndarray):
    def evaluate(weights):
        w = np.atleast_2d(weights)
        return {"acc": (w @ correct) / w.sum(axis=1)}

    return evaluate


def test_95_percent_interval_covers_the_true_accuracy_at_its_nominal_rate():
    true_accuracy, n, simulations = 0.8, 120, 200
    rng = np.random.default_rng(0)
    covered = 0
    for i in range(simulations):
        correct = (rng.random(n) < true_accuracy).astype(float)
        lo, hi = grouped_bootstrap(_accuracy_evaluator(correct), np.arange(n), seed=i).intervals["acc"]
        covered += lo <= true_accuracy <= hi
    assert 0.90 <= covered / simulations <= 0.99, covered


def test_duplicating_samples_inside_their_groups_keeps_the_grouped_interval_width():
    rng = np.random.default_rng(5)
    groups = np.repeat(np.arange(80), rng.integers(1, 4, 80))  # 80 patients, 1-3 images each
    correct = (rng.random(80) < 0.7)[groups].astype(float)  # a patient's images share the outcome

    def width(values, group_ids) -> float:
        lo, hi = grouped_bootstrap(_accuracy_evaluator(values), group_ids).intervals["acc"]
        return hi - lo

    grouped = width(correct, groups)
    doubled, doubled_groups = np.repeat(correct, 2), np.repeat(groups, 2)
    assert width(doubled, doubled_groups) == pytest.approx(grouped, rel=0.15)
    # resampling images one by one treats the copies as new evidence: the interval shrinks (~1/sqrt(2))
    ungrouped_doubled = width(doubled, np.arange(doubled.size))
    assert ungrouped_doubled < 0.8 * grouped


def test_a_metric_undefined_on_some_resamples_gets_the_interval_of_the_others():
    probs, labels = _predictions(n=60, k=3, seed=4)
    labels[:] = np.where(labels == 2, 0, labels)
    labels[0] = 2  # one sample of class 2: absent from ~37% of resamples
    result = grouped_bootstrap(classification_evaluator(probs, labels, list("abc")), np.arange(60))
    lo, hi = result.intervals["recall_c"]
    assert np.isfinite([lo, hi]).all() and 0 <= lo <= hi <= 1
    assert result.n_groups == 60 and result.n_resamples == 1000


def test_mean_of_seeds_scores_every_run_on_the_same_draw():
    a, b = np.array([1.0, 0.0, 1.0, 1.0]), np.array([0.0, 0.0, 1.0, 1.0])
    mean = mean_of([_accuracy_evaluator(a), _accuracy_evaluator(b)])
    assert mean(np.ones(4))["acc"][0] == pytest.approx((0.75 + 0.5) / 2)
    assert mean(np.array([[2.0, 0, 0, 0]]))["acc"][0] == pytest.approx(0.5)


def test_fewer_than_two_groups_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2 groups"):
        grouped_bootstrap(_accuracy_evaluator(np.ones(3)), ["p1", "p1", "p1"])


def test_1000_resamples_of_600_samples_and_9_classes_take_seconds():
    probs, labels = _predictions(n=600, k=9)
    start = time.perf_counter()
    grouped_bootstrap(classification_evaluator(probs, labels, [str(i) for i in range(9)]), np.arange(600) // 2)
    assert time.perf_counter() - start < 15  # ~0.4 s alone on this machine; generous for a shared CPU
