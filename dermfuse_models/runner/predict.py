"""``python -m dermfuse_models.runner predict --ckpt PATH --input FOLDER [--meta CSV] [--tta flip]``: new images.

Every image below ``FOLDER`` (JPEG, PNG, BMP, TIFF, DICOM; sub-folders included) is decoded and
resized exactly as the run's cache does (:func:`dermfuse_data.images.load_image` at the run's
``image_size``), normalised as in evaluation and scored by the checkpoint, with the run's classes and
its fitted metadata encoder (restored from the checkpoint). Written into a new folder
``<run>/predictions/<time>-<folder name>/`` (``--out`` to choose another):

* ``predictions.csv``: ``image`` (path relative to FOLDER), ``pred``, ``pred_name``, ``prob_<class>``
  per class (they sum to 1); segmentation nets: ``image``, ``mask``, ``lesion_share`` and one PNG mask
  per image under ``masks/`` at the image's own size (probabilities resized, then thresholded);
* ``predict.json``: what was scored, the images that could not be read, what metadata was not used.

``--meta``: a CSV with one row per image (an ``image`` column, or ``--id-column``, holding the file's
path relative to FOLDER, its name or its name without suffix) and the clinical columns as the training
dataset's publisher names them. Columns the model does not read, features it reads but the CSV lacks,
values never seen in training and images without a row are reported; every gap is encoded as missing
(:func:`dermfuse_data.foreign_metadata.encode_like_training`). Without ``--meta`` every feature is missing.
``make predict-<paper> CKPT=... INPUT=<folder> [META=<csv>] [TTA=flip]`` calls it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors

from dermfuse_data.errors import DatasetError
from dermfuse_data.foreign_metadata import MetadataReport, encode_like_training
from dermfuse_data.images import DICOM_SUFFIXES, load_image
from dermfuse_data.schema import META_PREFIX
from dermfuse_data.sources.publisher_files import read_csv
from dermfuse_data.transforms import build_transform
from dermfuse_models.runner.eval_report import PREDICTIONS_CSV, write_rows
from dermfuse_models.runner.evaluate import checkpoint_parser, eval_folder
from dermfuse_models.runner.gather import stacked
from dermfuse_models.runner.inference import is_segmentation, predict_samples
from dermfuse_models.runner.runs import run_config
from dermfuse_models.runner.summary import write_summary
from dermfuse_models.runner.tta import TTA_VIEWS, check_mode

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", *sorted(DICOM_SUFFIXES))
#: columns ``--meta`` may name its images by, in the order they are looked for
ID_COLUMNS = ("image", "image_id", "img_id", "image_name", "isic_id", "sample_id", "file")


def list_images(folder: str | Path) -> list[tuple[str, Path]]:
    """``(path relative to folder, path)`` of every image below ``folder``, sorted; none is an error."""
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"--input {folder} is not a folder of images")
    found = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    if not found:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) below {folder}")
    return [(p.relative_to(folder).as_posix(), p) for p in found]


class ImageFiles(Dataset):
    """Images decoded and resized as the cache does, with the evaluation transform; unreadable ones ``ok=False``."""

    def __init__(self, images: list[tuple[str, Path]], size: int, meta: np.ndarray | None) -> None:
        self.images, self.size, self.meta = images, size, meta
        self.sample_ids = [name for name, _ in images]
        self.transform = build_transform(False, "none")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        name, path = self.images[i]
        try:
            array, (width, height) = load_image(path, (self.size, self.size))  # the upright original size
            ok = True
        except DatasetError:
            array, ok = np.zeros((self.size, self.size, 3), np.uint8), False
            width = height = self.size
        image = self.transform(tv_tensors.Image(torch.from_numpy(np.array(array)).permute(2, 0, 1)))
        item = {"image": image.as_subclass(torch.Tensor), "label": -1, "sample_id": name, "ok": ok}
        item["size"] = torch.tensor([height, width])
        if self.meta is not None:
            item["meta"] = torch.from_numpy(self.meta[i])
        return item


def _row_keys(name: str) -> tuple[str, ...]:
    path = Path(name)
    return (name, path.name, path.stem, path.with_suffix("").as_posix())


def metadata_table(
    images: list[tuple[str, Path]], csv_path: str | Path, id_column: str | None
) -> tuple[pa.Table, dict]:
    """The ``meta_*`` table of ``images`` (one row each) from ``csv_path`` (module doc) and what did not match."""
    path = Path(csv_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"--meta {path} does not exist")
    table = read_csv(path, [id_column] if id_column else [], what="metadata CSV")
    column = id_column or next((c for c in ID_COLUMNS if c in table.header), None)
    if column is None:
        raise ValueError(
            f"{path}: no image column ({' / '.join(ID_COLUMNS)}) in {table.header}; name it with --id-column"
        )
    rows: dict[str, list[str]] = {}
    for _, cells in table.rows:
        for key in _row_keys(cells[table.col[column]].strip()):
            rows.setdefault(key, cells)
    matched = [next((rows[k] for k in _row_keys(name) if k in rows), None) for name, _ in images]
    used = {id(c) for c in matched if c is not None}
    columns = {"image": [name for name, _ in images]}
    for c in (c for c in table.header if c and c != column):
        cells_of = (None if cells is None else cells[table.col[c]] for cells in matched)
        columns[META_PREFIX + c] = [v if v is not None and v.strip() else None for v in cells_of]
    gaps = {
        "id_column": column,
        "images_without_row": [name for (name, _), cells in zip(images, matched) if cells is None],
        "rows_without_image": sum(1 for _, cells in table.rows if id(cells) not in used),
    }
    return pa.table(columns), gaps


def _metadata(run, images, meta, id_column) -> tuple[np.ndarray | None, MetadataReport | None, dict, list[str]]:
    """The encoded metadata of ``images`` (``None`` when the model reads none) and what to report."""
    dm = run.datamodule
    if not dm.features:
        return None, None, {}, (["the model reads no metadata: --meta is ignored"] if meta else [])
    if meta is None:
        table, gaps = pa.table({"image": [name for name, _ in images]}), {}
        lines = [f"no --meta: the model's {len(dm.features)} clinical features are encoded as missing for every image"]
    else:
        table, gaps = metadata_table(images, meta, id_column)
        lines = []
        if gaps["images_without_row"]:
            shown = gaps["images_without_row"][:5]
            lines.append(f"{len(gaps['images_without_row'])} images have no row in {meta} (all missing): {shown}")
        if gaps["rows_without_image"]:
            lines.append(f"{gaps['rows_without_image']} rows of {meta} name no image below the input folder")
    encoded, report = encode_like_training(dm.encoder, table)
    return encoded, report, gaps, lines + (report.lines() if meta is not None else [])


def mask_writer(folder: Path):
    """A :data:`~dermfuse_models.runner.inference.MaskWriter` saving ``masks/<image>.png`` at each image's size
    (the batch's ``size``: the upright original ``(H, W)`` :class:`ImageFiles` decoded)."""

    def write(ids: list[str], probs: torch.Tensor, threshold: float, sizes: torch.Tensor) -> list[float]:
        shares = []
        for sample_id, prob, (height, width) in zip(ids, probs.float().cpu(), sizes.tolist(), strict=True):
            full = torch.nn.functional.interpolate(prob[None], size=(height, width), mode="bilinear")[0, 0]
            mask = (full >= threshold).numpy()
            out = folder / "masks" / Path(sample_id).with_suffix(".png")
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask.astype(np.uint8) * 255).save(out)
            shares.append(float(mask.mean()))
        return shares

    return write


