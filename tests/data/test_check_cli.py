"""``python -m dermfuse_data check`` / ``synth`` on PAD-UFES-20 and toy sources: reports, exit status, messages.

What ``check`` promises on every dataset (exit 2 naming the file, damaged images) is in test_source_contract.py.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from dermfuse_data.check import check_dataset, exit_code, verify_image
from dermfuse_data.errors import DatasetError
from dermfuse_data.schema import build_table
from dermfuse_data.sources.base import DatasetSource
from tests.data._support import edit_csv, read_csv, set_cell

REPO = Path(__file__).resolve().parents[2]
DATASET = "pad_ufes_20"


# ------------------------------------------------------------------ real metadata, miniature
def test_check_real_metadata_json(real_pad_root, cli):
    rc, out, err = cli("check", "--dataset", "pad_ufes_20", "--root", real_pad_root, "--json")
    report = json.loads(out)
    assert rc == 0, report["problems"]
    assert report["dataset"] == "pad_ufes_20" and report["root"] == str(real_pad_root)
    assert report["rows"] == 2298 and report["groups"] == 1373
    assert report["classes"] == {"ACK": 730, "BCC": 845, "MEL": 52, "NEV": 244, "SCC": 192, "SEK": 235}
    assert report["problems"] == [] and report["images_verified"] == 2298
    assert sum(report["splits"].values()) == 2298 and min(report["splits"].values()) > 200
    assert report["split_kind"].startswith("grouped")
    assert report["missing"]["smoke"] == 804 and report["missing"]["grew"] == 402  # empty and UNK
    assert report["missing"]["age"] == 0 and len(report["missing"]) == 23
    assert "verifying images" in err  # progress bar on stderr
    # tabular encoding of the 21 non-leaking clinical features (categories seen in train + missing)
    assert report["encoded_widths"] == {
        "smoke": 3,
        "drink": 3,
        "background_father": 13,
        "background_mother": 11,
        "age": 2,
        "pesticide": 3,
        "gender": 3,
        "skin_cancer_history": 3,
        "cancer_history": 3,
        "has_piped_water": 3,
        "has_sewage_system": 3,
        "fitspatrick": 6,
        "region": 15,
        "diameter_1": 2,
        "diameter_2": 2,
        "itch": 3,
        "grew": 3,
        "hurt": 3,
        "changed": 3,
        "bleed": 3,
        "elevation": 3,
    }
    assert report["encoded_width"] == 93


def test_check_miniature_human_report(synth_root, cli):
    rc, out, err = cli("check", "--dataset", "pad_ufes_20", "--root", synth_root)
    assert rc == 0
    for text in (
        "PAD-UFES-20",
        "groups (patient)",
        "classes",
        "SEK",
        "missing values per metadata",
        "fitspatrick",
        "no problems",
    ):
        assert text in out
    assert "Traceback" not in out + err


def test_check_miniature_json_no_verify(synth_root, cli):
    rc, out, _ = cli("check", "--dataset", "pad_ufes_20", "--root", synth_root, "--json", "--no-verify-images")
    report = json.loads(out)
    assert rc == 0 and report["problems"] == [] and report["images_verified"] == 0
    assert report["rows"] == len(read_csv(synth_root / "metadata.csv")[1])
    assert all(n >= 10 for n in report["classes"].values()) and len(report["classes"]) == 6
    assert sum(report["splits"].values()) == report["rows"] and report["splits"]["test"] > 0
    assert any("not verified" in w for w in report["warnings"])


def test_module_entry_point_subprocess(synth_root):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dermfuse_data",
            "check",
            "--dataset",
            "pad_ufes_20",
            "--root",
            str(synth_root),
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["rows"] == 160 and report["problems"] == [] and report["images_verified"] == 160
    assert "Traceback" not in proc.stderr


def test_synth_command_writes_readable_miniature(tmp_path, cli):
    rc, out, _ = cli("synth", "--dataset", "pad_ufes_20", "--out", tmp_path / "mini", "--seed", "5")
    assert rc == 0 and "SYNTHETIC" in out and "160 images" in out
    assert (tmp_path / "mini" / "metadata.csv").is_file()
    assert len(list((tmp_path / "mini" / "images" / "imgs_part_2").glob("*.png"))) > 30


# ------------------------------------------------------------------ bad input
def test_unreadable_images_exit_1_naming_files(mini, cli):
    pngs = sorted((mini / "images").rglob("*.png"))
    truncated, garbage = pngs[3], pngs[10]
    truncated.write_bytes(truncated.read_bytes()[:200])
    garbage.write_bytes(b"\x89PNG garbage" * 10)
    rc, out, err = cli("check", "--dataset", "pad_ufes_20", "--root", mini, "--json")
    report = json.loads(out)
    assert rc == 1 and report["readable"] is True and report["rows"] == 160
    assert len(report["problems"]) == 2
    assert all(p.startswith("unreadable image: ") for p in report["problems"])
    assert any(str(truncated) in p for p in report["problems"])
    assert any(str(garbage) in p for p in report["problems"])

    rc, out, err = cli("check", "--dataset", "pad_ufes_20", "--root", mini)
    assert rc == 1 and "2 problem(s)" in out and truncated.name in out and "Traceback" not in out + err

    rc, out, _ = cli("check", "--dataset", "pad_ufes_20", "--root", mini, "--no-verify-images")
    assert rc == 0  # only decoding finds them


def test_word_in_numeric_metadata_column_named_by_sample(mini, cli):
    header, rows = read_csv(edit_csv(mini / "metadata.csv", set_cell(6, "age", "forty"), end="\n"))
    img_id = rows[6][header.index("img_id")]
    rc, out, err = cli("check", "--dataset", "pad_ufes_20", "--root", mini, "--json", "--no-verify-images")
    report = json.loads(out)
    assert rc == 1 and "Traceback" not in out + err
    assert report["problems"] == [
        f"not a number in a numeric metadata column: {img_id}: column 'age' "
        "holds 'forty'\n  -> fix the cell in the metadata file, or leave it "
        "empty (missing)"
    ]


def test_images_far_off_the_usual_size_or_mode_are_warnings_naming_files(mini, cli):
    """1x1, 1000x900 among ~100 px, 16-bit, CMYK, EXIF-turned: each decodes, each is named, none is a problem."""
    pngs = sorted((mini / "images").rglob("*.png"))
    tiny, huge, deep, cmyk, turned = pngs[1], pngs[2], pngs[3], pngs[4], pngs[5]
    Image.new("RGB", (1, 1)).save(tiny)
    Image.new("RGB", (1000, 900), (90, 60, 50)).save(huge)
    Image.fromarray(np.full((90, 120), 40000, np.uint16)).save(deep)  # I;16
    Image.new("CMYK", (120, 90), (0, 80, 90, 30)).save(cmyk, format="JPEG")  # a CMYK JPEG under a .png name
    photo = Image.open(turned)
    exif = photo.getexif()
    exif[0x0112] = 6
    photo.save(turned, exif=exif)
    rc, out, err = cli("check", "--dataset", "pad_ufes_20", "--root", mini, "--json")
    report = json.loads(out)
    assert rc == 0 and report["problems"] == [], report["problems"]
    warnings = report["warnings"]
    far = [w for w in warnings if w.startswith("image far off the usual size: ")]
    assert len(far) == 2 and str(tiny) in far[0] + far[1] and f"{huge} is 1000x900" in far[0] + far[1]
    assert any(f"{deep} is I;16 (usual RGB): scaled to 8 bit by its high byte" in w for w in warnings)
    assert any(f"{cmyk} is CMYK (usual RGB)" in w for w in warnings)
    assert f"image turned by EXIF: {turned} has EXIF orientation 6: turned upright" in warnings
    assert len(warnings) == 5
    rc, out, _ = cli("check", "--dataset", "pad_ufes_20", "--root", mini)
    assert rc == 0 and "warning: image far off the usual size" in out and "no problems" in out


# ------------------------------------------------------------------ generic parts
def _png(**kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, **kw)
    return buf.getvalue()


def test_verify_image_formats(tmp_path):
    good_png, good_jpg = _png(format="PNG"), _png(format="JPEG", quality=90)
    cases = {
        "ok.png": good_png,
        "ok.jpg": good_jpg,
        "cut.png": good_png[: len(good_png) // 2],
        "cut.jpg": good_jpg[: len(good_jpg) // 2],
        "junk.png": b"hello" * 50,
        "empty.png": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    assert verify_image(tmp_path / "ok.png") is None and verify_image(tmp_path / "ok.jpg") is None
    for name in ("cut.png", "cut.jpg", "junk.png", "empty.png"):
        assert verify_image(tmp_path / name), name
    assert "cannot open" in verify_image(tmp_path / "absent.png")


def test_verify_image_dicom(tmp_path):
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    ds.PixelData = np.zeros((8, 8), np.uint16).tobytes()
    ds.save_as(tmp_path / "ok.dcm", enforce_file_format=True)
    (tmp_path / "bad.dcm").write_bytes(b"not dicom" * 20)
    assert verify_image(tmp_path / "ok.dcm") is None
    assert "DICOM" in verify_image(tmp_path / "bad.dcm")


def test_check_is_generic_official_split_masks_and_bad_labels(tmp_path):
    """A toy source with an official split, masks and an out-of-range label: all reported."""
    img = tmp_path / "a.png"
    img.write_bytes(_png(format="PNG"))
    rows = [
        dict(
            sample_id=f"s{i}",
            image_path=str(img),
            label=i % 2,
            label_name="x",
            group_id=f"g{i // 2}",
            official_split=["train", "test"][i // 4],
            mask_path=str(tmp_path / "missing_mask.png") if i == 0 else None,
            meta_site=["arm", "", None, "unknown"][i % 4],
        )
        for i in range(8)
    ]
    rows[7]["label"] = 5
    table = build_table(rows, ["site"])
    toy = DatasetSource("toy", "Toy", ("a", "b"), read=lambda root: table)
    report = check_dataset(toy, tmp_path, progress=False)
    assert report["split_kind"] == "official" and report["splits"] == {"train": 4, "val": 0, "test": 4}
    assert report["classes"] == {"a": 4, "b": 3} and report["groups"] == 4
    assert report["missing"] == {"site": 6}  # null, "" and "unknown"
    assert any("unknown labels [5]" in p for p in report["problems"])
    assert any(p.startswith("missing mask: ") and "missing_mask.png" in p for p in report["problems"])
    assert exit_code(report) == 1

    def broken(root):
        raise DatasetError("bad thing", path=root / "f.csv", hint="fix it")

    report = check_dataset(DatasetSource("toy", "Toy", ("a",), read=broken), tmp_path)
    assert exit_code(report) == 2 and report["problems"] == [f"{tmp_path / 'f.csv'}: bad thing\n  -> fix it"]
