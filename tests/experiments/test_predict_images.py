"""``predict`` on a folder of images: one row per image, probabilities summing to 1, equal to what the test
step computes for the same images (with their metadata, or with every clinical feature missing)."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import pytorch_lightning as pl

from tests.experiments._eval_support import read_rows
from tests.experiments._support import metrics_of


def _test_step_probs(ckpt: str, overrides: list[str]) -> dict[str, np.ndarray]:
    """sample id -> probabilities of the task's own predict step on the run's test split."""
    from dermfuse_models.runner.rebuild import rebuild

    run = rebuild(ckpt, overrides)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    out = trainer.predict(run.model, datamodule=run.datamodule)
    return {sid: p.numpy() for batch in out for sid, p in zip(batch["sample_id"], batch["probs"])}


def _probs(folder) -> dict[str, np.ndarray]:
    rows = read_rows(folder / "predictions.csv")
    return {r["image"]: np.array([float(v) for k, v in r.items() if k.startswith("prob_")]) for r in rows}


@pytest.mark.slow
def test_predict_a_folder_with_and_without_metadata(vitatt_run, tmp_path):
    from dermfuse_data.datamodule import DermDataModule
    from dermfuse_models.runner.predict import predict_folder

    ckpt = metrics_of(vitatt_run)["best_checkpoint"]
    test = DermDataModule("pad_ufes_20", image_size=64, meta_features=None).split_table("test")
    images = tmp_path / "new images"
    (images / "sub").mkdir(parents=True)
    ids = test.column("sample_id").to_pylist()
    for i, (sid, path) in enumerate(zip(ids, test.column("image_path").to_pylist())):
        shutil.copy(path, images / ("sub" if i % 2 else "") / sid)
    (images / "broken.png").write_bytes(b"not an image")
    names = {sid: (f"sub/{sid}" if i % 2 else sid) for i, sid in enumerate(ids)}

    source = next(iter(test.column("image_path").to_pylist())).split("/images/")[0] + "/metadata.csv"
    with open(source, newline="") as fh:
        header, *rows = list(csv.reader(fh))
    keep = [r for r in rows if r[header.index("img_id")] in ids[1:]]  # the first image gets no row
    meta = tmp_path / "clinical.csv"
    with open(meta, "w", newline="") as fh:
        csv.writer(fh).writerows([[*header, "notes"], *[[*r, "seen in clinic"] for r in keep]])

    full = _test_step_probs(ckpt, [])
    missing = _test_step_probs(ckpt, ["--data.test_meta_missing_fraction=1.0"])
    with_meta = predict_folder(ckpt, images, meta, out=tmp_path / "with", progress=False)
    without = predict_folder(ckpt, images, out=tmp_path / "without", progress=False)

    for folder, reference in ((with_meta, {**full, ids[0]: missing[ids[0]]}), (without, missing)):
        probs = _probs(folder)
        assert sorted(probs) == sorted(names.values())  # one row per readable image, the broken one left out
        for sid, name in names.items():
            assert probs[name].sum() == pytest.approx(1.0, abs=1e-5)
            np.testing.assert_allclose(probs[name], reference[sid], atol=1e-5, err_msg=name)
        record = json.loads((folder / "predict.json").read_text())
        assert record["unreadable"] == ["broken.png"] and record["images"] == len(ids)
    assert not np.allclose(full[ids[1]], missing[ids[1]], atol=1e-5)  # the metadata does reach the model
    record = json.loads((with_meta / "predict.json").read_text())["metadata"]
    assert record["id_column"] == "img_id" and "notes" in record["unused_columns"]
    assert sorted(record["images_without_row"]) == sorted(["broken.png", ids[0]])
    assert record["rows_without_image"] == 0 and record["absent_features"] == []


def test_predict_without_a_config_is_the_images_command_with_one_the_lightning_subcommand(monkeypatch, capsys):
    import dermfuse_models.runner.cli as cli
    from dermfuse_models.runner.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--help"])
    assert exit_.value.code == 0 and "--input INPUT" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--ckpt", "x.ckpt"])  # no --input: the images command names what is missing
    assert exit_.value.code == 2 and "--input" in capsys.readouterr().err
    seen = []
    monkeypatch.setattr(cli, "run_from_command_line", seen.append)
    assert main(["predict", "--config", "run/config.yaml", "--ckpt_path=best.ckpt"]) == 0
    assert seen == [["predict", "--config", "run/config.yaml", "--ckpt_path=best.ckpt"]]


@pytest.mark.slow
def test_predict_with_a_segmentation_net_writes_masks_at_each_upright_image_size(tmp_path):
    """EAM-Net: one PNG mask per readable image at its own upright size (an EXIF-turned JPEG's mask is tall, not
    wide), the unreadable file listed and skipped instead of crashing the mask writer."""
    from PIL import Image

    from dermfuse_models.runner.predict import predict_folder
    from tests.experiments._eval_support import train_tiny

    run = train_tiny(tmp_path / "run", "eamnet", "ph2")
    images = tmp_path / "new"
    images.mkdir()
    Image.new("RGB", (50, 40), (180, 120, 90)).save(images / "wide.png")
    turned = Image.new("RGB", (60, 30), (150, 100, 80))
    exif = turned.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display, so the upright image is 30 x 60
    turned.save(images / "turned.jpg", exif=exif)
    (images / "broken.png").write_bytes(b"not an image")

    folder = predict_folder(metrics_of(run)["best_checkpoint"], images, out=tmp_path / "out", progress=False)
    with Image.open(folder / "masks" / "wide.png") as mask:
        assert mask.size == (50, 40)
    with Image.open(folder / "masks" / "turned.png") as mask:
        assert mask.size == (30, 60)
    assert not (folder / "masks" / "broken.png").exists()
    assert json.loads((folder / "predict.json").read_text())["unreadable"] == ["broken.png"]
