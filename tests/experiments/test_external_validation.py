"""External validation on miniatures: a ViTAtt trained on ISIC 2019 scored on PH2 through the shipped class map
reports only the mapped classes; images that are also in the training dataset are left out and counted."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.experiments._eval_support import digests, read_rows
from tests.experiments._support import metrics_of


@pytest.mark.slow
def test_isic2019_model_on_ph2_reports_only_the_mapped_classes(vitatt_isic2019_run, tmp_path):
    from dermfuse_data.datamodule import DermDataModule
    from dermfuse_models.runner.evaluate import evaluate_checkpoint

    before = digests(vitatt_isic2019_run)
    ckpt = metrics_of(vitatt_isic2019_run)["best_checkpoint"]
    folder = evaluate_checkpoint(ckpt, dataset="ph2", accelerator="cpu", out=tmp_path / "ph2", progress=False)
    record = json.loads((folder / "metrics.json").read_text())
    assert (
        record["external"]
        and record["split"] == "all"
        and record["class_map"].endswith("vitatt/class_maps/isic2019_to_ph2.yaml")
    )
    assert record["classes"] == ["melanoma", "nevus"] and record["excluded"] == {}
    recalls = sorted(k for k in record["metrics"] if "/recall_" in k)
    assert recalls == ["all/recall_melanoma", "all/recall_nevus"]
    ph2 = DermDataModule("ph2", image_size=64, meta_features=None).table
    rows = read_rows(folder / "predictions.csv")
    assert record["samples"] == len(rows) == ph2.num_rows  # every PH2 image is melanoma or a nevus
    assert {k for k in rows[0] if k.startswith("prob_")} == {"prob_melanoma", "prob_nevus"}
    truth = dict(zip(ph2.column("sample_id").to_pylist(), ph2.column("label_name").to_pylist()))
    for r in rows:
        assert r["dataset_label"] == truth[r["sample_id"]]
        assert r["label_name"] == ("melanoma" if r["dataset_label"] == "Melanoma" else "nevus")
        assert float(r["prob_melanoma"]) + float(r["prob_nevus"]) == pytest.approx(1.0, abs=1e-5)
        assert 0.0 < float(r["mapped_mass"]) <= 1.0 + 1e-6
    assert record["metadata"]["absent_features"] == ["age_approx", "anatom_site_general", "sex"]  # PH2 has none
    assert digests(vitatt_isic2019_run) == before


def _csv_dataset(root, isic: list[tuple[str, str, str]], ph2: list[tuple[str, str, str]]) -> None:
    """A csv-source folder listing ``(id, image path, class)`` of ISIC 2019 and PH2 miniature images."""
    (root / "images").mkdir(parents=True)
    lines = ["image_id,image,diagnosis"]
    for sample_id, path, label in isic + ph2:
        target = root / "images" / f"{sample_id}{path[path.rindex('.') :]}"
        shutil.copy(path, target)
        lines.append(f"{sample_id},images/{target.name},{label}")
    (root / "samples.csv").write_text("\n".join(lines) + "\n")
    (root / "samples.yaml").write_text("image: image\nlabel: diagnosis\nid: image_id\nclasses: [melanoma, nevus]\n")


@pytest.mark.slow
def test_images_of_the_training_dataset_are_left_out_and_counted(vitatt_isic2019_run, tmp_path):
    from dermfuse_data.datamodule import DermDataModule
    from dermfuse_models.runner.evaluate import evaluate_checkpoint

    wanted = {"MEL": "melanoma", "NV": "nevus", "Melanoma": "melanoma", "Common Nevus": "nevus"}

    def pick(dataset: str, n: int) -> list[tuple[str, str, str]]:
        table = DermDataModule(dataset, image_size=64, meta_features=None).table.to_pylist()
        rows = [r for r in table if r["label_name"] in wanted][:n]
        return [(r["sample_id"], r["image_path"], wanted[r["label_name"]]) for r in rows]

    isic = pick("isic2019", 5)
    isic += [
        (sid.removesuffix("_downsampled"), path, label)
        for sid, path, label in pick("isic2019", 40)
        if sid.endswith("_downsampled")
    ][:1]  # the same image under its id without _downsampled
    assert len(isic) == 6
    _csv_dataset(tmp_path / "mine", isic, pick("ph2", 7))
    cmap = tmp_path / "isic2019_to_csv.yaml"
    cmap.write_text(
        "trained_on: isic2019\nevaluated_on: csv\nclasses:\n"
        "  melanoma: {trained: [MEL], evaluated: [melanoma]}\n  nevus: {trained: [NV], evaluated: [nevus]}\n"
    )
    ckpt = metrics_of(vitatt_isic2019_run)["best_checkpoint"]
    args = dict(dataset="csv", data_root=str(tmp_path / "mine"), class_map=cmap, accelerator="cpu", progress=False)
    folder = evaluate_checkpoint(ckpt, out=tmp_path / "eval", **args)
    record = json.loads((folder / "metrics.json").read_text())
    assert record["excluded"] == {"in_training_dataset": 6} and record["samples"] == 7
    ids = [r["sample_id"] for r in read_rows(folder / "predictions.csv")]
    assert all(i.startswith("IMD") for i in ids) and len(ids) == 7
    with pytest.raises(ValueError, match="6 of 13 csv images are also in the training dataset isic2019"):
        evaluate_checkpoint(ckpt, overlap="refuse", out=tmp_path / "refused", **args)
    assert not (tmp_path / "refused").exists()
    # the 7 PH2 images kept are all nevi: what needs a melanoma (its recall, any AUROC) is undefined, NaN not 0
    undefined = {k for k, v in record["metrics"].items() if not np.isfinite(v)}
    assert undefined == {"all/auroc_macro", "all/recall_melanoma"} and record["metrics"]["all/acc"] == 1.0
