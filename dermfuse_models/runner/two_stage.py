"""Stage 2 of a segment-then-classify pipeline (DualNet, arXiv 2510.17773): classify with predicted masks.

``python -m dermfuse_models.runner two-stage fit --config experiments/dualnet/config.yaml [--key=value ...]
[--seg_ckpt=PATH] [--seg_experiment=dualnet_segmenter] [--mask_threshold=0.5] [--predict_only=true]``

1. Finds the stage-1 segmenter: ``--seg_ckpt`` (a checkpoint inside its run folder) or, by default,
   the best checkpoint of the latest *finished* run of ``--seg_experiment`` (a run with
   ``metrics.json``) trained on the same kind of data (synthetic segmenter for a synthetic
   classifier, real for real, never mixed).
2. Predicts a lesion mask for every sample of the classification dataset ONCE, at the segmenter's
   training size, thresholds it, resizes it (nearest) to the classifier's ``data.image_size`` and
   stores it as a mask file (:mod:`dermfuse_data.mask_file`) in the dataset's cache folder, keyed by
   the checkpoint's content hash, the dataset's image cache key, both sizes and the threshold: a
   rerun (or another DDP rank, or a sweep run) reuses it.
3. Fits the classifier with ``data.predicted_masks=<file>`` (:class:`TwoStageCLI`: the same parse of the
   same CLI): the DataModule serves the predicted masks as ``mask``.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from dermfuse_data.cache import ImageCache, open_or_build
from dermfuse_data.datamodule import DermDataModule, cached_image
from dermfuse_data.mask_file import write_mask_file
from dermfuse_data.transforms import build_transform
from dermfuse_models.nets.dualnet_unet import predict_masks
from dermfuse_models.runner.cli import DermCLI, exit_on_user_error
from dermfuse_models.runner.errors import one_line_errors
from dermfuse_models.runner.rebuild import find_run_config, rebuild
from dermfuse_models.runner.runs import best_checkpoint, latest_finished_run


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class MissingStageError(RuntimeError):
    """Stage 1 has not produced what stage 2 needs (no finished segmenter run)."""


def find_segmenter_checkpoint(seg_experiment: str, synthetic: bool) -> Path:
    """Best checkpoint of the latest finished ``seg_experiment`` run on synthetic (or real) data."""
    run = latest_finished_run(seg_experiment, synthetic=synthetic)
    if run is None:
        kind = "synthetic" if synthetic else "real"
        raise MissingStageError(
            f"no finished {seg_experiment!r} run on {kind} data under runs/{seg_experiment}/ "
            "(a finished run has metrics.json). Train the segmenter first "
            "(make train-dualnet-seg), or pass its checkpoint: make train-dualnet-cls SEG_CKPT=..."
        )
    return best_checkpoint(run)


def _images(cache: ImageCache, rows: range, transform) -> torch.Tensor:
    return torch.stack([transform(cached_image(cache, i)).as_subclass(torch.Tensor) for i in rows])


def predicted_mask_path(
    datamodule: DermDataModule, seg_image_size: int, checkpoint_sha: str, threshold: float
) -> tuple[Path, ImageCache]:
    """Where the masks of this checkpoint for this dataset/size/threshold live, and the images they are
    predicted from (the dataset's image cache at the segmenter's size, built once)."""
    dm = datamodule
    table = dm.table
    folder = dm.cache_dir / dm.hparams.dataset
    seg_cache = open_or_build(
        folder,
        "images",
        table.column("sample_id").to_pylist(),
        table.column("image_path").to_pylist(),
        [None] * len(table),
        seg_image_size,
        dm.cache_worker_count,
        key=dm.hparams.cache_key,
    )
    size = dm.hparams.image_size
    key = hashlib.sha256(f"{checkpoint_sha}|{seg_cache.path.name}|{size}|{threshold}".encode()).hexdigest()[:20]
    return folder / f"predicted-masks-{size}x{size}-{key}.arrow", seg_cache


def predict_mask_file(
    segmenter: torch.nn.Module | Callable[[], torch.nn.Module],
    seg_image_size: int,
    datamodule: DermDataModule,
    checkpoint_sha: str,
    threshold: float = 0.5,
    batch_size: int = 16,
    device: str | torch.device | None = None,
) -> Path:
    """Predict (once) and store masks for every sample of ``datamodule``'s dataset; returns the file.

    Args:
        segmenter: net mapping normalised images to ``{"logits": (B,1,h,w)}`` (e.g. ``DeepUNet``), or a
            zero-argument function building it (called only when the masks are not cached yet).
        seg_image_size: side of the images the segmenter was trained on (its ``data.image_size``).
        datamodule: the classification DataModule (its dataset, root, cache folder, image_size).
        checkpoint_sha: content hash of the segmenter checkpoint (part of the cache key).
        threshold: probability above which a pixel is lesion.
    """
    out, seg_cache = predicted_mask_path(datamodule, seg_image_size, checkpoint_sha, threshold)
    if out.exists():
        print(f"predicted masks (cached): {out}", file=sys.stderr)
        return out
    if not isinstance(segmenter, torch.nn.Module):
        segmenter = segmenter()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    segmenter = segmenter.to(device).eval()
    transform = build_transform(False)
    size = datamodule.hparams.image_size

    def masks() -> Iterator[np.ndarray]:
        for start in range(0, len(seg_cache), batch_size):
            rows = range(start, min(start + batch_size, len(seg_cache)))
            pred = predict_masks(segmenter, _images(seg_cache, rows, transform).to(device), threshold)
            if pred.shape[-2:] != (size, size):
                pred = F.interpolate(pred.float(), size=(size, size), mode="nearest")
            yield from (pred[:, 0] > 0.5).to(torch.uint8).cpu().numpy()

    print(f"predicting lesion masks for {len(seg_cache)} {datamodule.hparams.dataset} images ...", file=sys.stderr)
    write_mask_file(
        out,
        seg_cache.sample_ids,
        masks(),
        (size, size),
        metadata={
            "checkpoint_sha256": checkpoint_sha,
            "threshold": threshold,
            "segmenter_image_size": seg_image_size,
            "dataset": datamodule.hparams.dataset,
        },
    )
    print(f"predicted masks: {out}", file=sys.stderr)
    return out


def prepare_predicted_masks(
    data: dict, seg_ckpt: str | None = None, seg_experiment: str = "dualnet_segmenter", threshold: float = 0.5
) -> Path:
    """Steps 1-2 of the module doc for a classifier's parsed ``data`` section; returns the mask file."""
    data = {k: v for k, v in data.items() if k != "predicted_masks"}
    datamodule = DermDataModule(**data)
    checkpoint = Path(seg_ckpt) if seg_ckpt else find_segmenter_checkpoint(seg_experiment, datamodule.is_synthetic)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"segmenter checkpoint {checkpoint} does not exist")
    seg_data = (yaml.safe_load(find_run_config(checkpoint).read_text()) or {}).get("data") or {}
    seg_size = int(seg_data.get("image_size") or data["image_size"])
    print(f"stage 1 segmenter: {checkpoint}", file=sys.stderr)
    return predict_mask_file(
        lambda: rebuild(checkpoint).model.net, seg_size, datamodule, file_sha256(checkpoint), threshold
    )


