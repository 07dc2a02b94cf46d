"""DataModule options the ablations need: top-K metadata ranked on train only, test-time missing
clinical features, and predicted masks served instead of the dataset's."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from dermfuse_data.datamodule import DermDataModule, blank_features
from dermfuse_data.errors import DatasetError
from dermfuse_data.feature_ranking import parse_top_k, rank_features_by_label_correlation
from dermfuse_data.mask_file import MaskFile, write_mask_file
from dermfuse_data.sources.base import MetaFeature


def _table(labels, columns: dict[str, list]) -> pa.Table:
    data = {"label": pa.array(labels, pa.int64())}
    data.update({f"meta_{k}": pa.array(v, pa.string()) for k, v in columns.items()})
    return pa.table(data)


def test_ranking_orders_by_label_correlation():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    strong = [str(v) for v in labels]  # = the label
    weak = [str(v if rng.random() < 0.6 else rng.integers(0, 3)) for v in labels]  # noisy label
    noise = [str(v) for v in rng.integers(0, 3, 300)]  # independent
    numeric = [str(float(v) * 2 + rng.normal()) for v in labels]  # numeric, correlated
    features = [
        MetaFeature("noise", "noise"),
        MetaFeature("weak", "weak"),
        MetaFeature("strong", "strong"),
        MetaFeature("numeric", "numeric", "numeric"),
    ]
    ranking = rank_features_by_label_correlation(
        _table(labels, {"noise": noise, "weak": weak, "strong": strong, "numeric": numeric}), features, 3
    )
    names = [n for n, _ in ranking]
    assert names[0] == "strong" and ranking[0][1] == pytest.approx(1.0)
    assert names.index("weak") < names.index("noise") and names[-1] == "noise"
    assert ranking[-1][1] < 0.2


def test_ranking_constant_feature_scores_zero():
    labels = [0, 1] * 50
    features = [MetaFeature("const", "const"), MetaFeature("empty", "empty")]
    ranking = dict(
        rank_features_by_label_correlation(_table(labels, {"const": ["a"] * 100, "empty": [""] * 100}), features)
    )
    assert ranking == {"const": 0.0, "empty": 0.0}
    with pytest.raises(ValueError, match="training row"):
        rank_features_by_label_correlation(_table([], {"const": []}), features[:1])


def test_parse_top_k():
    assert parse_top_k("top5") == 5 and parse_top_k("TOP12") == 12
    assert parse_top_k("all") is None and parse_top_k(["age"]) is None and parse_top_k(None) is None
    with pytest.raises(ValueError, match="at least 1"):
        parse_top_k("top0")


@pytest.fixture(scope="module")
def pad(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    dm = DermDataModule(
        "pad_ufes_20",
        image_size=32,
        batch_size=8,
        cache_dir=str(cache),
        augment="none",
        meta_features="top5",
        test_meta_missing_fraction=0.5,
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_top5_is_the_training_split_ranking(pad, monkeypatch):
    everything = DermDataModule("pad_ufes_20", image_size=32, cache_dir=str(pad.cache_dir))
    expected = rank_features_by_label_correlation(
        everything.split_table("train"), everything.features, everything.num_classes
    )
    assert len(pad.meta_names) == 5 and set(pad.meta_names) == {n for n, _ in expected[:5]}
    assert pad.feature_ranking == expected
    # the rows handed to the ranking are exactly the training split's (no val/test leak)
    seen = []
    import dermfuse_data.datamodule as datamodule_module

    def spy(table, features, num_classes=None):
        seen.append(set(table.column("sample_id").to_pylist()))
        return rank_features_by_label_correlation(table, features, num_classes)

    monkeypatch.setattr(datamodule_module, "rank_features_by_label_correlation", spy)
    fresh = DermDataModule("pad_ufes_20", image_size=32, cache_dir=str(pad.cache_dir), meta_features="top3")
    assert len(fresh.meta_names) == 3
    assert seen == [set(everything.split_table("train").column("sample_id").to_pylist())]


def test_top5_survives_checkpoint_state(pad):
    state = pad.state_dict()
    fresh = DermDataModule("pad_ufes_20", image_size=32, cache_dir=str(pad.cache_dir), meta_features="top5")
    fresh.load_state_dict(state)
    assert [f.name for f in fresh.features] == [f.name for f in pad.features]
    with pytest.raises(ValueError, match="metadata features"):
        DermDataModule(
            "pad_ufes_20", image_size=32, cache_dir=str(pad.cache_dir), meta_features=["age"]
        ).load_state_dict(state)


def test_missing_fraction_blanks_test_features_only(pad):
    widths = pad.encoder.group_widths
    starts = np.concatenate([[0], np.cumsum(widths)[:-1]])
    test = pad.dataset("test").meta
    clean = pad.encoder.transform(pad.split_table("test"))
    missing = np.stack([test[:, s + w - 1] for s, w in zip(starts, widths)], axis=1)
    was_missing = np.stack([clean[:, s + w - 1] for s, w in zip(starts, widths)], axis=1)
    changed = (missing == 1) & (was_missing == 0)
    assert (changed.sum(axis=1) <= round(0.5 * len(widths))).all() and changed.any()
    blanked = np.abs(test - clean).sum(axis=1) > 0
    assert blanked.mean() > 0.8  # nearly every row loses something
    for split in ("train", "val"):  # other splits untouched
        np.testing.assert_array_equal(pad.dataset(split).meta, pad.encoder.transform(pad.split_table(split)))
    np.testing.assert_array_equal(test, pad.dataset("test").meta)  # seeded: same blanks every time


def test_blank_features_counts_and_encoding():
    meta = np.ones((4, 7), dtype=np.float32)
    out = blank_features(meta, [3, 2, 2], 2 / 3, seed=1)
    for row in out:
        blocks = [row[0:3], row[3:5], row[5:7]]
        blank = [b for b in blocks if b[:-1].sum() == 0 and b[-1] == 1]
        assert len(blank) == 2
    np.testing.assert_array_equal(blank_features(meta, [3, 2, 2], 0.0, 0), meta)
    with pytest.raises(ValueError, match="test_meta_missing_fraction"):
        DermDataModule("pad_ufes_20", test_meta_missing_fraction=1.5)


def test_predicted_masks_are_served(tmp_path, pad):
    ids = pad.table.column("sample_id").to_pylist()
    rng = np.random.default_rng(0)
    masks = {sid: (rng.random((32, 32)) > 0.5).astype(np.uint8) for sid in ids}
    path = write_mask_file(tmp_path / "masks.arrow", ids, [masks[s] for s in ids], (32, 32), {"source": "test"})
    assert MaskFile(path).metadata["source"] == "test"
    dm = DermDataModule(
        "pad_ufes_20",
        image_size=32,
        batch_size=8,
        cache_dir=str(pad.cache_dir),
        augment="none",
        predicted_masks=str(path),
    )
    batch = next(iter(dm.val_dataloader()))
    assert batch["mask"].shape == (len(batch["sample_id"]), 1, 32, 32)
    for sid, mask in zip(batch["sample_id"], batch["mask"]):
        assert torch.equal(mask[0], torch.from_numpy(masks[sid]).float())


def test_predicted_masks_errors(tmp_path, pad):
    ids = pad.table.column("sample_id").to_pylist()
    small = write_mask_file(tmp_path / "small.arrow", ids, [np.zeros((16, 16))] * len(ids), (16, 16))
    with pytest.raises(DatasetError, match="16x16.*image_size"):
        DermDataModule("pad_ufes_20", image_size=32, cache_dir=str(pad.cache_dir), predicted_masks=str(small)).setup()
    partial = write_mask_file(tmp_path / "partial.arrow", ids[:5], [np.zeros((32, 32))] * 5, (32, 32))
    with pytest.raises(DatasetError, match="have no predicted mask"):
        DermDataModule("pad_ufes_20", image_size=32, cache_dir=str(pad.cache_dir), predicted_masks=str(partial)).setup()
    with pytest.raises(DatasetError, match="not found"):
        MaskFile(tmp_path / "absent.arrow")
    with pytest.raises(ValueError, match="segmentation"):
        DermDataModule("ph2", task="segmentation", predicted_masks=str(partial))


def test_mask_file_write_is_atomic(tmp_path):
    def broken():
        yield np.zeros((8, 8))
        raise RuntimeError("segmenter crashed")

    with pytest.raises(RuntimeError, match="crashed"):
        write_mask_file(tmp_path / "m.arrow", ["a", "b"], broken(), (8, 8))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="shape"):
        write_mask_file(tmp_path / "m.arrow", ["a"], [np.zeros((4, 4))], (8, 8))
