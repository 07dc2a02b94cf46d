"""Fixtures shared by the dataset-source, synthetic-miniature and ``check`` tests.

A per-dataset test module names its dataset in ``DATASET``; ``synth_root`` and ``mini`` are then that
dataset's miniature and a private copy of it.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from dermfuse_data import synthetic
from dermfuse_data.__main__ import main
from dermfuse_data.synthetic import write_synthetic
from tests.data._support import REAL_METADATA, tiny_image

#: the folder each miniature is written to, named as its publisher's (PH2's reader also accepts the
#: folder holding ``PH2Dataset/``); a source not listed is written to a folder named as the dataset
MINIATURE_FOLDERS = {
    "pad_ufes_20": "PAD-UFES-20",
    "ham10000": "HAM10000",
    "isic2017": "ISIC2017",
    "isic2018_task1": "ISIC2018",
    "isic2019": "ISIC2019",
    "ph2": "PH2Dataset",
    "cbis_ddsm": "CBIS",
    "csv": "MyData",
}


@pytest.fixture(scope="session")
def miniature(tmp_path_factory) -> Callable[[str], Path]:
    """``miniature(dataset)``: root of the dataset's seed-0 miniature, written once per session; do not modify."""
    roots: dict[str, Path] = {}

    def root_of(dataset: str) -> Path:
        if dataset not in roots:
            folder = tmp_path_factory.mktemp(f"{dataset}_synth") / MINIATURE_FOLDERS.get(dataset, dataset)
            roots[dataset] = write_synthetic(dataset, folder, 0)
        return roots[dataset]

    return root_of


@pytest.fixture
def synth_root(miniature, request) -> Path:
    """The seed-0 miniature of the test module's ``DATASET``; do not modify."""
    return miniature(request.module.DATASET)


@pytest.fixture
def mini(synth_root, tmp_path) -> Path:
    """A private, modifiable copy of the test module's miniature."""
    return Path(shutil.copytree(synth_root, tmp_path / synth_root.name))


@pytest.fixture(scope="session")
def real_pad_root(tmp_path_factory) -> Path:
    """PAD-UFES-20 layout in tmp: the real metadata.csv (read in place) + stand-in PNGs per img_id."""
    real_csv = REAL_METADATA / "pad_ufes_20" / "metadata.csv"
    if not real_csv.is_file():
        pytest.skip("../shared/real_metadata is absent (only the developers' checkout has it)")
    root = tmp_path_factory.mktemp("pad_real")
    (root / "metadata.csv").write_bytes(real_csv.read_bytes())
    data = tiny_image("PNG")
    with open(real_csv, newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            part = root / "images" / f"imgs_part_{i % 3 + 1}"
            part.mkdir(parents=True, exist_ok=True)
            (part / row["img_id"]).write_bytes(data)
    return root


@pytest.fixture
def cli(capsys):
    """Run ``python -m dermfuse_data`` in-process: ``cli(*argv) -> (exit status, stdout, stderr)``."""

    def run(*argv: str) -> tuple[int, str, str]:
        rc = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return rc, out, err

    return run


@pytest.fixture
def synthetic_code_copy(tmp_path, monkeypatch) -> Path:
    """A copy of the reader and writer modules at ``tmp_path``, which :mod:`dermfuse_data.synthetic`
    hashes instead of the installed ones (:func:`~dermfuse_data.synthetic.miniature_sources`)."""
    for folder in ("synthetic", "sources"):
        shutil.copytree(
            synthetic.SYNTHETIC_DIR.parent / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    monkeypatch.setattr(synthetic, "SYNTHETIC_DIR", tmp_path / "synthetic")
    monkeypatch.setattr(synthetic, "SOURCES_DIR", tmp_path / "sources")
    return tmp_path