class TwoStageCLI(DermCLI):
    """``DermCLI`` whose ``fit`` first serves the stage-1 masks (predicted once) as ``data.predicted_masks``.

    One parse: the classifier's own parsed ``data`` section is what the masks are predicted for.
    Extra arguments: ``--seg_ckpt`` (default: the latest finished ``--seg_experiment`` run),
    ``--mask_threshold`` and ``--predict_only`` (predict and stop).
    """

    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_argument(
            "--seg_ckpt",
            type=str | None,
            default=None,
            help="stage-1 checkpoint (default: best of the latest finished --seg_experiment run)",
        )
        parser.add_argument(
            "--seg_experiment",
            type=str,
            default="dualnet_segmenter",
            help="experiment name of the stage-1 runs (runs/<name>/)",
        )
        parser.add_argument("--mask_threshold", type=float, default=0.5, help="lesion probability threshold")
        parser.add_argument("--predict_only", type=bool, default=False, help="predict the masks, do not train")

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand]
        masks = prepare_predicted_masks(cfg.data.as_dict(), cfg.seg_ckpt, cfg.seg_experiment, cfg.mask_threshold)
        if cfg.predict_only:
            raise SystemExit(0)
        cfg.data.predicted_masks = str(masks)
        super().before_instantiate_classes()


def main(argv: list[str] | None = None) -> None:
    """Command line (see module doc): ``[fit] --config ... [--seg_ckpt=...]``; clear errors exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        argv = ["fit", *argv]
    try:
        with one_line_errors(MissingStageError, FileNotFoundError, ValueError):
            TwoStageCLI(args=argv)
    except Exception as err:  # config, run folder, checkpoint, failed fit: their message and exit status
        exit_on_user_error(err)


if __name__ == "__main__":
    main()
