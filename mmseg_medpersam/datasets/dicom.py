"""DICOM in and out: a series (a folder of slices, or one multi-frame file) read as one volume
with its geometry, and a DICOM SEG object written back that references it.

A series becomes a ``nibabel`` image in RAS millimetres, so it is sliced like any NIfTI volume
(``io.volume_slice``: the canonical RAS orientation). Pixel values go through pydicom's
modality LUT (``apply_modality_lut``: RescaleSlope/Intercept or a LUT), MONOCHROME1 is
inverted, and the series' own VOI window (WindowCenter/WindowWidth) is its default window.
"""
from __future__ import annotations

import functools
import os
import os.path as osp
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .io import DICOM_SUFFIXES, OneShotDataError


@dataclass
class DicomSeries:
    """One series, its slices ordered by position along the slice normal.

    Attributes:
        files: one file per slice (sorted), or the one multi-frame file.
        frames: per slice, its frame index in ``files``' file (multi-frame), else None.
        affine: voxel (column, row, slice) -> RAS millimetres.
        shape: (columns, rows, slices).
        window: the series' VOI window (low, high), if it has one.
    """

    files: List[str]
    frames: Optional[List[int]]
    affine: np.ndarray
    shape: Tuple[int, int, int]
    window: Optional[Tuple[float, float]]


def _is_dicom_file(path: str) -> bool:
    if path.lower().endswith(DICOM_SUFFIXES):
        return True
    try:
        with open(path, 'rb') as f:
            return f.read(132)[128:132] == b'DICM'
    except OSError:
        return False


def series_files(folder: str) -> List[str]:
    """The DICOM files directly in ``folder``."""
    return sorted(osp.join(folder, f) for f in os.listdir(folder)
                  if osp.isfile(osp.join(folder, f)) and _is_dicom_file(osp.join(folder, f)))


def is_dicom_volume(path: str) -> bool:
    """A folder of two or more DICOM slices of one series, or a multi-frame DICOM file."""
    if osp.isdir(path):
        import pydicom
        files = series_files(path)
        if len(files) < 2:
            return False
        try:
            uids = {pydicom.dcmread(f, stop_before_pixels=True,
                                    specific_tags=['SeriesInstanceUID']).get('SeriesInstanceUID')
                    for f in files}
        except Exception:
            return False
        return len(uids) == 1 and None not in uids
    if osp.isfile(path) and _is_dicom_file(path):
        import pydicom
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            return False
        return int(getattr(ds, 'NumberOfFrames', 1) or 1) > 1
    return False


def dicom_window(ds) -> Optional[Tuple[float, float]]:
    """A DICOM's own VOI window (WindowCenter/WindowWidth, the first if several) as (low, high)."""
    center, width = getattr(ds, 'WindowCenter', None), getattr(ds, 'WindowWidth', None)
    if center is None or width is None:
        return None
    first = lambda v: float(v[0] if hasattr(v, '__len__') and not isinstance(v, str) else v)  # noqa: E731
    c, w = first(center), first(width)
    return (c - w / 2, c + w / 2) if w > 0 else None


def _lps_to_ras() -> np.ndarray:
    return np.diag([-1.0, -1.0, 1.0, 1.0])


