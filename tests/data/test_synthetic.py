"""Synthetic-miniature machinery: lesion generator, class planning, determinism, learnability."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from dermfuse_data.sources import SOURCE_MODULES
from dermfuse_data.synthetic import WRITER_MODULES, miniature_key, miniature_sources, write_synthetic, writer
from dermfuse_data.synthetic.files import save_image
from dermfuse_data.synthetic.lesions import STYLES, class_counts, count_image_classes, draw_lesion, image_class_of
from tests.data._support import append_comment


def test_image_class_plan_pairs_and_chains():
    assert [image_class_of(c, [(0, 4), (3, 5)]) for c in range(6)] == [0, 1, 2, 3, 0, 3]
    assert count_image_classes(6, [(0, 4), (3, 5)]) == 4
    assert [image_class_of(c) for c in range(4)] == [0, 1, 2, 3]  # no pairs: identity
    assert [image_class_of(c, [(1, 3), (3, 5)]) for c in range(6)] == [0, 1, 2, 1, 3, 1]  # chain
    assert [image_class_of(c, [(5, 2)]) for c in range(6)] == [0, 1, 2, 3, 4, 2]  # order-free
    assert count_image_classes(6, [(1, 3), (3, 5)]) == 4


def test_class_counts_imbalanced_exact_and_minimum():
    counts = class_counts(160, [730, 845, 52, 244, 192, 235], minimum=10)
    assert sum(counts) == 160 and min(counts) >= 10
    assert counts[1] > counts[0] > counts[3] > counts[2]  # keeps the publisher's order
    with pytest.raises(ValueError):
        class_counts(5, [1, 1, 1], minimum=2)


def test_draw_lesion_shapes_mask_and_contrast():
    rng = np.random.default_rng(0)
    for k in range(len(STYLES)):
        rgb, mask = draw_lesion(rng, (48, 80), k, len(STYLES))
        assert rgb.shape == (48, 80, 3) and rgb.dtype == np.uint8
        assert mask.shape == (48, 80) and mask.dtype == bool
        assert 0.02 < mask.mean() < 0.6  # a lesion, not the whole image
        assert not mask[0].all() and not mask[:, 0].all()  # with skin around it
        inside = rgb[mask].astype(float).mean(0)
        outside = rgb[~mask].astype(float).mean(0)
        assert np.abs(inside - outside).sum() > 60  # visibly different from skin
    with pytest.raises(ValueError):
        draw_lesion(rng, 32, 4, 4)


def test_draw_lesion_deterministic_per_seed():
    a = draw_lesion(np.random.default_rng(7), 40, 1, 3)
    b = draw_lesion(np.random.default_rng(7), 40, 1, 3)
    c = draw_lesion(np.random.default_rng(8), 40, 1, 3)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_save_image_is_byte_deterministic(tmp_path):
    rgb, mask = draw_lesion(np.random.default_rng(0), 32, 0, 2)
    digests = set()
    for i in range(2):
        for suffix in ("png", "jpg", "bmp"):
            path = save_image(tmp_path / f"{i}/x.{suffix}", rgb)
            digests.add((suffix, hashlib.sha256(path.read_bytes()).hexdigest()))
    assert len(digests) == 3
    m = save_image(tmp_path / "m.png", mask)
    assert set(np.unique(np.asarray(Image.open(m)))) <= {0, 255}


def _batch(seed: int, n_per_class: int, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for k in range(n_classes):
        for _ in range(n_per_class):
            rgb, _ = draw_lesion(rng, (int(rng.integers(56, 72)), int(rng.integers(56, 72))), k, n_classes)
            small = np.asarray(Image.fromarray(rgb).resize((32, 32), Image.BILINEAR))
            xs.append(small)
            ys.append(k)
    x = torch.tensor(np.stack(xs), dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
    return x, torch.tensor(ys)


def test_image_class_learnable_by_tiny_cnn_at_32px():
    """A two-layer CNN trained for a few seconds tells all ten lesion styles apart on new images."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny net: one thread is faster and immune to a busy machine
    n_classes = len(STYLES)
    x_train, y_train = _batch(0, 16, n_classes)
    x_test, y_test = _batch(1, 10, n_classes)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveMaxPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(32, n_classes),
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    try:
        for _ in range(60):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(x_train - 0.5), y_train).backward()
            optimizer.step()
        with torch.no_grad():
            accuracy = (net(x_test - 0.5).argmax(1) == y_test).float().mean().item()
    finally:
        torch.set_num_threads(threads)
    assert accuracy > 0.9, accuracy  # chance is 0.1


def test_write_synthetic_dispatches_and_rejects_unknown(tmp_path):
    root = write_synthetic("pad_ufes_20", tmp_path / "pad", seed=3)
    assert (root / "metadata.csv").is_file()
    with pytest.raises(ValueError, match="unknown dataset"):
        write_synthetic("no_such_dataset", tmp_path / "x")


# ------------------------------------------------------------------ what a cached miniature depends on
def test_miniature_sources_are_shared_helpers_writer_and_reader():
    names = {f"{p.parent.name}/{p.name}" for p in miniature_sources("pad_ufes_20")}
    assert names == {
        "synthetic/__init__.py",
        "synthetic/lesions.py",
        "synthetic/files.py",
        "synthetic/dicom.py",
        "synthetic/pad_ufes_20.py",
        "sources/pad_ufes_20.py",
    }
    assert set(WRITER_MODULES) == set(SOURCE_MODULES)
    for name in WRITER_MODULES:
        assert all(p.is_file() for p in miniature_sources(name)), name


def test_editing_one_datasets_code_changes_only_its_key(synthetic_code_copy):
    before = {name: miniature_key(name) for name in WRITER_MODULES}
    assert len(set(before.values())) == len(before)
    append_comment(synthetic_code_copy / "sources" / "ph2.py")  # the PH2 reader
    after_reader = {name: miniature_key(name) for name in WRITER_MODULES}
    append_comment(synthetic_code_copy / "synthetic" / "ph2.py")  # the PH2 writer
    after_writer = {name: miniature_key(name) for name in WRITER_MODULES}
    for after in (after_reader, after_writer):
        assert after["ph2"] != before["ph2"]
        assert {k: v for k, v in after.items() if k != "ph2"} == {k: v for k, v in before.items() if k != "ph2"}
    assert after_writer["ph2"] != after_reader["ph2"]
    append_comment(synthetic_code_copy / "synthetic" / "lesions.py")  # a shared helper: every key
    shared = {name: miniature_key(name) for name in WRITER_MODULES}
    assert all(shared[name] != after_writer[name] for name in WRITER_MODULES)


def test_write_synthetic_dispatches_to_the_writer_module(tmp_path):
    for name in WRITER_MODULES:
        assert callable(writer(name).write_miniature), name
    with pytest.raises(ValueError, match="unknown dataset 'nope'; choose one of"):
        writer("nope")
    with pytest.raises(ValueError, match="unknown dataset"):
        miniature_key("nope")
