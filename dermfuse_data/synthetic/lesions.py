"""Lesion drawing and class planning shared by the synthetic miniatures (``../shared/DESIGN.md``).

* :func:`draw_lesion`: a deterministic lesion-like image and its mask. The lesion's colour, texture
  and border depend on an *image class*, so a tiny CNN/ViT can learn it at 32-64 px; skin tone,
  illumination, noise, hairs, position, size, shape and rotation are nuisance.
  :func:`draw_class_lesion` draws it for a dataset class, :func:`random_size` picks its size.
* :func:`image_class_of` / :func:`count_image_classes`: plan which dataset classes share one image
  distribution, so that they can be told apart only from metadata (a fused model must beat an
  image-only one on those pairs).
* :func:`class_counts`, :func:`maybe_missing`: the publisher's imbalance and missing cells.
* :func:`smooth_noise`: low-frequency noise (skin blotches here, breast tissue in CBIS-DDSM).

Everything takes a :class:`numpy.random.Generator`; the same generator state gives the same arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LesionStyle:
    """How lesions of one image class look.

    ``colour``: RGB of the lesion body; ``texture``: one of ``uniform``, ``speckle`` (white scale),
    ``reticular`` (pigment network), ``rim`` (dark border, lighter centre), ``globules`` (dark dots),
    ``cracks`` (stripes, like seborrhoeic keratosis); ``border``: 0 (smooth ellipse) .. 1 (very
    irregular, blobby).
    """

    name: str
    colour: tuple[int, int, int]
    texture: str
    border: float


#: Visually distinct lesion styles; image class ``k`` uses ``STYLES[k]``. Colours are far apart from
#: each other and from skin so the class survives downsampling to 32 px; textures and borders add
#: the cues a larger model can also use.
STYLES: tuple[LesionStyle, ...] = (
    LesionStyle("dark brown, smooth", (92, 52, 30), "uniform", 0.05),
    LesionStyle("red, white scale", (196, 62, 72), "speckle", 0.35),
    LesionStyle("blue-black, network", (38, 36, 74), "reticular", 0.6),
    LesionStyle("tan, dark rim", (150, 98, 52), "rim", 0.1),
    LesionStyle("purple, globules", (124, 58, 134), "globules", 0.2),
    LesionStyle("olive-yellow, cracks", (164, 152, 58), "cracks", 0.45),
    LesionStyle("grey, irregular", (104, 104, 114), "uniform", 0.7),
    LesionStyle("orange, scale", (214, 116, 36), "speckle", 0.1),
    LesionStyle("deep red, network", (128, 18, 30), "reticular", 0.15),
    LesionStyle("near-black, smooth", (22, 16, 16), "uniform", 0.3),
)

#: Skin tones from light to medium-brown (lesion colours are chosen to stay distinct from all).
_SKIN_LIGHT = np.array([238.0, 204.0, 178.0])
_SKIN_DARK = np.array([196.0, 150.0, 118.0])


def lesion_style(image_class: int, n_image_classes: int) -> LesionStyle:
    """The :class:`LesionStyle` of ``image_class`` (``0 <= image_class < n_image_classes <= 10``)."""
    if not 0 < n_image_classes <= len(STYLES):
        raise ValueError(f"n_image_classes must be in 1..{len(STYLES)}, got {n_image_classes}")
    if not 0 <= image_class < n_image_classes:
        raise ValueError(f"image_class must be in 0..{n_image_classes - 1}, got {image_class}")
    return STYLES[image_class]


def _groups(pairs: Sequence[Sequence[int]]) -> dict[int, int]:
    """Union-find over the classes named in ``pairs``: class -> smallest class it shares images with."""
    parent: dict[int, int] = {}

    def find(c: int) -> int:
        parent.setdefault(c, c)
        while parent[c] != c:
            c = parent[c]
        return c

    for pair in pairs:
        items = [int(c) for c in pair]
        if any(c < 0 for c in items):
            raise ValueError(f"class indices must be >= 0, got {pair}")
        roots = sorted({find(c) for c in items})
        for r in roots[1:]:
            parent[r] = roots[0]
    return {c: find(c) for c in parent}


def image_class_of(class_index: int, pairs: Sequence[Sequence[int]] = ()) -> int:
    """Image class of dataset class ``class_index`` when the classes in each of ``pairs`` share images.

    Classes in one pair (or chain of pairs) get the same image class, so they are told apart only by
    metadata; image classes are numbered compactly in order of their smallest dataset class. Example:
    ``pairs=[(0, 4), (3, 5)]`` over 6 classes maps ``0,1,2,3,4,5 -> 0,1,2,3,0,3``.
    """
    root = _groups(pairs)
    rep = root.get(class_index, class_index)
    # number of representatives (classes that are their own root) below ``rep``
    return sum(1 for k in range(rep) if root.get(k, k) == k)


def count_image_classes(n_classes: int, pairs: Sequence[Sequence[int]] = ()) -> int:
    """How many distinct image classes ``n_classes`` dataset classes need given ``pairs``."""
    return len({image_class_of(c, pairs) for c in range(n_classes)})


def class_counts(total: int, weights: Sequence[float], minimum: int = 1) -> list[int]:
    """Split ``total`` samples over classes proportionally to ``weights``, at least ``minimum`` each.

    Deterministic (largest-remainder rounding); used to give miniatures the publisher's imbalance
    while keeping every class present.
    """
    k = len(weights)
    if total < k * minimum:
        raise ValueError(f"total {total} cannot give {k} classes {minimum} samples each")
    w = np.asarray(weights, dtype=float)
    w = w / w.sum()
    spare = total - k * minimum
    raw = w * spare
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: spare - counts.sum()]:
        counts[i] += 1
    return [int(c) + minimum for c in counts]


def maybe_missing(rng: np.random.Generator, value: str, p: float, token: str = "") -> str:
    """``value``, or the publisher's missing ``token`` with probability ``p``."""
    return token if rng.random() < p else value


def smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a coarse random grid bilinearly upsampled to ``h x w``."""
    grid = rng.uniform(-1.0, 1.0, (cells + 1, cells + 1))
    ys = np.linspace(0, cells, h)
    xs = np.linspace(0, cells, w)
    y0 = np.minimum(ys.astype(int), cells - 1)
    x0 = np.minimum(xs.astype(int), cells - 1)
    fy = (ys - y0)[:, None]
    fx = (xs - x0)[None, :]
    a = grid[y0][:, x0]
    b = grid[y0][:, x0 + 1]
    c = grid[y0 + 1][:, x0]
    d = grid[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def _texture(
    rng: np.random.Generator, style: LesionStyle, u: np.ndarray, v: np.ndarray, rn: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Brightness factor (HxW, ~1) and whiteness (HxW in [0,1]) of the lesion body for ``style``.

    ``u, v`` are lesion-aligned coordinates in units of the radii and ``rn`` the normalised radius.
    """
    h, w = rn.shape
    shade = np.ones((h, w))
    white = np.zeros((h, w))
    if style.texture == "speckle":
        white = (rng.random((h, w)) < 0.10).astype(float) * 0.75
    elif style.texture == "reticular":
        f = rng.uniform(9.0, 12.0)
        net = np.abs(np.sin(f * u + rng.uniform(0, 6.3))) * np.abs(np.sin(f * v + rng.uniform(0, 6.3)))
        shade = 0.6 + 0.7 * net
    elif style.texture == "rim":
        shade = 1.3 - 0.6 * np.clip(rn, 0, 1) ** 2
    elif style.texture == "globules":
        n = int(rng.integers(6, 12))
        gu, gv = rng.uniform(-0.7, 0.7, (2, n))
        d = np.min(np.hypot(u[..., None] - gu, v[..., None] - gv), axis=-1)
        shade = np.where(d < 0.12, 0.45, 1.0)
    elif style.texture == "cracks":
        f = rng.uniform(10.0, 14.0)
        shade = np.where(np.sin(f * (u + 0.4 * v) + rng.uniform(0, 6.3)) > 0.75, 0.55, 1.05)
    return shade, white


