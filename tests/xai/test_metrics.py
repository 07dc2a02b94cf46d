"""Localisation, deletion faithfulness, rank agreement and model randomisation: known answers on toy maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from dermfuse_xai import (
    deletion_curve,
    deletion_scores,
    energy_in_mask,
    mask_fraction,
    pointing_hit,
    randomized_copy,
    spearman,
)


def _square_mask(size: int = 16, lo: int = 4, hi: int = 8) -> torch.Tensor:
    m = torch.zeros(1, 1, size, size)
    m[..., lo:hi, lo:hi] = 1.0
    return m


def test_energy_in_mask_known_answers():
    mask = _square_mask()
    assert energy_in_mask(mask[:, 0], mask).item() == pytest.approx(1.0)
    uniform = torch.ones(1, 16, 16)
    # a map that knows nothing puts exactly the mask's area share inside it: the chance level
    assert energy_in_mask(uniform, mask).item() == pytest.approx(mask_fraction(mask).item()) == pytest.approx(16 / 256)
    # negative saliency is not energy
    signed = torch.zeros(1, 16, 16)
    signed[0, 5, 5], signed[0, 0, 0] = 1.0, -5.0
    assert energy_in_mask(signed, mask).item() == pytest.approx(1.0)
    half = torch.zeros(1, 16, 16)
    half[0, 5, 5], half[0, 12, 12] = 1.0, 1.0
    assert energy_in_mask(half, mask).item() == pytest.approx(0.5)
    assert math.isnan(energy_in_mask(torch.zeros(1, 16, 16), mask).item())  # nothing positive
    assert math.isnan(energy_in_mask(uniform, torch.zeros(1, 1, 16, 16)).item())  # empty mask
    # masks at another resolution are resized (nearest)
    assert energy_in_mask(torch.nn.functional.interpolate(mask, size=32)[:, 0], mask).item() == pytest.approx(1.0)


def test_pointing_hit_and_tolerance():
    mask = _square_mask()
    inside, outside = torch.zeros(1, 16, 16), torch.zeros(1, 16, 16)
    inside[0, 6, 6] = 1.0
    outside[0, 9, 9] = 1.0  # one pixel diagonally off the square's corner (7, 7)
    assert pointing_hit(inside, mask).item() == 1.0
    assert pointing_hit(outside, mask).item() == 0.0
    assert pointing_hit(outside, mask, tolerance=2).item() == 1.0
    # a constant map (e.g. an all-zero Grad-CAM) points nowhere: NaN, not a hit on every tie
    flat = pointing_hit(torch.stack([torch.ones(16, 16), torch.zeros(16, 16), inside[0]]), torch.cat([mask] * 3))
    assert torch.isnan(flat[:2]).all() and flat[2].item() == 1.0


class RegionScore(nn.Module):
    """Score = mean brightness of a fixed region: exactly the pixels a faithful map should rank first."""

    def __init__(self, region: torch.Tensor) -> None:
        super().__init__()
        self.region = region

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images.mean(1) * self.region).sum(dim=(1, 2)) / self.region.sum()


def test_deletion_curve_rewards_the_faithful_order():
    region = _square_mask()[0, 0]
    score = RegionScore(region)
    image = torch.ones(3, 16, 16)
    fractions, curve = deletion_curve(score, image, region, steps=16, order="saliency")
    assert fractions[0] == 0 and fractions[-1] == 1 and len(curve) == 17
    assert curve[0] == pytest.approx(1.0) and curve[-1] == pytest.approx(0.0)  # filled with 0 (the mean)
    assert curve[1] == pytest.approx(0.0)  # the 16 region pixels are the first 1/16 removed
    assert np.all(np.diff(curve) <= 1e-6)
    good = deletion_scores(score, image, region, steps=16)
    bad = deletion_scores(score, image, 1 - region, steps=16)  # ranks the region last
    assert good["deletion_auc"] < good["deletion_auc_random"] and good["deletion_auc_gain"] > 0.3
    assert bad["deletion_auc_gain"] < 0
    assert good["deletion_auc_random"] == pytest.approx(bad["deletion_auc_random"])  # same seed, same order
    blurred = deletion_scores(score, image, region, steps=4, fill="blur")
    assert blurred["deletion_auc"] > good["deletion_auc"]  # blurring a flat image removes little


def test_spearman_rank_agreement():
    a = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(spearman(a, a), torch.ones(2))
    assert torch.allclose(spearman(a, -a), -torch.ones(2))
    assert torch.allclose(spearman(a, torch.exp(3 * a)), torch.ones(2))  # rank-based: monotone maps agree
    assert torch.isnan(spearman(a, torch.ones(2, 8, 8))).all()


def test_randomized_copy_reinitialises_every_weight_and_leaves_the_original(kit):
    net = kit.make_net("vitatt")
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.5)  # "trained" weights: none equals its initial value
    before = {k: v.clone() for k, v in net.state_dict().items()}
    clone = randomized_copy(net, seed=1)
    again = randomized_copy(net, seed=1)
    for name, p in clone.named_parameters():
        assert not torch.equal(p, dict(net.named_parameters())[name]), name
        torch.testing.assert_close(p, dict(again.named_parameters())[name])  # deterministic per seed
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not clone.training and clone is not net
