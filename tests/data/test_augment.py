"""Augmentation recipes: the CPU (torchvision, per sample) and device (kornia, per batch) backends draw
the same distributions and keep image and mask aligned; recipes parse with clear errors."""

from __future__ import annotations

import kornia.augmentation as K
import numpy as np
import pytest
import torch
from scipy import stats
from torchvision import tv_tensors
from torchvision.transforms import v2

from dermfuse_data.augment import PRESETS, parse_augment
from dermfuse_data.device_augment import DeviceBatchTransform
from dermfuse_data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transform

#: a test whose p-value falls below this fails: seeded, so a pass is stable
P_MIN = 1e-3


def _unnormalise(image: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    return image * std + mean


def _marker_image(side: int = 6) -> torch.Tensor:
    """uint8 (3, side, side) whose 8 mirror/turn images are all different (an 'L' in one corner)."""
    image = torch.zeros(3, side, side, dtype=torch.uint8)
    image[:, 0, :3] = 255
    image[:, 1, 0] = 255
    return image


def _dihedral_outcomes(images: torch.Tensor, marker: torch.Tensor) -> list[int]:
    """Index 0..7 of which mirror/turn of ``marker`` each image is (-1: none)."""
    bright = (images.float().mean(1) > 0.5 * images.float().max()).numpy()
    candidates = []
    for flip in (False, True):
        base = torch.flip(marker, (2,)) if flip else marker
        candidates += [torch.rot90(base, k, (1, 2)).float().mean(0).numpy() > 127 for k in range(4)]
    return [next((i for i, c in enumerate(candidates) if (b == c).all()), -1) for b in bright]


def _cpu_outcomes(recipe, n: int, marker) -> list[int]:
    transform = build_transform(True, recipe)
    out = torch.stack([_unnormalise(transform(tv_tensors.Image(marker.clone()))) for _ in range(n)])
    return _dihedral_outcomes(out, marker)


def _device_outcomes(recipe, n: int, marker) -> list[int]:
    batch = {"image": marker.expand(n, -1, -1, -1).clone()}
    out = DeviceBatchTransform(recipe, tuple(marker.shape[-2:]))(batch, train=True)["image"]
    return _dihedral_outcomes(_unnormalise(out), marker)


@pytest.mark.parametrize(
    ("recipe", "outcomes"), [([{"name": "rotate90"}], 4), ([{"name": "flip"}, {"name": "rotate90"}], 8)]
)
def test_quarter_turns_and_flips_cover_their_orientations_equally_on_both_backends(recipe, outcomes):
    torch.manual_seed(0)
    marker, n = _marker_image(), 1600
    cpu, device = _cpu_outcomes(recipe, n, marker), _device_outcomes(recipe, n, marker)
    assert -1 not in cpu and -1 not in device  # exact mirrors and turns, nothing else
    assert max(cpu) < outcomes and max(device) < outcomes
    counts = np.array([np.bincount(cpu, minlength=outcomes), np.bincount(device, minlength=outcomes)])
    assert stats.chisquare(counts[0]).pvalue > P_MIN and stats.chisquare(counts[1]).pvalue > P_MIN  # uniform
    assert stats.chi2_contingency(counts).pvalue > P_MIN  # and the same on both


def test_a_single_horizontal_flip_has_the_same_rate_on_both_backends():
    torch.manual_seed(1)
    marker, n = _marker_image(), 1000
    recipe = [{"name": "flip", "vertical": False, "p": 0.2}]
    cpu, device = _cpu_outcomes(recipe, n, marker), _device_outcomes(recipe, n, marker)
    assert set(cpu) <= {0, 4} and set(device) <= {0, 4}  # identity or the mirror
    rates = np.mean(np.array(cpu) == 4), np.mean(np.array(device) == 4)
    assert rates[0] == pytest.approx(0.2, abs=0.04) and rates[1] == pytest.approx(0.2, abs=0.04)


def _kornia_module(transform: DeviceBatchTransform, kind: type) -> K.AugmentationBase2D:
    return next(m for m in transform.image_only.children() if isinstance(m, kind))


def test_affine_parameters_have_the_same_distribution_on_both_backends():
    torch.manual_seed(2)
    side, n = 224, 3000
    recipe = [{"name": "affine", "degrees": 20, "translate": [0.1, 0.05], "scale": [0.8, 1.2]}]
    (cpu_affine,) = build_transform(True, recipe).transforms[:1]
    image = tv_tensors.Image(torch.zeros(3, side, side, dtype=torch.uint8))
    cpu = [cpu_affine.make_params([image]) for _ in range(n)]
    kornia = _kornia_module(DeviceBatchTransform(recipe, (side, side)), K.RandomAffine)
    dev = kornia.forward_parameters(torch.Size([n, 3, side, side]))

    angle_cpu = np.array([p["angle"] for p in cpu])
    assert stats.ks_2samp(angle_cpu, dev["angle"].numpy()).pvalue > P_MIN
    assert angle_cpu.min() >= -20 and angle_cpu.max() <= 20 and dev["angle"].abs().max() <= 20
    scale_cpu = np.array([p["scale"] for p in cpu])
    assert stats.ks_2samp(scale_cpu, dev["scale"][:, 0].numpy()).pvalue > P_MIN
    assert torch.equal(dev["scale"][:, 0], dev["scale"][:, 1])  # isotropic, as torchvision's
    # torchvision rounds the shift to whole pixels; kornia's rounded shift has the same distribution
    for axis, limit in ((0, 0.1 * side), (1, 0.05 * side)):
        shift_cpu = np.array([p["translate"][axis] for p in cpu])
        shift_dev = dev["translations"][:, axis].round().numpy().astype(int)
        values = np.arange(-int(limit) - 1, int(limit) + 2)
        table = np.array([[np.sum(s == v) for v in values] for s in (shift_cpu, shift_dev)])
        table = table[:, table.sum(0) > 0]
        assert stats.chi2_contingency(table).pvalue > P_MIN, axis
        assert np.abs(shift_cpu).max() <= limit and dev["translations"][:, axis].abs().max() <= limit


def test_colour_jitter_factors_have_the_same_distribution_on_both_backends():
    torch.manual_seed(3)
    n, recipe = 3000, [{"name": "color_jitter", "brightness": 0.3, "hue": 0.05}]
    (cpu_jitter,) = build_transform(True, recipe).transforms[:1]
    image = tv_tensors.Image(torch.zeros(3, 8, 8, dtype=torch.uint8))
    cpu = [cpu_jitter.make_params([image]) for _ in range(n)]
    dev = _kornia_module(DeviceBatchTransform(recipe, (8, 8)), K.ColorJitter).forward_parameters(
        torch.Size([n, 3, 8, 8])
    )
    for cpu_key, dev_key in (("brightness_factor", "brightness_factor"), ("hue_factor", "hue_factor")):
        values = np.array([float(p[cpu_key]) for p in cpu])
        assert stats.ks_2samp(values, dev[dev_key].numpy()).pvalue > P_MIN, cpu_key


def _disc_sample(side: int, centre: tuple[int, int], radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A bright disc on a dark background, and the mask drawn from that image (the disc)."""
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    mask = ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2).to(torch.uint8)
    image = (20 + 210 * mask).to(torch.uint8).expand(3, -1, -1).clone()
    return image, mask[None]


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.bool(), b.bool()
    return float((a & b).sum()) / max(float((a | b).sum()), 1.0)


@pytest.mark.parametrize("recipe", ["standard", [{"name": "random_resized_crop", "scale": [0.3, 1.0]}]])
def test_a_mask_drawn_from_the_image_stays_on_it_through_both_backends(recipe):
    torch.manual_seed(4)
    side = 48
    samples = [_disc_sample(side, (12 + 3 * i, 30 - 2 * i), 8) for i in range(8)]
    images, masks = torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples])

    out = DeviceBatchTransform(recipe, (side, side))({"image": images, "mask": masks}, train=True)
    assert out["mask"].dtype == torch.float32 and set(out["mask"].unique().tolist()) <= {0.0, 1.0}
    cpu = build_transform(True, recipe, (side, side))
    moved = 0
    for i in range(len(samples)):
        bright = _unnormalise(out["image"][i]).mean(0) > 0.45
        assert _iou(bright, out["mask"][i, 0]) > 0.85, i
        moved += not torch.equal(out["mask"][i], masks[i].float())
        image, mask = cpu(tv_tensors.Image(images[i]), tv_tensors.Mask(masks[i]))
        assert _iou(_unnormalise(image).mean(0) > 0.45, mask[0]) > 0.85, i
    assert moved >= 6  # the augmentation did move the masks


def test_evaluation_batches_are_only_normalised_and_match_the_cpu_transform():
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    out = DeviceBatchTransform("standard", (16, 16))({"image": images, "label": torch.arange(4)}, train=False)
    cpu = torch.stack([build_transform(False, "standard")(tv_tensors.Image(x)) for x in images])
    torch.testing.assert_close(out["image"], cpu, atol=1e-5, rtol=0)
    assert torch.equal(out["label"], torch.arange(4))


def test_float_batches_pass_through_untouched():
    batch = {"image": torch.randn(2, 3, 8, 8)}
    assert DeviceBatchTransform("standard", (8, 8))(batch, train=True) is batch


def test_presets_keep_their_meaning():
    assert parse_augment("none") == []
    assert [s.name for s in parse_augment("light")] == ["flip"]
    assert [s.name for s in parse_augment("standard")] == ["flip", "rotate90", "affine", "color_jitter"]
    standard = {s.name: s.params for s in parse_augment("standard")}
    assert standard["affine"]["degrees"] == 15 and standard["color_jitter"]["hue"] == 0.02
    light_cpu = build_transform(True, "light").transforms
    assert [type(t) for t in light_cpu[:2]] == [v2.RandomHorizontalFlip, v2.RandomVerticalFlip]
    assert set(PRESETS) == {"none", "light", "standard"}


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ("heavy", "data.augment='heavy' is not a preset"),
        ([{"name": "flip"}, {"name": "rotate45"}], r"data.augment\[1\]: step name 'rotate45' is unknown"),
        ([{"name": "affine", "degree": 10}], r"data.augment\[0\] \(affine\): unknown parameter\(s\) \['degree'\]"),
        ([{"name": "flip", "p": 1.5}], r"p=1.5 must be in \[0, 1\]"),
        ([{"name": "affine", "scale": [1.2, 0.8]}], r"scale=\[1.2, 0.8\] must be two numbers"),
        ([{"name": "color_jitter", "brightness": 1.5}], r"brightness=1.5 must be in \[0, 1\)"),
    ],
)
def test_bad_recipes_name_the_step_and_what_is_allowed(recipe, message):
    with pytest.raises(ValueError, match=message):
        parse_augment(recipe)