def _affine(orientation: Sequence[float], spacing: Sequence[float],
            positions: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(RAS affine, order of the slices) from ImageOrientationPatient, PixelSpacing and each
    slice's ImagePositionPatient (DICOM's LPS)."""
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row, col)
    order = np.argsort(positions @ normal, kind='stable')
    positions = positions[order]
    step = (normal * float(np.median(np.diff(positions @ normal)))) if len(positions) > 1 \
        else normal * 1.0
    lps = np.eye(4)
    lps[:3, 0] = row * float(spacing[1])  # along a row: the column index grows
    lps[:3, 1] = col * float(spacing[0])
    lps[:3, 2] = step
    lps[:3, 3] = positions[0]
    return _lps_to_ras() @ lps, order


@functools.lru_cache(maxsize=8)
def _read_series(path: str, stamp: float) -> DicomSeries:
    import pydicom
    if osp.isdir(path):
        files = series_files(path)
        headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
        uids = {getattr(h, 'SeriesInstanceUID', None) for h in headers}
        if len(uids) > 1:
            raise OneShotDataError(f'{path}: holds {len(uids)} DICOM series; give one series '
                                   'per folder.')
        try:
            positions = np.array([[float(v) for v in h.ImagePositionPatient] for h in headers])
            orientation = [float(v) for v in headers[0].ImageOrientationPatient]
            spacing = [float(v) for v in headers[0].PixelSpacing]
        except AttributeError as e:
            raise OneShotDataError(f'{path}: a slice lacks its geometry ({e}); a series needs '
                                   'ImagePositionPatient, ImageOrientationPatient and '
                                   'PixelSpacing.') from e
        affine, order = _affine(orientation, spacing, positions)
        files = [files[i] for i in order]
        first = headers[order[0]]
        return DicomSeries(files, None, affine, (int(first.Columns), int(first.Rows),
                                                 len(files)), dicom_window(first))
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    n = int(ds.NumberOfFrames)
    try:
        shared = ds.SharedFunctionalGroupsSequence[0]
        per_frame = ds.PerFrameFunctionalGroupsSequence
        orientation = [float(v) for v in
                       shared.PlaneOrientationSequence[0].ImageOrientationPatient]
        spacing = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
        positions = np.array([[float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]
                              for f in per_frame])
        affine, order = _affine(orientation, spacing, positions)
    except (AttributeError, IndexError):  # no geometry: frames in file order, 1 mm voxels
        affine, order = np.eye(4), np.arange(n)
    return DicomSeries([path], [int(i) for i in order], affine,
                       (int(ds.Columns), int(ds.Rows), n), dicom_window(ds))


def read_series(path: str) -> DicomSeries:
    """The series at ``path`` (a folder of slices, or a multi-frame file), read once."""
    return _read_series(osp.abspath(path), os.stat(path).st_mtime)


def dicom_pixels(ds, frame: Optional[int] = None) -> np.ndarray:
    """A slice's values after pydicom's modality LUT, MONOCHROME1 inverted (high = bright)."""
    from pydicom.pixels import apply_modality_lut
    data = ds.pixel_array if frame is None else ds.pixel_array[frame]
    data = apply_modality_lut(data, ds).astype(np.float32)
    if getattr(ds, 'PhotometricInterpretation', '') == 'MONOCHROME1':
        data = data.max() + data.min() - data  # high values are dark in MONOCHROME1
    return data


@functools.lru_cache(maxsize=2)
def _series_image(path: str, stamp: float):
    import nibabel as nib
    import pydicom
    series = _read_series(path, stamp)
    if series.frames is None:
        slices = [dicom_pixels(pydicom.dcmread(f)) for f in series.files]
    else:
        ds = pydicom.dcmread(series.files[0])
        slices = [dicom_pixels(ds, i) for i in series.frames]
    volume = np.stack([s.T for s in slices], axis=-1)  # (columns, rows, slices)
    return nib.Nifti1Image(volume, series.affine)


def series_image(path: str):
    """The series as a ``nibabel`` image (voxel data after the modality LUT, RAS affine)."""
    return _series_image(osp.abspath(path), os.stat(path).st_mtime)


def write_seg(path: str, series_path: str, labels: np.ndarray, class_names: Sequence[str],
              method: str) -> None:
    """A DICOM SEG object (highdicom) of ``labels`` ((columns, rows, slices) class indices in
    the series' stored voxel order) referencing every source slice, written atomically."""
    import io

    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    from ..utils.atomic import atomic_write_bytes
    from ..version import __version__
    series = read_series(series_path)
    if series.frames is not None:
        raise OneShotDataError(f'{series_path}: DICOM SEG output for a multi-frame source is '
                               'not written (the NIfTI label volume is).')
    sources = [pydicom.dcmread(f) for f in series.files]
    frames = np.stack([labels[..., k].T for k in range(labels.shape[2])]).astype(np.uint8)
    present = [c for c in range(1, int(frames.max()) + 1) if (frames == c).any()] or [1]
    descriptions = [hd.seg.SegmentDescription(
        segment_number=i + 1, segment_label=str(class_names[c] if c < len(class_names) else c),
        segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.Tissue,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=method, version=__version__,
            family=codes.cid7162.ArtificialIntelligence))
        for i, c in enumerate(present)]
    remap = np.zeros(max(present) + 1, np.uint8)
    remap[present] = np.arange(1, len(present) + 1)
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=remap[frames],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=900,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer='mmseg-medpersam',
        manufacturer_model_name=method, software_versions=__version__,
        device_serial_number='none', omit_empty_frames=False)
    buffer = io.BytesIO()
    seg.save_as(buffer)
    atomic_write_bytes(path, buffer.getvalue())


__all__ = ['DicomSeries', 'dicom_pixels', 'dicom_window', 'is_dicom_volume', 'read_series',
           'series_files', 'series_image', 'write_seg']
