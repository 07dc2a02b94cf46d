"""One ``LightningDataModule`` for every dataset, task and paper (DESIGN data flow step 5).

source table -> grouped split (saved) -> tabular encoder fitted on train -> decode-once image cache
-> batches ``{"image": (B,3,H,W) float, "label": (B,), "meta": (B,F), "mask": (B,1,H,W), "sample_id"}``.
Without ``root`` the dataset's synthetic miniature is generated (once, into the cache folder) and a
banner says so loudly. ``mask`` comes from the dataset, or from a predicted-mask file
(:mod:`dermfuse_data.mask_file`) in two-stage pipelines.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytorch_lightning as pl
import torch
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler
from torchvision import tv_tensors

from dermfuse_data.augment import parse_augment
from dermfuse_data.cache import CACHE_KEYS, ImageCache, open_or_build
from dermfuse_data.device_augment import DeviceBatchTransform
from dermfuse_data.errors import DataConfigError, DatasetError
from dermfuse_data.feature_ranking import parse_top_k, rank_features_by_label_correlation
from dermfuse_data.loader_options import available_cores, choose_num_workers, resolve_augment_on
from dermfuse_data.mask_file import MaskFile
from dermfuse_data.sources import SOURCE_MODULES, get_source
from dermfuse_data.splits import load_or_make_splits, split_identity
from dermfuse_data.storage import default_cache_dir, mark_used, shareable
from dermfuse_data.synthetic import miniature_key, write_synthetic
from dermfuse_data.tabular import TabularEncoder, select_features
from dermfuse_data.transforms import build_transform


def synthetic_root(dataset: str, base: Path, seed: int = 0) -> Path:
    """The synthetic miniature of ``dataset`` under ``base``, generated once (atomically) per seed.

    The folder name carries a hash of the code that miniature is made from
    (:func:`~dermfuse_data.synthetic.miniature_key`: the shared synthetic helpers, the dataset's
    writer and its reader), so it is rewritten when that code changes and only then.
    """
    final = base / f"{dataset}-seed{seed}-{miniature_key(dataset)}"
    marker = final / ".dermfuse-synthetic"
    if not marker.exists():
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=base, prefix=f".{dataset}-"))
        try:
            root = write_synthetic(dataset, tmp, seed)
            (tmp / ".dermfuse-synthetic").write_text(str(Path(root).resolve().relative_to(tmp.resolve())))
            shareable(tmp)  # mkdtemp made it 0700: group members share the cache folder
            os.rename(tmp, final)
        except OSError:
            if not marker.exists():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    mark_used(marker)
    return final / marker.read_text()


#: synthetic miniatures announced in this process: dataset -> root
_ANNOUNCED: dict[str, Path] = {}


def synthetic_banner(dataset: str, root: Path) -> None:
    """Print, to stderr, that the run uses generated data (never mistaken for a real result).

    Once per process and on rank 0 only (``pytorch_lightning``'s rank, from the launcher's environment): the
    banner the first time, one line for another synthetic dataset later in the same process (the DualNet
    segmenter's, in stage 2), nothing again for one already announced (a DataModule built twice).
    """
    root = Path(root)
    if rank_zero_only.rank != 0 or _ANNOUNCED.get(dataset) == root:
        return
    first = not _ANNOUNCED
    _ANNOUNCED[dataset] = root
    line = "=" * 78
    text = (
        f"\n{line}\n  SYNTHETIC DATA: no root given for {dataset!r}; using the generated miniature at\n"
        f"  {root}\n  Numbers from this run say nothing about the paper. Pass DATA_ROOT=... "
        f"(--data.root) for real data.\n{line}\n"
        if first
        else f"also synthetic: {dataset!r}, the generated miniature at {root}"
    )
    print(text, file=sys.stderr, flush=True)


def cached_image(cache: ImageCache, row: int) -> tv_tensors.Image:
    """Row ``row`` of ``cache`` as a writable (3, H, W) uint8 ``tv_tensors.Image`` (copied off the memory map)."""
    return tv_tensors.Image(torch.from_numpy(np.array(cache.image(row))).permute(2, 0, 1))


class SampleDataset(Dataset):
    """Rows of the cache as model-ready dicts (see module doc).

    ``masks``: a :class:`MaskFile` whose masks replace the cache's (predicted masks), or ``None``.
    ``transform`` ``None``: image and mask stay uint8 (augmented and normalised on the device,
    :class:`~dermfuse_data.device_augment.DeviceBatchTransform`).
    """

    def __init__(
        self,
        cache: ImageCache,
        rows: np.ndarray,
        labels: np.ndarray,
        meta: np.ndarray | None,
        sample_ids: list[str],
        with_mask: bool,
        transform,
        masks: MaskFile | None = None,
    ):
        self.cache, self.rows, self.labels, self.meta = cache, rows, labels, meta
        self.sample_ids, self.with_mask, self.transform = sample_ids, with_mask, transform
        self.masks = masks

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        row = int(self.rows[i])
        image = cached_image(self.cache, row)
        out = {"label": int(self.labels[i]), "sample_id": self.sample_ids[i]}
        if self.with_mask:
            m = self.masks.mask(self.sample_ids[i]) if self.masks is not None else self.cache.mask(row)
            if m is None:
                raise DatasetError(
                    f"sample {self.sample_ids[i]} has no mask",
                    path=self.cache.path,
                    hint="this dataset has no masks: set use_masks=false",
                )
            mask = tv_tensors.Mask(torch.from_numpy(np.array(m))[None])
            if self.transform is not None:
                image, mask = self.transform(image, mask)
                mask = mask.float()
            out["mask"] = mask.as_subclass(torch.Tensor)
        elif self.transform is not None:
            image = self.transform(image)
        out["image"] = image.as_subclass(torch.Tensor)
        if self.meta is not None:
            out["meta"] = torch.from_numpy(self.meta[i])
        return out


class DermDataModule(pl.LightningDataModule):
    """Any dermfuse dataset as train/val/test loaders.

    Args:
        dataset: source name (``pad_ufes_20``, ...).
        root: the dataset as its publisher ships it; ``None`` = synthetic miniature.
        task: ``classification`` or ``segmentation`` (segmentation always serves masks).
        image_size: square side the cache is resized to.
        meta_features: ``"all"`` non-leaking features, a list of names, ``None`` for images only, or
            ``"top<K>"`` (e.g. ``top5``): the K non-leaking features most correlated with the label on
            the TRAINING split (ViTAtt's HC-5 ablation; see
            :func:`~dermfuse_data.feature_ranking.rank_features_by_label_correlation`). The chosen
            names are printed and stored in checkpoints (:meth:`state_dict`).
        allow_leaky_metadata: permit features that encode the label (for studying the leak).
        use_masks: also serve lesion masks in classification (attention regularisation).
        sampler: ``random`` or ``balanced`` (inverse-frequency ``WeightedRandomSampler``).
        augment: a preset (``none`` | ``light`` | ``standard``) or a list of named steps with
            parameters (:mod:`dermfuse_data.augment`), training split only.
        augment_on: ``cpu`` (per sample in the workers, torchvision), ``device`` (per batch on the
            training device, kornia, per-sample parameters; workers then serve uint8) or ``auto``
            (``device`` on an accelerator, else ``cpu``; :mod:`dermfuse_data.loader_options`).
        num_workers: DataLoader workers per process, or ``auto`` (from the cores and the measured
            per-worker rate, :func:`~dermfuse_data.loader_options.auto_num_workers`).
        pin_memory: page-locked batches; ``None`` = on when training on CUDA.
        persistent_workers: keep workers alive between epochs (when there are workers).
        prefetch_factor: batches each worker prepares ahead (``None``: torch's default, 2).
        cache_workers: decoders building the image cache, or ``auto`` (every core this process may use).
        use_official_split: keep the publisher's split where it defines one.
        resplit: regenerate the dataset's saved split from the current samples (by default the saved
            split file is kept: new samples are placed by group and no saved sample moves; see
            :func:`~dermfuse_data.splits.load_or_make_splits`).
        cache_dir: where splits, caches and synthetic data go (default
            :func:`~dermfuse_data.storage.default_cache_dir`, ``$DERMFUSE_CACHE``).
        cache_key: ``stat`` (path, size, mtime, ctime, inode of every file; fast) or ``content`` (a hash
            of every file's bytes; reads the whole dataset once per run, immune to restored timestamps).
        source_options: keyword options of the source's ``read`` (e.g. ``{abnormality: mass}``).
        predicted_masks: path of a mask file (:mod:`dermfuse_data.mask_file`, ``sample_id -> mask``
            at ``image_size``) served as ``mask`` instead of the dataset's masks, for every split
            (DualNet's stage 2 classifies image + predicted lesion mask). Classification only.
        test_meta_missing_fraction: share of clinical features blanked (encoded as missing) per
            sample in the TEST split only, chosen at random per sample with ``seed`` (robustness to
            missing clinical data, e.g. the 50% stress test suggested for the mammography paper). 0 = off.
        meta_soft_one_hot: value of the zeros of one-hot metadata blocks (0 = plain one-hot; e.g. 0.01 for
            the "soft one-hot" reading of ViTAtt, :mod:`dermfuse_data.tabular`).
    """

    def __init__(
        self,
        dataset: str = "pad_ufes_20",
        root: str | None = None,
        task: Literal["classification", "segmentation"] = "classification",
        image_size: int = 224,
        meta_features: list[str] | str | None = "all",
        allow_leaky_metadata: bool = False,
        use_masks: bool = False,
        batch_size: int = 32,
        num_workers: int | Literal["auto"] = 0,
        sampler: Literal["random", "balanced"] = "random",
        augment: str | list[dict[str, Any]] = "standard",
        augment_on: Literal["auto", "cpu", "device"] = "auto",
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        prefetch_factor: int | None = None,
        seed: int = 0,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        use_official_split: bool = True,
        resplit: bool = False,
        cache_dir: str | None = None,
        cache_key: Literal["stat", "content"] = "stat",
        synthetic_seed: int = 0,
        cache_workers: int | Literal["auto"] = "auto",
        source_options: dict | None = None,
        predicted_masks: str | None = None,
        test_meta_missing_fraction: float = 0.0,
        meta_soft_one_hot: float = 0.0,
    ):
        super().__init__()
        self.save_hyperparameters()
        check_data_options(self.hparams)
        self.cache_dir = Path(cache_dir).resolve() if cache_dir else default_cache_dir()
        self.source = get_source(dataset)
        if self.source.declare is not None:  # classes and features declared by the data (the csv source)
            self.source = self.source.for_data(self.root, source_options)
        self.with_mask = task == "segmentation" or use_masks or predicted_masks is not None
        parse_augment(augment)  # a wrong step or parameter fails here, naming data.augment[i]
        resolve_augment_on(augment_on, "cpu")
        self._device_transform: DeviceBatchTransform | None = None
        self._auto_workers: int | None = None
        self.top_k = parse_top_k(meta_features)
        self.features = select_features(self.source, "all" if self.top_k else meta_features, allow_leaky_metadata)
        self.encoder = TabularEncoder(self.features, meta_soft_one_hot)
        self.feature_ranking: list[tuple[str, float]] | None = None
        self._masks: MaskFile | None = None
        self._table: pa.Table | None = None
        self._cache: ImageCache | None = None
        self.is_synthetic = root is None
        self.split_file: Path | None = None

    # -- index: table, split, encoder (cheap; done once, on first use) ---------------------------
    @functools.cached_property
    def root(self) -> Path:
        """The dataset folder (the synthetic miniature's when none was given; found or written once)."""
        if self.hparams.root is not None:
            return Path(self.hparams.root).expanduser().resolve()
        return synthetic_root(self.hparams.dataset, self.cache_dir / "synthetic", self.hparams.synthetic_seed)

    @property
    def table(self) -> pa.Table:
        """The common table with a ``split`` column (see :mod:`dermfuse_data.splits`)."""
        if self._table is None:
            root = self.root
            if self.is_synthetic:
                synthetic_banner(self.hparams.dataset, root)
            table = self.source.read(root, **(self.hparams.source_options or {}))
            table, self.split_file = load_or_make_splits(
                table,
                self.cache_dir / self.hparams.dataset,
                self.hparams.val_fraction,
                self.hparams.test_fraction,
                self.hparams.seed,
                self.hparams.use_official_split,
                identity=self.split_identity,
                resplit=self.hparams.resplit,
            )
            train = table.filter(pc.equal(table.column("split"), "train"))
            if self.top_k and self._restored_feature_names is None:
                self._select_top_k(train)
            self.encoder.fit(train)
            self._table = table
        return self._table

    _restored_feature_names: list[str] | None = None

    @property
    def split_identity(self) -> dict:
        """What names this data for its split file (:func:`~dermfuse_data.splits.split_identity`)."""
        synthetic = self.root.relative_to(self.cache_dir / "synthetic").parts[0] if self.is_synthetic else None
        return split_identity(self.hparams.source_options, synthetic)

    def _select_top_k(self, train: pa.Table) -> None:
        """Keep the ``top_k`` features most correlated with the label on ``train`` (ViTAtt HC-K)."""
        self.feature_ranking = rank_features_by_label_correlation(train, self.features, self.num_classes)
        keep = {name for name, _ in self.feature_ranking[: self.top_k]}
        self.features = [f for f in self.features if f.name in keep]  # keep the source's order
        self.encoder = TabularEncoder(self.features, self.hparams.meta_soft_one_hot)
        shown = ", ".join(f"{n} ({s:.3f})" for n, s in self.feature_ranking[: self.top_k])
        print(
            f"meta_features=top{self.top_k} on the training split of {self.hparams.dataset}: {shown}",
            file=sys.stderr,
            flush=True,
        )

    @property
    def num_classes(self) -> int:
        """Number of classes of the source (under ``source_options``, which may relabel)."""
        return len(self.class_names)

    @property
    def class_names(self) -> list[str]:
        """Class names in label order (``DatasetSource.classes_with(source_options)``)."""
        return list(self.source.classes_with(self.hparams.source_options))

    @property
    def meta_groups(self) -> list[int]:
        """Encoded width of each clinical feature (one model token each); [] without metadata."""
        _ = self.table
        return self.encoder.group_widths

    @property
    def meta_names(self) -> list[str]:
        """Clinical feature names, in the order of :attr:`meta_groups`."""
        _ = self.table
        return self.encoder.feature_names

    @property
    def class_counts(self) -> list[int]:
        """Training-split count of each class (for inverse-frequency loss weights)."""
        labels = np.asarray(self.split_table("train").column("label").to_pylist())
        return np.bincount(labels, minlength=self.num_classes).tolist()

    def split_table(self, split: str) -> pa.Table:
        """Rows of one split."""
        return self.table.filter(pc.equal(self.table.column("split"), split))

    # -- Lightning hooks --------------------------------------------------------------------------
    def _open_cache(self) -> ImageCache:
        t = self.table
        dataset_masks = self.with_mask and self.hparams.predicted_masks is None
        masks = t.column("mask_path").to_pylist() if dataset_masks else [None] * len(t)
        if dataset_masks and any(m is None for m in masks):
            raise DatasetError(
                f"{masks.count(None)} samples have no mask",
                path=self.root,
                hint="this dataset has no lesion masks: set use_masks=false",
            )
        return open_or_build(
            self.cache_dir / self.hparams.dataset,
            "images+masks" if dataset_masks else "images",
            t.column("sample_id").to_pylist(),
            t.column("image_path").to_pylist(),
            masks,
            self.hparams.image_size,
            self.cache_worker_count,
            key=self.hparams.cache_key,
        )

    def prepare_data(self) -> None:
        """Generate synthetic data if needed and build the cache (once, on one process per node)."""
        self._open_cache()

    def setup(self, stage: str | None = None) -> None:
        """Open the memory-mapped cache and predicted masks, if any (every process)."""
        if self._cache is None:
            self._cache = self._open_cache()
        if self.hparams.predicted_masks is not None and self._masks is None:
            self._masks = self._open_predicted_masks()

    def _open_predicted_masks(self) -> MaskFile:
        masks = MaskFile(self.hparams.predicted_masks)
        size = (self.hparams.image_size, self.hparams.image_size)
        if masks.size != size:
            raise DatasetError(
                f"predicted masks are {masks.size[0]}x{masks.size[1]} but data.image_size is {size[0]}",
                path=masks.path,
                hint="predict the masks at the classifier's image_size (the two-stage "
                "pipeline does this) or set data.image_size to match",
            )
        lacking = masks.missing(self.table.column("sample_id").to_pylist())
        if lacking:
            raise DatasetError(
                f"{len(lacking)} of {len(self.table)} samples of {self.hparams.dataset} have no "
                f"predicted mask (e.g. {lacking[:3]})",
                path=masks.path,
                hint="the file was predicted for another dataset: predict the masks again",
            )
        return masks

    def dataset(self, split: str, on_device: bool = False) -> SampleDataset:
        """The :class:`SampleDataset` of ``split`` (``train`` gets augmentation); ``on_device``: serve
        uint8, leaving augmentation and normalisation to :meth:`on_after_batch_transfer`."""
        t = self.split_table(split)
        meta = self.encoder.transform(t) if self.features else None
        if meta is not None and split == "test" and self.hparams.test_meta_missing_fraction > 0:
            meta = blank_features(
                meta,
                self.encoder.group_widths,
                self.hparams.test_meta_missing_fraction,
                self.hparams.seed,
                self.encoder.off_values,
            )
        return self.samples(t, meta, train=split == "train", on_device=on_device)

    def samples(
        self, rows: pa.Table, meta: np.ndarray | None, train: bool = False, on_device: bool = False
    ) -> SampleDataset:
        """A :class:`SampleDataset` over ``rows`` (rows of :attr:`table`) with the encoded ``meta`` given.

        ``train`` adds the augmentation; ``on_device`` serves uint8 (as :meth:`dataset`). Evaluation on
        another selection of rows or with metadata encoded elsewhere (``dermfuse_models.runner.evaluate``)
        goes through here.
        """
        self.setup()
        ids = rows.column("sample_id").to_pylist()
        return SampleDataset(
            self._cache,
            np.array([self._cache.index[i] for i in ids], dtype=np.int64),
            np.asarray(rows.column("label").to_pylist()),
            meta,
            ids,
            self.with_mask,
            None if on_device else build_transform(train, self.hparams.augment, self._size),
            masks=self._masks,
        )

    @property
    def cache_worker_count(self) -> int:
        """Decoders of an image cache build: ``data.cache_workers``, ``auto`` = every core this process may use."""
        workers = self.hparams.cache_workers
        return available_cores() if workers == "auto" else int(workers)

    @property
    def _size(self) -> tuple[int, int]:
        return (self.hparams.image_size, self.hparams.image_size)

    def _run_device(self) -> tuple[str, int]:
        """(device type, processes per node) of the attached trainer; ("cpu", 1) without one."""
        trainer = self.trainer
        if trainer is None:
            return "cpu", 1
        return trainer.strategy.root_device.type, max(1, int(getattr(trainer, "num_devices", 1) or 1))

    @property
    def augment_on(self) -> str:
        """Where augmentation and normalisation run for this run: ``cpu`` or ``device``."""
        return resolve_augment_on(self.hparams.augment_on, self._run_device()[0])

    def _num_workers(self, ds: SampleDataset) -> int:
        if self.hparams.num_workers != "auto":
            return int(self.hparams.num_workers)
        if self._auto_workers is None:
            device_type, processes = self._run_device()
            self._auto_workers = choose_num_workers(ds, processes, device_type)
        return self._auto_workers

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """uint8 batches (``augment_on: device``): augment (training only) and normalise on the device."""
        if isinstance(batch, dict) and torch.is_tensor(batch.get("image")) and batch["image"].dtype == torch.uint8:
            if self._device_transform is None:
                self._device_transform = DeviceBatchTransform(self.hparams.augment, self._size)
            batch = self._device_transform(batch, train=self.trainer is not None and self.trainer.training)
        return batch

    def _loader(self, split: str) -> DataLoader:
        ds = self.dataset(split, on_device=self.augment_on == "device")
        if split == "train":
            check_batch_size(self.hparams.batch_size, len(ds))
        sampler = None
        if split == "train" and self.hparams.sampler == "balanced":
            counts = np.bincount(ds.labels, minlength=self.num_classes).astype(float)
            weights = 1.0 / np.maximum(counts[ds.labels], 1.0)
            sampler = WeightedRandomSampler(
                torch.as_tensor(weights),
                num_samples=len(ds),
                generator=torch.Generator().manual_seed(self.hparams.seed),
            )
        elif split != "train":
            sampler = self._each_sample_once(ds)
        workers = self._num_workers(ds)
        pin = self.hparams.pin_memory
        return DataLoader(
            ds,
            batch_size=self.hparams.batch_size,
            shuffle=split == "train" and sampler is None,
            sampler=sampler,
            num_workers=workers,
            pin_memory=self._run_device()[0] == "cuda" if pin is None else pin,
            persistent_workers=self.hparams.persistent_workers and workers > 0,
            prefetch_factor=self.hparams.prefetch_factor if workers > 0 else None,
            drop_last=split == "train" and len(ds) > self.hparams.batch_size,
        )

    def _each_sample_once(self, ds: SampleDataset) -> UnrepeatedDistributedSampler | None:
        """Under multi-process evaluation, each rank's share of ``ds`` without padding (else ``None``).

        Lightning's default ``DistributedSampler`` pads every rank to the same length by repeating
        samples, so a validation or test metric would count some samples twice. Lightning's
        ``UnrepeatedDistributedSampler`` gives rank ``r`` the samples ``r, r + W, ...``: shares differ
        by at most one sample and every sample is counted exactly once by the (synchronised)
        torchmetrics states. Lightning keeps a ``DistributedSampler`` it finds in the loader.
        """
        trainer = getattr(self, "trainer", None)
        if trainer is None or trainer.world_size <= 1:
            return None
        return UnrepeatedDistributedSampler(
            ds, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")

    def state_dict(self) -> dict:
        """Fitted encoder state, chosen feature names and split file, saved into checkpoints."""
        return {
            "encoder": self.encoder.state_dict(),
            "split_file": str(self.split_file),
            "features": [f.name for f in self.features],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the encoder (and ``top<K>`` feature choice) fitted at training time."""
        names = state.get("features")
        if names is not None and [f.name for f in self.features] != list(names):
            if not self.top_k:
                raise ValueError(
                    f"checkpoint was trained with metadata features {names} but data.meta_features "
                    f"selects {[f.name for f in self.features]}: use the run's config"
                )
            self.features = [self.source.feature(n) for n in names]
            self.encoder = TabularEncoder(self.features, self.hparams.meta_soft_one_hot)
            self._restored_feature_names = list(names)
        self.encoder.load_state_dict(state["encoder"])


def check_data_options(hp) -> None:
    """Refuse data options that cannot work, in one line naming the ``data.<key>`` (see :class:`DataConfigError`).

    Checked before anything is read: dataset name, source options, image size, batch size, workers,
    fractions, metadata features, cache key, predicted masks with segmentation.
    """
    if hp.dataset not in SOURCE_MODULES:
        raise DataConfigError("dataset", f"unknown dataset {hp.dataset!r}", f"choose one of {sorted(SOURCE_MODULES)}")
    source = get_source(hp.dataset)
    unknown = sorted(set(hp.source_options or {}) - set(source.options))
    if unknown:
        known = ", ".join(f"{k} ({v})" for k, v in source.options.items()) or "none"
        raise DataConfigError("source_options", f"{hp.dataset} has no option {', '.join(unknown)}", f"known: {known}")
    if isinstance(hp.image_size, bool) or not isinstance(hp.image_size, int) or hp.image_size < 1:
        raise DataConfigError("image_size", f"must be a positive number of pixels, got {hp.image_size!r}")
    for key, lowest in (("batch_size", 1), ("num_workers", 0)):
        if key == "num_workers" and hp[key] == "auto":
            continue  # chosen from the cores and the measured per-worker rate (loader_options)
        if isinstance(hp[key], bool) or not isinstance(hp[key], int) or hp[key] < lowest:
            also = " or auto" if key == "num_workers" else ""
            raise DataConfigError(key, f"must be a whole number >= {lowest}{also}, got {hp[key]!r}")
    for key in ("val_fraction", "test_fraction", "test_meta_missing_fraction"):
        if not 0.0 <= hp[key] <= 1.0:
            raise DataConfigError(key, f"must be in [0, 1], got {hp[key]}")
    if hp.val_fraction + hp.test_fraction >= 1.0:
        raise DataConfigError(
            "val_fraction",
            f"val_fraction + test_fraction = {hp.val_fraction + hp.test_fraction:g} leaves no training data",
        )
    if hp.meta_features not in (None, "all", []) and not source.features:
        raise DataConfigError(
            "meta_features",
            f"{hp.dataset} has no metadata features, {hp.meta_features!r} asked",
            "set data.meta_features=null",
        )
    if hp.cache_key not in CACHE_KEYS:
        raise DataConfigError("cache_key", f"unknown cache key {hp.cache_key!r}", f"choose one of {list(CACHE_KEYS)}")
    if hp.predicted_masks is not None and hp.task == "segmentation":
        raise DataConfigError(
            "predicted_masks",
            "replaces the masks a classifier sees; a segmentation task trains on the dataset's own masks",
            "remove data.predicted_masks",
        )


def check_batch_size(batch_size: int, train_size: int) -> None:
    """Refuse a training split too small for a batch-normalised step; warn where one batch is the whole split."""
    if train_size < 2:
        raise DataConfigError(
            "batch_size",
            f"the training split holds {train_size} sample(s): a training batch needs at least 2",
            "add data, or lower data.val_fraction / data.test_fraction",
        )
    if batch_size > train_size:
        warnings.warn(
            f"data.batch_size={batch_size} is larger than the training split ({train_size} samples): "
            f"every epoch is one batch of {train_size}; lower data.batch_size",
            stacklevel=2,
        )


def blank_features(
    meta: np.ndarray, group_widths: list[int], fraction: float, seed: int, off_values: list[float] | None = None
) -> np.ndarray:
    """A copy of ``meta`` where ``round(fraction * F)`` random features per row read as missing.

    A blanked feature's block is set to its off value (``off_values``, default 0; the encoder's
    ``off_values`` under a soft one-hot) and its missing indicator (the block's last column, see
    :mod:`dermfuse_data.tabular`) to 1, exactly as the encoder writes a missing value. Seeded:
    the same rows get the same blanks on every run and every DDP rank.
    """
    out = np.array(meta, copy=True)
    n_features = len(group_widths)
    k = int(round(fraction * n_features))
    if k == 0 or n_features == 0:
        return out
    starts = np.concatenate([[0], np.cumsum(group_widths)[:-1]]).astype(int)
    rng = np.random.default_rng(seed)
    for row in range(out.shape[0]):
        for j in rng.choice(n_features, size=k, replace=False):
            start, width = starts[j], group_widths[j]
            out[row, start : start + width] = 0.0 if off_values is None else off_values[j]
            out[row, start + width - 1] = 1.0
    return out
