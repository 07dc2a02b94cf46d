"""Class maps: the shipped ones fit their datasets, mapped probabilities are summed and renormalised, bad maps
are refused naming the file, and ids shared with the training dataset are found (``_downsampled`` or not)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from dermfuse_data.sources import get_source
from dermfuse_models.runner.class_maps import ClassMap, load_class_map
from dermfuse_models.runner.eval_data import choose_class_map, in_training_dataset
from tests.experiments._support import EXPERIMENTS

SHIPPED = sorted(EXPERIMENTS.glob("*/class_maps/*.yaml"))
MEL_NV = "trained_on: isic2019\nevaluated_on: ph2\nclasses:\n"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_shipped_class_maps_fit_their_datasets(path):
    trained, evaluated = path.stem.split("_to_")
    cmap = load_class_map(path, trained, get_source(trained).classes, evaluated, get_source(evaluated).classes)
    assert cmap.names and len(cmap.trained) == len(cmap.evaluated) == len(cmap.names)
    assert path.read_text().lstrip().startswith("#")  # each says what it scores and how


def test_vitatt_ships_the_external_validations_of_isic2019():
    names = {p.stem for p in SHIPPED if p.parent.parent.name == "vitatt"}
    assert {"isic2019_to_ph2", "isic2019_to_pad_ufes_20", "isic2019_to_ham10000", "ham10000_to_isic2019"} <= names


def test_probabilities_are_summed_per_class_and_renormalised(tmp_path):
    path = tmp_path / "map.yaml"
    path.write_text(
        MEL_NV + "  melanoma: {trained: [MEL], evaluated: [Melanoma]}\n"
        "  nevus: {trained: [NV, BKL], evaluated: [Common Nevus, Atypical Nevus]}\n"
    )
    classes = get_source("isic2019").classes
    cmap = load_class_map(path, "isic2019", classes, "ph2", get_source("ph2").classes)
    probs = np.zeros((2, len(classes)))
    probs[0, [0, 1, 4, 2]] = [0.2, 0.3, 0.1, 0.4]  # MEL, NV, BKL, BCC (unmapped)
    probs[1, [0, 1]] = [0.9, 0.1]
    mapped, mass = cmap.probabilities(probs)
    np.testing.assert_allclose(mapped, [[0.2 / 0.6, 0.4 / 0.6], [0.9, 0.1]])
    np.testing.assert_allclose(mass, [0.6, 1.0])
    np.testing.assert_array_equal(cmap.labels(np.array([0, 1, 2, 1])), [1, 1, 0, 1])
    assert cmap.names == ("melanoma", "nevus")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "  melanoma: {trained: [MELANOMA], evaluated: [Melanoma]}\n",
            "classes.melanoma.trained names \\['MELANOMA'\\]",
        ),
        (
            "  a: {trained: [MEL], evaluated: [Melanoma]}\n  b: {trained: [MEL], evaluated: [Common Nevus]}\n",
            "trained class\\(es\\) \\['MEL'\\] appear in two",
        ),
        ("  a: {trained: [MEL]}\n", "needs exactly 'trained' and 'evaluated'"),
    ],
)
def test_bad_class_maps_are_refused_naming_the_file(tmp_path, body, message):
    path = tmp_path / "bad.yaml"
    path.write_text(MEL_NV + body)
    with pytest.raises(ValueError, match=message) as err:
        load_class_map(path, "isic2019", get_source("isic2019").classes, "ph2", get_source("ph2").classes)
    assert str(path) in str(err.value)
    with pytest.raises(ValueError, match="trained_on is 'isic2019' but the evaluation has trained_on='ham10000'"):
        load_class_map(path, "ham10000", get_source("ham10000").classes, "ph2", get_source("ph2").classes)


def test_without_a_class_map_other_classes_are_refused_and_same_classes_map_to_themselves():
    ph2 = list(get_source("ph2").classes)
    with pytest.raises(ValueError, match="needs a class map") as err:
        choose_class_map(None, None, "ph2", ph2, "isic2017", list(get_source("isic2017").classes))
    assert "--class_map" in str(err.value)
    assert choose_class_map(None, None, "ph2", ph2, "ph2", ph2) == ClassMap.identity(ph2)


def test_ids_shared_with_the_training_dataset_are_found_with_or_without_downsampled():
    training = pa.table({"sample_id": ["ISIC_0000001_downsampled", "ISIC_0024306", "ISIC_0000009"]})
    rows = pa.table({"sample_id": ["ISIC_0000001", "ISIC_0024306", "IMD002", "ISIC_0000009_downsampled"]})
    np.testing.assert_array_equal(in_training_dataset(rows, training), [True, True, False, True])
