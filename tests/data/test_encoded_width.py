"""``check`` reports the width of each dataset's tabular metadata encoding, as a model gets it."""

from __future__ import annotations

import json

import pytest

from dermfuse_data.datamodule import DermDataModule
from dermfuse_data.sources import SOURCE_MODULES, get_source
from dermfuse_data.tabular import select_features

#: measured on the seed-0 miniatures (categories seen in the training split + one missing column each);
#: for a source not listed (a newly added one) only the agreement of ``check``, the feature selection and
#: the datamodule is tested, not the numbers
SYNTHETIC_WIDTHS = {
    "cbis_ddsm": {"breast_density": 5, "mass_shape": 7, "mass_margins": 5, "calc_type": 9, "calc_distribution": 6},
    "ham10000": {"age": 2, "sex": 3, "localization": 13},
    "isic2017": {"age_approximate": 2, "sex": 3},
    "isic2018_task1": {},
    "isic2019": {"age_approx": 2, "anatom_site_general": 8, "sex": 3},
    "pad_ufes_20": {
        "smoke": 3,
        "drink": 3,
        "background_father": 7,
        "background_mother": 6,
        "age": 2,
        "pesticide": 3,
        "gender": 3,
        "skin_cancer_history": 3,
        "cancer_history": 3,
        "has_piped_water": 3,
        "has_sewage_system": 3,
        "fitspatrick": 5,
        "region": 14,
        "diameter_1": 2,
        "diameter_2": 2,
        "itch": 3,
        "grew": 3,
        "hurt": 3,
        "changed": 3,
        "bleed": 3,
        "elevation": 3,
    },
    "ph2": {},  # every PH2 feature leaks the label
    "csv": {"sex": 3, "site": 6, "age": 2},  # as its spec declares them; biopsy leaks the label
}


def test_every_expected_width_names_a_registered_dataset():
    assert set(SYNTHETIC_WIDTHS) <= set(SOURCE_MODULES)


@pytest.mark.filterwarnings("ignore:computed split")  # CBIS's official split
@pytest.mark.parametrize("dataset", sorted(SOURCE_MODULES))
def test_check_reports_the_width_the_datamodule_feeds_the_model(dataset, miniature, tmp_path, cli):
    root = miniature(dataset)
    source = get_source(dataset).for_data(root)
    rc, out, _ = cli("check", "--dataset", dataset, "--root", root, "--json", "--no-verify-images")
    report = json.loads(out)
    assert rc == 0, report["problems"]
    expected = SYNTHETIC_WIDTHS.get(dataset, report["encoded_widths"])
    assert report["encoded_widths"] == expected
    assert list(report["encoded_widths"]) == [f.name for f in select_features(source, "all")]
    assert report["encoded_width"] == sum(expected.values())
    dm = DermDataModule(dataset, root=str(root), cache_dir=str(tmp_path / "cache"), image_size=16)
    assert dm.meta_names == list(expected) and dm.meta_groups == list(expected.values())

    rc, out, _ = cli("check", "--dataset", dataset, "--root", root, "--no-verify-images")
    assert rc == 0 and f"{report['encoded_width']} columns, {len(expected)} features" in out
    if expected:
        shown = ", ".join(f"{k} {v}" for k, v in expected.items())
        assert f"\nencoded metadata widths: {shown}\n" in out
    else:
        assert "no non-leaking metadata features to encode" in out