def predict_folder(
    ckpt: str | Path,
    input_dir: str | Path,
    meta: str | Path | None = None,
    id_column: str | None = None,
    tta: str = "none",
    accelerator: str = "auto",
    devices: int | str = 1,
    batch_size: int | None = None,
    num_workers: int = 0,
    out: str | Path | None = None,
    progress: bool = True,
) -> Path | None:
    """Python API of the command (module doc); returns the output folder (``None`` on DDP ranks > 0)."""
    from dermfuse_models.runner.cli import _is_ddp_child
    from dermfuse_models.runner.rebuild import rebuild

    check_mode(tta)
    images = list_images(input_dir)
    run = rebuild(ckpt)
    encoded, report, gaps, lines = _metadata(run, images, meta, id_column)
    if not _is_ddp_child():
        for line in lines:
            print(line, file=sys.stderr)
    folder = eval_folder(run.run_dir, Path(input_dir).resolve().name, out, kind="predictions")
    segmentation = is_segmentation(run.model)
    dataset = ImageFiles(images, int(run.datamodule.hparams.image_size), encoded)
    records, trainer = predict_samples(
        run.model,
        dataset,
        dataset.sample_ids,
        tta=tta,
        accelerator=accelerator,
        devices=devices,
        precision=(run_config(run.run_dir).get("trainer") or {}).get("precision"),
        batch_size=batch_size or int(run.datamodule.hparams.batch_size),
        num_workers=num_workers,
        progress=progress,
        mask_writer=mask_writer(folder) if segmentation else None,
        passthrough=("ok",),
    )
    if not trainer.is_global_zero:
        return None
    unreadable = [r["sample_id"] for r in records if not bool(r["ok"])]
    kept = [r for r in records if bool(r["ok"])]
    if segmentation:
        header = ["image", "mask", "lesion_share"]
        rows = (
            [r["sample_id"], Path("masks", r["sample_id"]).with_suffix(".png").as_posix(), r["lesion_share"]]
            for r in kept
        )
        for name in unreadable:
            (folder / "masks" / Path(name).with_suffix(".png")).unlink(missing_ok=True)
    else:
        names = run.datamodule.class_names
        probs = stacked(kept, "probs") if kept else np.zeros((0, len(names)))
        header = ["image", "pred", "pred_name", *[f"prob_{n}" for n in names]]
        pred = probs.argmax(axis=1) if len(kept) else []
        rows = ([r["sample_id"], int(k), names[k], *map(float, p)] for r, k, p in zip(kept, pred, probs))
    path = write_rows(folder / PREDICTIONS_CSV, header, rows)
    record = {
        "kind": "prediction",
        "checkpoint": str(run.checkpoint),
        "run_dir": str(run.run_dir),
        "input": str(Path(input_dir).resolve()),
        "meta": None if meta is None else str(Path(meta).resolve()),
        "tta": tta,
        "images": len(kept),
        "unreadable": unreadable,
        "metadata": {**(report.as_dict() if report else {}), **gaps},
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_summary(folder, record, name="predict.json")
    if unreadable:
        print(f"{len(unreadable)} images could not be read and have no prediction: {unreadable[:5]}", file=sys.stderr)
    print(f"predictions of {len(kept)} images: {path}")
    return folder


def build_parser() -> argparse.ArgumentParser:
    """The ``predict`` command's arguments (the LightningCLI ``predict`` takes ``--config`` instead)."""
    parser = checkpoint_parser("predict", __doc__)
    parser.add_argument("--input", required=True, help="folder of images (sub-folders included)")
    parser.add_argument("--meta", default=None, help="CSV of clinical metadata, one row per image")
    parser.add_argument(
        "--id-column", "--id_column", default=None, help=f"--meta's image column (default: {ID_COLUMNS})"
    )
    parser.add_argument("--tta", choices=list(TTA_VIEWS), default="none", help="test-time augmentation")
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--devices", default="1", help="devices (N > 1: DDP)")
    parser.add_argument("--batch-size", "--batch_size", type=int, default=None, help="default: the run's")
    parser.add_argument("--num-workers", "--num_workers", type=int, default=0)
    parser.add_argument("--out", default=None, help="output folder (new or empty)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; user-fixable problems print one message (no traceback) and return 2."""
    from dermfuse_models.runner.explain import latest_checkpoint

    args = build_parser().parse_args(argv)
    try:
        predict_folder(
            args.ckpt or latest_checkpoint(args.experiment),
            args.input,
            args.meta,
            args.id_column,
            args.tta,
            args.accelerator,
            int(args.devices) if str(args.devices).isdigit() else args.devices,
            args.batch_size,
            args.num_workers,
            args.out,
            progress=not args.quiet,
        )
    except (FileNotFoundError, FileExistsError, ValueError, DatasetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