def draw_lesion(
    rng: np.random.Generator, size: int | tuple[int, int], image_class: int, n_image_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one lesion-like image; returns ``(rgb uint8 HxWx3, mask bool HxW)``.

    Skin-toned background (random tone, illumination gradient, low-frequency blotches, pixel noise,
    sometimes hairs) with an elliptical-to-blobby lesion at a random position, size and rotation.
    The lesion's colour, texture and border irregularity come from ``STYLES[image_class]``
    (:func:`lesion_style`), so the image class is learnable; ``mask`` is the lesion (before hairs).
    Deterministic given the state of ``rng``.
    """
    h, w = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    if h < 8 or w < 8:
        raise ValueError(f"size must be at least 8x8, got {h}x{w}")
    style = lesion_style(image_class, n_image_classes)
    yy, xx = np.mgrid[0:h, 0:w].astype(float)

    # background: skin tone, illumination gradient, blotches, noise
    skin = _SKIN_LIGHT + rng.uniform(0.0, 1.0) * (_SKIN_DARK - _SKIN_LIGHT)
    gx, gy = rng.uniform(-0.18, 0.18, 2)
    light = 1.0 + gx * (xx / w - 0.5) + gy * (yy / h - 0.5) + 0.04 * smooth_noise(rng, h, w, 4)
    img = skin * light[..., None] + rng.normal(0.0, 4.0, (h, w, 3))

    # lesion geometry: rotated ellipse whose radius is modulated by a few harmonics
    m = min(h, w)
    ry = rng.uniform(0.16, 0.32) * m
    rx = ry * rng.uniform(0.7, 1.35)
    cy = rng.uniform(0.5 * ry / h + 0.15, 0.85 - 0.5 * ry / h) * h
    cx = rng.uniform(0.5 * rx / w + 0.15, 0.85 - 0.5 * rx / w) * w
    theta = rng.uniform(0.0, math.pi)
    dy, dx = yy - cy, xx - cx
    u = (dx * math.cos(theta) + dy * math.sin(theta)) / rx
    v = (-dx * math.sin(theta) + dy * math.cos(theta)) / ry
    angle = np.arctan2(v, u)
    edge = np.ones((h, w))
    for k in range(2, 7):
        amp = style.border * rng.uniform(0.4, 1.0) * 0.32 / k
        edge += amp * np.cos(k * angle + rng.uniform(0.0, 2 * math.pi))
    rn = np.hypot(u, v) / np.maximum(edge, 0.3)
    mask = rn < 1.0
    if not mask.any():  # degenerate tiny images: make sure the centre pixel is lesion
        mask[int(min(h - 1, max(0, cy))), int(min(w - 1, max(0, cx)))] = True
    alpha = np.clip((1.0 - rn) / 0.12 + 0.5, 0.0, 1.0)
    alpha = np.where(mask, np.maximum(alpha, 0.5), np.minimum(alpha, 0.49))

    # lesion body: class colour with jitter, class texture, a little noise
    colour = np.asarray(style.colour, float) * rng.uniform(0.9, 1.1) + rng.normal(0.0, 3.0, 3)
    shade, white = _texture(rng, style, u, v, rn)
    body = colour * shade[..., None] * (1.0 + 0.06 * smooth_noise(rng, h, w, 6))[..., None]
    body = body * (1 - white[..., None]) + 245.0 * white[..., None] + rng.normal(0.0, 4.0, (h, w, 3))
    img = img * (1 - alpha[..., None]) + body * alpha[..., None]

    # nuisance hairs (class-independent)
    for _ in range(int(rng.integers(0, 4)) if rng.random() < 0.35 else 0):
        y0, x0 = rng.uniform(0, h), rng.uniform(0, w)
        phi = rng.uniform(0, math.pi)
        dist = np.abs((xx - x0) * math.sin(phi) - (yy - y0) * math.cos(phi))
        hair = np.clip(1.0 - dist / max(0.6, m / 90), 0.0, 1.0) * 0.8
        img = img * (1 - hair[..., None]) + 40.0 * hair[..., None]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), mask


def random_size(rng: np.random.Generator, low: int, high: int) -> tuple[int, int]:
    """``(height, width)``, each drawn from ``low .. high - 1`` (height first)."""
    return int(rng.integers(low, high)), int(rng.integers(low, high))


def draw_class_lesion(
    rng: np.random.Generator,
    size: int | tuple[int, int],
    class_index: int,
    n_classes: int,
    pairs: Sequence[Sequence[int]] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`draw_lesion` for dataset class ``class_index`` of ``n_classes``: the classes in each of
    ``pairs`` share one image class (:func:`image_class_of`), so only metadata tells them apart."""
    return draw_lesion(rng, size, image_class_of(class_index, pairs), count_image_classes(n_classes, pairs))


__all__ = [
    "LesionStyle",
    "STYLES",
    "lesion_style",
    "image_class_of",
    "count_image_classes",
    "class_counts",
    "maybe_missing",
    "smooth_noise",
    "draw_lesion",
    "random_size",
    "draw_class_lesion",
]
