"""The ``csv`` source (a user's own table + spec): what its spec declares, and the errors a wrong table or spec gets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dermfuse_data.errors import DatasetError
from dermfuse_data.sources import get_source
from tests.data._support import edit_csv, set_cell

DATASET = "csv"
SOURCE = get_source("csv")


def test_the_spec_declares_classes_features_group_and_masks(synth_root):
    declared = SOURCE.for_data(synth_root)
    assert declared.classes == ("nevus", "melanoma", "keratosis") and declared.group == "patient"
    assert declared.has_masks and SOURCE.classes == () and not SOURCE.has_masks
    kinds = {f.name: (f.kind, f.leaks_label) for f in declared.features}
    assert kinds == {
        "sex": ("categorical", False),
        "site": ("categorical", False),
        "age": ("numeric", False),
        "biopsy": ("categorical", True),
    }
    table = SOURCE.read(synth_root)
    first = table.slice(0, 1).to_pylist()[0]
    assert first["sample_id"] == "S0000" and first["image_path"].endswith("images/S0000.png")
    assert first["mask_path"].endswith("masks/S0000.png") and first["group_id"].startswith("P")
    assert {"meta_age", "meta_sex", "meta_site", "meta_biopsy"} <= set(table.column_names)


def test_other_file_names_by_option_and_an_absolute_table(mini, tmp_path):
    shutil.move(mini / "samples.yaml", mini / "columns.yaml")
    with pytest.raises(DatasetError, match="spec samples.yaml not found"):
        SOURCE.for_data(mini)
    assert SOURCE.for_data(mini, {"spec": "columns.yaml"}).classes == ("nevus", "melanoma", "keratosis")
    table = SOURCE.read(mini, spec="columns.yaml", table=str(mini / "samples.csv"))
    assert table.num_rows == 72
    with pytest.raises(DatasetError, match=r"unknown option\(s\) \['tabel'\] for csv"):
        SOURCE.read(mini, tabel="samples.csv")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("image: image\nlabel: diagnosis\n", r"missing key\(s\) \['classes'\]"),
        ("image: image\nlabel: diagnosis\nclasses: [a]\ncolour: [x]\n", r"unknown key\(s\) \['colour'\]"),
        ("image: image\nlabel: diagnosis\nclasses: [a, a]\n", "name a class twice"),
        ("image: image\nlabel: diagnosis\nclasses: [a]\nnumeric: [diagnosis]\n", "both a metadata feature and the"),
        ("image: [image\n", "not valid YAML"),
    ],
)
def test_a_wrong_spec_names_the_file_and_the_key(mini, spec, message):
    (mini / "samples.yaml").write_text(spec)
    with pytest.raises(DatasetError, match=message) as err:
        SOURCE.read(mini)
    assert str(mini / "samples.yaml") in str(err.value)


def test_a_wrong_table_names_the_row_and_column(mini):
    edit_csv(mini / "samples.csv", set_cell(3, "diagnosis", "naevus"), end="\n")
    with pytest.raises(DatasetError, match=r"\(row 5\): unknown label 'naevus' in column 'diagnosis'") as err:
        SOURCE.read(mini)
    assert "nevus" in err.value.hint
    shutil.copy(mini / "samples.yaml", mini / "spec.bak")
    (mini / "samples.yaml").write_text((mini / "spec.bak").read_text().replace("numeric: [age]", "numeric: [weight]"))
    with pytest.raises(DatasetError, match=r"missing column\(s\) \['weight'\]"):
        SOURCE.read(mini)


def test_a_split_column_is_the_official_split(mini):
    def add_split(header, rows):
        return header + ["split"], [r + [("train", "val", "test")[i % 3]] for i, r in enumerate(rows)]

    edit_csv(mini / "samples.csv", add_split, end="\n")
    (mini / "samples.yaml").write_text((mini / "samples.yaml").read_text() + "split: split\n")
    table = SOURCE.read(mini)
    assert table.column("official_split").to_pylist()[:3] == ["train", "val", "test"]
    edit_csv(mini / "samples.csv", set_cell(0, "split", "holdout"), end="\n")
    with pytest.raises(DatasetError, match="split 'holdout' in column 'split' is not one of"):
        SOURCE.read(mini)


def test_the_readme_example_spec_reads_the_miniature(mini):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Your own data: the `csv` source", 1)[1]
    spec = section.split("the spec is\n\n```yaml\n", 1)[1].split("```", 1)[0]
    (mini / "samples.yaml").write_text(spec)
    declared = SOURCE.for_data(mini)
    assert declared.classes == ("nevus", "melanoma", "keratosis") and declared.group == "patient"
    assert {f.name: f.kind for f in declared.features} == {
        "sex": "categorical",
        "site": "categorical",
        "age": "numeric",
        "biopsy": "categorical",
    }
    assert [f.name for f in declared.features if f.leaks_label] == ["biopsy"]
    assert SOURCE.read(mini).num_rows == 72
