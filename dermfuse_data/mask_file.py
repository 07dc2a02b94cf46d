"""Arrow file of per-sample binary masks (``sample_id -> (H, W) uint8 0/1``), e.g. predicted masks.

Two-stage pipelines (DualNet, arXiv 2510.17773: segment, then classify image + lesion mask) predict
a mask for every sample of the classification dataset once and store it here; the DataModule's
``predicted_masks`` option then serves these masks as the batch's ``mask`` instead of the dataset's.
Same conventions as :mod:`dermfuse_data.cache`: masks are stored at the image cache's size,
the file is written to a temporary name and renamed when complete (a killed writer leaves nothing
that looks valid), and reads are zero-copy views of a memory map shared by DDP ranks and workers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from dermfuse_data.cache import atomic_arrow_file, fixed_size_rows, locate
from dermfuse_data.errors import DatasetError
from dermfuse_data.storage import mark_used

MASK_FILE_VERSION = 1


def _schema(size: tuple[int, int], metadata: dict[str, str]) -> pa.Schema:
    h, w = size
    return pa.schema(
        [pa.field("sample_id", pa.string()), pa.field("mask", pa.binary(h * w))],
        metadata={
            "height": str(h),
            "width": str(w),
            "version": str(MASK_FILE_VERSION),
            "kind": "dermfuse-masks",
            **metadata,
        },
    )


def write_mask_file(
    path: str | Path,
    sample_ids: Sequence[str],
    masks: Iterable[np.ndarray],
    size: tuple[int, int],
    metadata: dict[str, str] | None = None,
    batch_rows: int = 256,
) -> Path:
    """Write ``masks`` (each (H, W), nonzero = lesion) for ``sample_ids`` to ``path`` atomically.

    ``metadata``: extra string key/values stored in the schema (e.g. the checkpoint hash).
    """
    path = Path(path)
    schema = _schema(tuple(size), {str(k): str(v) for k, v in (metadata or {}).items()})
    ids = list(sample_ids)

    def batch(n: int, buffer: list[bytes]) -> pa.RecordBatch:
        return pa.record_batch(
            [pa.array(ids[n - len(buffer) : n], pa.string()), pa.array(buffer, schema.field("mask").type)],
            schema=schema,
        )

    with atomic_arrow_file(path, schema) as writer:
        buffer: list[bytes] = []
        n = 0
        for mask in masks:
            m = np.asarray(mask)
            if m.shape != tuple(size):
                raise ValueError(
                    f"mask {n} ({ids[n] if n < len(ids) else '?'}) has shape {m.shape}, expected {tuple(size)}"
                )
            buffer.append((m != 0).astype(np.uint8).tobytes())
            n += 1
            if len(buffer) == batch_rows:
                writer.write_batch(batch(n, buffer))
                buffer = []
        if buffer:
            writer.write_batch(batch(n, buffer))
        if n != len(ids):
            raise ValueError(f"{len(ids)} sample ids but {n} masks")
    return path


class MaskFile:
    """Zero-copy lookup in a mask file: ``masks.mask("ISIC_0000001")`` -> (H, W) uint8 0/1 view."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetError(
                "mask file not found",
                path=self.path,
                hint="predict the masks first (make train-dualnet-cls does it), or fix the path",
            )
        mark_used(self.path)  # cache prune keeps what is in use
        self._source = pa.memory_map(str(self.path), "r")
        try:
            table = pa.ipc.open_file(self._source).read_all()
        except pa.ArrowInvalid as err:
            raise DatasetError(
                f"not an Arrow mask file ({err})", path=self.path, hint="delete it and predict the masks again"
            ) from None
        meta = table.schema.metadata or {}
        if meta.get(b"kind") != b"dermfuse-masks":
            raise DatasetError(
                "not a dermfuse mask file (schema metadata kind != dermfuse-masks)",
                path=self.path,
                hint="write it with dermfuse_data.mask_file.write_mask_file",
            )
        self.size = (int(meta[b"height"]), int(meta[b"width"]))
        self.metadata = {k.decode(): v.decode() for k, v in meta.items()}
        self.sample_ids: list[str] = table.column("sample_id").to_pylist()
        self.index = {sid: i for i, sid in enumerate(self.sample_ids)}
        self._chunks, self._starts = [], [0]
        for chunk in table.column("mask").chunks:
            self._chunks.append(fixed_size_rows(chunk, self.size))
            self._starts.append(self._starts[-1] + len(chunk))

    def __len__(self) -> int:
        return len(self.sample_ids)

    def __contains__(self, sample_id: str) -> bool:
        return sample_id in self.index

    def mask(self, sample_id: str) -> np.ndarray:
        """The (H, W) uint8 0/1 mask of ``sample_id`` (a read-only view of the memory map)."""
        try:
            i = self.index[sample_id]
        except KeyError:
            raise DatasetError(
                f"no mask for sample {sample_id!r}",
                path=self.path,
                hint="the mask file was made for another dataset or split: predict again",
            ) from None
        c, j = locate(self._starts, i)
        return self._chunks[c][j]

    def missing(self, sample_ids: Iterable[str]) -> list[str]:
        """The ids among ``sample_ids`` that have no mask here."""
        return [s for s in sample_ids if s not in self.index]
