"""Fixtures shared by the dataset-source, synthetic-miniature and ``check`` tests."""
from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest
from PIL import Image

from dermfuse_data import synthetic
from dermfuse_data.__main__ import main
from dermfuse_data.synthetic.pad_ufes_20 import write_miniature

REAL_METADATA = Path(__file__).resolve().parents[2].parent / "shared" / "real_metadata"
REAL_PAD_CSV = REAL_METADATA / "pad_ufes_20" / "metadata.csv"


def tiny_png() -> bytes:
    """Bytes of a valid 4x4 PNG (written as a stand-in for every real image)."""
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 150, 120)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def real_pad_root(tmp_path_factory) -> Path:
    """PAD-UFES-20 layout in tmp: the real metadata.csv (read in place) + stand-in PNGs per img_id."""
    if not REAL_PAD_CSV.is_file():
        pytest.skip("../shared/real_metadata is absent (only the developers' checkout has it)")
    root = tmp_path_factory.mktemp("pad_real")
    (root / "metadata.csv").write_bytes(REAL_PAD_CSV.read_bytes())
    data = tiny_png()
    with open(REAL_PAD_CSV, newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            part = root / "images" / f"imgs_part_{i % 3 + 1}"
            part.mkdir(parents=True, exist_ok=True)
            (part / row["img_id"]).write_bytes(data)
    return root


@pytest.fixture(scope="session")
def pad_synth_root(tmp_path_factory) -> Path:
    """The PAD-UFES-20 synthetic miniature (seed 0), written once per session; do not modify."""
    return write_miniature(tmp_path_factory.mktemp("pad_synth") / "PAD-UFES-20", 0)


@pytest.fixture
def pad_copy(pad_synth_root, tmp_path) -> Path:
    """A private, modifiable copy of the miniature."""
    return Path(shutil.copytree(pad_synth_root, tmp_path / "PAD-UFES-20"))


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
        shutil.copytree(synthetic.SYNTHETIC_DIR.parent / folder, tmp_path / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(synthetic, "SYNTHETIC_DIR", tmp_path / "synthetic")
    monkeypatch.setattr(synthetic, "SOURCES_DIR", tmp_path / "sources")
    return tmp_path
