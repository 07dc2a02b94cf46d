"""Test-time augmentation: the views are the flips and quarter turns of the square, exactly undone for masks."""

from __future__ import annotations

import pytest
import torch

from dermfuse_models.runner.tta import TTA_VIEWS, check_mode, tta_probabilities, unview, view


class _Task:
    """A stand-in task: ``logits = net(image)``; softmax for classes, sigmoid for masks."""

    def __init__(self, net):
        self.net = net

    def __call__(self, batch):
        return {"logits": self.net(batch["image"])}

    @staticmethod
    def probabilities(logits):
        return logits.sigmoid() if logits.ndim == 4 else logits.softmax(-1)


def test_views_are_the_symmetries_of_the_square_and_unview_undoes_them():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    for k, flip in TTA_VIEWS["d4"]:
        assert torch.equal(unview(view(x, k, flip), k, flip), x)
    assert len({tuple(view(x, k, f).flatten().tolist()) for k, f in TTA_VIEWS["d4"]}) == 8
    flips = [view(x, k, f) for k, f in TTA_VIEWS["flip"]]
    expected = [x, torch.flip(x, (-1,)), torch.flip(x, (-2,)), torch.flip(x, (-2, -1))]
    assert all(torch.equal(a, b) for a, b in zip(flips, expected))  # identity, left-right, up-down, both
    with pytest.raises(ValueError, match="choose one of"):
        check_mode("rotate")


def test_classification_averages_the_softmax_over_the_views():
    torch.manual_seed(0)
    linear = torch.nn.Linear(3 * 4 * 4, 5)
    task = _Task(lambda image: linear(image.flatten(1)))
    image = torch.randn(2, 3, 4, 4)
    batch = {"image": image, "mask": torch.zeros(2, 1, 4, 4)}
    probs = tta_probabilities(task, batch, "flip")
    by_hand = torch.stack(
        [
            task({"image": v})["logits"].softmax(-1)
            for v in (image, torch.flip(image, (-1,)), torch.flip(image, (-2,)), torch.flip(image, (-2, -1)))
        ]
    ).mean(0)
    torch.testing.assert_close(probs, by_hand)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))
    torch.testing.assert_close(tta_probabilities(task, batch, "none"), task(batch)["logits"].softmax(-1))
    assert not torch.allclose(probs, tta_probabilities(task, batch, "none"))


def test_segmentation_turns_each_view_back_before_averaging():
    image = torch.randn(2, 3, 8, 8)
    equivariant = _Task(lambda x: x[:, :1] * 3.0)  # a mask that moves with the image
    for mode in TTA_VIEWS:
        torch.testing.assert_close(tta_probabilities(equivariant, {"image": image}, mode), (image[:, :1] * 3).sigmoid())
    ramp = torch.linspace(-2, 2, 8).expand(8, 8)
    fixed = _Task(lambda x: x[:, :1] * 0 + ramp)  # the same mask whatever the view: TTA averages its inverse views
    probs = tta_probabilities(fixed, {"image": image}, "flip")
    views = TTA_VIEWS["flip"]
    expected = torch.stack([unview(ramp.expand(2, 1, 8, 8), k, f).sigmoid() for k, f in views]).mean(0)
    torch.testing.assert_close(probs, expected)
    assert tta_probabilities(fixed, {"image": image}, "none", size=(16, 16)).shape == (2, 1, 16, 16)
