"""Minimal valid DICOM files for the CBIS-DDSM miniature and test stand-ins (pydicom 3).

Writes Secondary Capture images with an Explicit VR Little Endian file meta header, as
``../shared/STACK_NOTES.md`` measured to round-trip through pydicom 3 and
:func:`dermfuse_data.images.load_image`: grey-scale (``MONOCHROME2``, or ``MONOCHROME1`` where
bright means low values), 8- or 16-bit unsigned, optional modality rescale. Every UID is derived
from the caller's ``uid_key`` (pydicom's ``generate_uid`` with fixed entropy), so the same key
gives byte-identical files; nothing depends on the clock.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid


def synthetic_uid(*key: object) -> str:
    """A DICOM UID (pydicom's root) that depends only on ``key``: same key, same UID."""
    return generate_uid(entropy_srcs=[repr(k) for k in key])


def dicom_dataset(
    pixels: np.ndarray,
    *,
    uid_key: Sequence[object] = (),
    photometric: str = "MONOCHROME2",
    rescale: tuple[float, float] | None = None,
    **tags: object,
) -> Dataset:
    """A Secondary Capture :class:`~pydicom.dataset.Dataset` holding ``pixels``.

    ``pixels``: 2-D ``uint8`` or ``uint16`` array (rows, columns), stored as is (``BitsStored`` =
    the dtype's bits). ``photometric``: ``MONOCHROME2`` (high = bright) or ``MONOCHROME1`` (high =
    dark). ``rescale``: ``(slope, intercept)`` of the modality LUT, written as RescaleSlope /
    RescaleIntercept. ``tags``: further attributes by keyword (``PatientID``, ``SeriesInstanceUID``,
    ``SeriesDescription`` ...). The SOP instance UID comes from ``uid_key``.
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"pixels must be a 2-D uint8 or uint16 array, got {pixels.dtype} {pixels.shape}")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"photometric must be MONOCHROME1 or MONOCHROME2, got {photometric!r}")
    sop_uid = synthetic_uid("sop", *uid_key)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.Modality = "MG"
    ds.ConversionType = "WSD"
    ds.StudyInstanceUID = synthetic_uid("study", *uid_key)
    ds.SeriesInstanceUID = synthetic_uid("series", *uid_key)
    ds.InstanceNumber = 1
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = (int(n) for n in pixels.shape)
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if rescale is not None:
        ds.RescaleSlope = f"{float(rescale[0]):g}"
        ds.RescaleIntercept = f"{float(rescale[1]):g}"
        ds.RescaleType = "US"
    ds.PixelData = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("<")).tobytes()
    return ds


def dicom_bytes(pixels: np.ndarray, **kwargs) -> bytes:
    """The bytes of the DICOM file :func:`dicom_dataset` describes (same keyword arguments)."""
    buffer = io.BytesIO()
    dicom_dataset(pixels, **kwargs).save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write_dicom(path: str | Path, pixels: np.ndarray, **kwargs) -> Path:
    """Write :func:`dicom_bytes` to ``path`` (parent folders created); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(dicom_bytes(pixels, **kwargs))
    return path


__all__ = ["synthetic_uid", "dicom_dataset", "dicom_bytes", "write_dicom"]
