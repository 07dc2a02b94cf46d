"""Training augmentation as data: a list of named steps with parameters (``data.augment`` in YAML).

One spec, two backends with the same distributions: per sample on the CPU in the DataLoader workers
(torchvision ``transforms.v2``, :func:`dermfuse_data.transforms.build_transform`) or per batch on the
device with per-sample randomness (kornia, :mod:`dermfuse_data.device_augment`). Geometric steps move
image and mask together (masks: nearest neighbour); colour steps touch the image only.

In YAML, a preset name or a list of steps (unset parameters take the defaults below)::

    augment: standard                      # = flip, rotate90, affine, color_jitter
    augment:
      - {name: flip}                       # horizontal and vertical, each with p 0.5
      - {name: affine, degrees: 20, scale: [0.8, 1.2]}
      - {name: color_jitter, hue: 0.0}

Steps (parameters and defaults in :data:`STEPS`):

* ``flip``: horizontal and/or vertical mirror, each with probability ``p``;
* ``rotate90``: a turn by 0, 90, 180 or 270 degrees, each with probability 1/4;
* ``rotate``: a rotation by an angle uniform in ``[-degrees, degrees]`` (bilinear, zero fill);
* ``affine``: rotation uniform in ``[-degrees, degrees]``, translation uniform in ``+-translate`` of the
  side, isotropic scale uniform in ``scale``, optional shear; applied with probability ``p``;
* ``color_jitter``: brightness/contrast/saturation factors uniform in ``[1-x, 1+x]``, hue shift uniform in
  ``[-hue, hue]`` (torchvision's formulas), in a random order; applied with probability ``p``;
* ``random_resized_crop``: a crop of area share uniform in ``scale`` and log-uniform aspect ``ratio``,
  resized back to the image size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: every step name -> its parameters and their defaults
STEPS: dict[str, dict[str, Any]] = {
    "flip": {"horizontal": True, "vertical": True, "p": 0.5},
    "rotate90": {},
    "rotate": {"degrees": 180.0},
    "affine": {"degrees": 15.0, "translate": [0.05, 0.05], "scale": [0.9, 1.1], "shear": None, "p": 1.0},
    "color_jitter": {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.02, "p": 1.0},
    "random_resized_crop": {"scale": [0.08, 1.0], "ratio": [3 / 4, 4 / 3]},
}
#: steps that move pixels (applied to the mask too)
GEOMETRIC = {"flip", "rotate90", "rotate", "affine", "random_resized_crop"}

#: named recipes (the values ``none | light | standard`` of earlier versions mean exactly these)
PRESETS: dict[str, list[dict[str, Any]]] = {
    "none": [],
    "light": [{"name": "flip"}],
    "standard": [{"name": "flip"}, {"name": "rotate90"}, {"name": "affine"}, {"name": "color_jitter"}],
}


@dataclass(frozen=True)
class AugmentStep:
    """One step of a recipe: its name (a key of :data:`STEPS`) and its full parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def geometric(self) -> bool:
        """Whether the step moves pixels (and so the mask)."""
        return self.name in GEOMETRIC


def parse_augment(augment: str | Sequence[Mapping[str, Any]] | None, key: str = "data.augment") -> list[AugmentStep]:
    """A preset name or a list of ``{name: ..., <param>: ...}`` -> the recipe's steps, defaults filled in.

    Errors name the key (``data.augment[1]``), the unknown name or parameter and what is allowed.
    """
    if augment is None:
        return []
    if isinstance(augment, str):
        if augment not in PRESETS:
            raise ValueError(
                f"{key}={augment!r} is not a preset; use one of {sorted(PRESETS)} or a list of steps "
                f"such as [{{name: flip}}, {{name: affine, degrees: 20}}] (steps: {sorted(STEPS)})"
            )
        return parse_augment(PRESETS[augment], key)
    steps = []
    for i, item in enumerate(augment):
        where = f"{key}[{i}]"
        item = dict(item.as_dict() if hasattr(item, "as_dict") else item)
        name = item.pop("name", None)
        if name not in STEPS:
            raise ValueError(f"{where}: step name {name!r} is unknown; steps: {sorted(STEPS)}")
        unknown = sorted(set(item) - set(STEPS[name]))
        if unknown:
            raise ValueError(f"{where} ({name}): unknown parameter(s) {unknown}; {name} takes {sorted(STEPS[name])}")
        params = {**STEPS[name], **item}
        _check_params(where, name, params)
        steps.append(AugmentStep(name, params))
    return steps


def _check_params(where: str, name: str, params: dict[str, Any]) -> None:
    """Ranges that would silently do something else (a probability above 1, a scale range upside down)."""
    p = params.get("p", 1.0)
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{where} ({name}): p={p} must be in [0, 1]")
    for pair in ("scale", "ratio", "translate"):
        value = params.get(pair)
        if value is not None and (len(value) != 2 or (pair != "translate" and value[0] > value[1])):
            raise ValueError(f"{where} ({name}): {pair}={value} must be two numbers [low, high]")
    for amount in ("brightness", "contrast", "saturation"):
        if amount in params and not 0.0 <= float(params[amount]) < 1.0:
            raise ValueError(f"{where} ({name}): {amount}={params[amount]} must be in [0, 1) (factor 1 +- it)")
    if "hue" in params and not 0.0 <= float(params["hue"]) <= 0.5:
        raise ValueError(f"{where} ({name}): hue={params['hue']} must be in [0, 0.5]")
