"""DICOM in: a series (a folder of slices, or one multi-frame file) read as one checked volume
with its geometry; a single slice's pixels and window; a DICOM SEG read as a label volume.

A series becomes a ``volume.Volume`` in RAS millimetres whose stored order is the series'
(columns, rows, slices in order along the slice normal), so its own slices are its pixel arrays
(``volume``'s slice rule). Pixel values go through pydicom's modality LUT (RescaleSlope /
Intercept or a LUT); MONOCHROME1 is inverted over the stored bit range, the same for every
slice; the series' own VOI window (WindowCenter/WindowWidth) is its default window.

A series is checked before any work, each problem one line naming the file: one series per
folder, the same orientation, pixel spacing and size in every slice, no two slices at one
position, slices evenly spaced along their normal (a missing slice is refused: the label
volume's grid could not hold the true positions) and stacked along it. Non-image objects
(SR, SEG, presentation states) beside the slices are skipped with a note.
"""
from __future__ import annotations

import functools
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..structures.errors import OneShotDataError
from ..utils.naming import IMAGE_SUFFIXES
from .formats import is_dicom_file
from .volume import Volume, volume_orientation

#: Modalities whose objects hold no image to segment.
NON_IMAGE_MODALITIES = ('SEG', 'SR', 'PR', 'KO', 'RTSTRUCT', 'RTPLAN', 'RTDOSE', 'REG', 'DOC')
#: Image files that make a folder a folder of 2D images, not a series.
OTHER_IMAGE_SUFFIXES = tuple(s for s in IMAGE_SUFFIXES if s not in ('.dcm', ))
#: Relative tolerance of the slice-spacing and geometry checks.
GEOMETRY_RTOL = 0.01


@dataclass
class DicomSeries:
    """One series, its slices ordered by position along the slice normal.

    Attributes:
        files: one file per slice (sorted), or the one multi-frame file.
        frames: per slice, its frame index in ``files``' file (multi-frame), else None.
        affine: voxel (column, row, slice) -> RAS millimetres.
        shape: (columns, rows, slices).
        window: the series' VOI window (low, high), if it has one.
        skipped: objects beside the slices that were left out, and why.
        frame_of_reference: the FrameOfReferenceUID its positions are in.
    """

    files: List[str]
    frames: Optional[List[int]]
    affine: np.ndarray
    shape: Tuple[int, int, int]
    window: Optional[Tuple[float, float]]
    skipped: List[str] = field(default_factory=list)
    frame_of_reference: Optional[str] = None

    @property
    def native_axis(self) -> int:
        """The RAS axis its stored slices are taken along."""
        return int(volume_orientation(self.affine)[2, 0])


def series_files(folder: str) -> List[str]:
    """The DICOM files directly in ``folder``."""
    return sorted(osp.join(folder, f) for f in os.listdir(folder)
                  if osp.isfile(osp.join(folder, f)) and is_dicom_file(osp.join(folder, f)))


def _header(path: str):
    import pydicom
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as e:
        raise OneShotDataError(f'{path}: not a readable DICOM file ({type(e).__name__}: '
                               f'{e}).') from e


def is_image_object(ds) -> bool:
    """A DICOM object with an image to segment (not a SEG, SR, presentation state, ...)."""
    return (str(getattr(ds, 'Modality', '')) not in NON_IMAGE_MODALITIES
            and 'Rows' in ds and 'Columns' in ds)


def is_dicom_volume(path: str) -> bool:
    """A folder holding the DICOM image slices of a series (one slice is a volume too), or a
    multi-frame DICOM image file."""
    if osp.isdir(path):
        others = [f for f in os.listdir(path) if f.lower().endswith(OTHER_IMAGE_SUFFIXES)]
        if others:  # a folder of image files, DICOM ones among them: loose 2D images
            return False
        for f in series_files(path):
            try:
                if is_image_object(_header(f)):
                    return True
            except OneShotDataError:
                return True  # a damaged slice: reading the series names it
        return False
    if osp.isfile(path) and is_dicom_file(path):
        try:
            ds = _header(path)
        except OneShotDataError:
            return False
        return is_image_object(ds) and int(getattr(ds, 'NumberOfFrames', 1) or 1) > 1
    return False


def dicom_window(ds) -> Optional[Tuple[float, float]]:
    """A DICOM's own VOI window (WindowCenter/WindowWidth, the first if several) as (low, high)."""
    center, width = getattr(ds, 'WindowCenter', None), getattr(ds, 'WindowWidth', None)
    if center is None or width is None:
        return None
    first = lambda v: float(v[0] if hasattr(v, '__len__') and not isinstance(v, str) else v)  # noqa: E731
    c, w = first(center), first(width)
    return (c - w / 2, c + w / 2) if w > 0 else None


LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _floats(value, count: int, what: str, path: str) -> np.ndarray:
    try:
        out = np.asarray([float(v) for v in value], float)
    except (TypeError, ValueError) as e:
        raise OneShotDataError(f'{path}: {what} is not {count} numbers ({value!r}).') from e
    if out.shape != (count, ):
        raise OneShotDataError(f'{path}: {what} is not {count} numbers ({value!r}).')
    return out


def _normal(orientation: np.ndarray) -> np.ndarray:
    return np.cross(orientation[:3], orientation[3:])


def _affine(orientation: np.ndarray, spacing: np.ndarray, first: np.ndarray,
            step: float) -> np.ndarray:
    """RAS affine of (column, row, slice) voxels from ImageOrientationPatient, PixelSpacing,
    the first slice's ImagePositionPatient (DICOM's LPS) and the slice step along the normal."""
    row, col = orientation[:3], orientation[3:]
    lps = np.eye(4)
    lps[:3, 0] = row * spacing[1]  # along a row: the column index grows
    lps[:3, 1] = col * spacing[0]
    lps[:3, 2] = _normal(orientation) * step
    lps[:3, 3] = first
    return LPS_TO_RAS @ lps


def _slice_step(ds) -> float:
    """The slice step of a one-slice series: SpacingBetweenSlices, else SliceThickness, else
    1 mm."""
    for key in ('SpacingBetweenSlices', 'SliceThickness'):
        value = getattr(ds, key, None)
        try:
            if value is not None and float(value) > 0:
                return float(value)
        except (TypeError, ValueError):
            pass
    return 1.0


def stack_positions(path: str, names: Sequence[str], positions: np.ndarray,
                    orientation: np.ndarray) -> Tuple[np.ndarray, float]:
    """(order of the slices along the normal, slice step), checked: no two slices at one
    position, evenly spaced, stacked along the normal. Errors name the files."""
    normal = _normal(orientation)
    along = positions @ normal
    order = np.argsort(along, kind='stable')
    if len(order) < 2:
        return order, float('nan')
    gaps = np.diff(along[order])
    step = float(np.median(gaps))
    tol = max(GEOMETRY_RTOL * abs(step), 1e-3)
    dup = np.flatnonzero(np.abs(gaps) <= 1e-3)
    if dup.size:
        a, b = (names[order[i]] for i in (dup[0], dup[0] + 1))
        raise OneShotDataError(f'{path}: two slices at one position ({osp.basename(a)} and '
                               f'{osp.basename(b)} at {along[order[dup[0]]]:.2f} mm along the '
                               'normal): remove the duplicate.')
    odd = np.flatnonzero(np.abs(gaps - step) > tol)
    if odd.size:
        i = int(odd[0])
        a, b = (names[order[j]] for j in (i, i + 1))
        raise OneShotDataError(
            f'{path}: slices are not evenly spaced: {osp.basename(a)} and {osp.basename(b)} are '
            f'{gaps[i]:.3g} mm apart where the series steps {step:.3g} mm (a missing slice?); '
            'one-shot volumes need a regular grid: give the complete series.')
    offsets = positions[order] - positions[order[0]]
    in_plane = offsets - np.outer(offsets @ normal, normal)
    if np.abs(in_plane).max() > max(GEOMETRY_RTOL * abs(step), 1e-3) * len(order):
        raise OneShotDataError(f'{path}: slices are not stacked along their normal (a tilted '
                               'gantry?): resample the series to an orthogonal grid first.')
    return order, step


def _same(values: List[np.ndarray], names: Sequence[str], what: str, path: str) -> np.ndarray:
    for name, value in zip(names, values):
        if value.shape != values[0].shape or not np.allclose(value, values[0], atol=1e-4):
            raise OneShotDataError(f'{path}: {osp.basename(name)} has another {what} '
                                   f'({value.tolist()}) than {osp.basename(names[0])} '
                                   f'({values[0].tolist()}): give one series of one geometry.')
    return values[0]


def _folder_series(path: str) -> DicomSeries:
    images, skipped = [], []
    for f in series_files(path):
        ds = _header(f)
        if is_image_object(ds):
            images.append((f, ds))
        else:
            skipped.append(f'{f}: not an image ({getattr(ds, "Modality", "no Modality")} '
                           f'{getattr(ds, "SOPClassUID", "")}), skipped')
    if not images:
        raise OneShotDataError(f'{path}: no DICOM image in this folder.')
    uids = {}
    for f, ds in images:
        uids.setdefault(str(getattr(ds, 'SeriesInstanceUID', 'none')), []).append(f)
    if len(uids) > 1:
        listing = ', '.join(f'{uid} ({len(files)} files, e.g. {osp.basename(files[0])})'
                            for uid, files in uids.items())
        raise OneShotDataError(f'{path}: holds {len(uids)} DICOM series ({listing}); give one '
                               'series per folder.')
    names = [f for f, _ in images]
    try:
        orientation = _same([_floats(ds.ImageOrientationPatient, 6, 'ImageOrientationPatient',
                                     f) for f, ds in images], names, 'orientation', path)
        spacing = _same([_floats(ds.PixelSpacing, 2, 'PixelSpacing', f) for f, ds in images],
                        names, 'pixel spacing', path)
        positions = np.stack([_floats(ds.ImagePositionPatient, 3, 'ImagePositionPatient', f)
                              for f, ds in images])
    except AttributeError as e:
        raise OneShotDataError(f'{path}: a slice lacks its geometry ({e}); a series needs '
                               'ImagePositionPatient, ImageOrientationPatient and '
                               'PixelSpacing.') from e
    _same([np.array([int(ds.Rows), int(ds.Columns)]) for _, ds in images], names,
          'size (rows, columns)', path)
    order, step = stack_positions(path, names, positions, orientation)
    if len(order) == 1:
        step = _slice_step(images[0][1])
    first = images[order[0]][1]
    affine = _affine(orientation, spacing, positions[order[0]], step)
    return DicomSeries([names[i] for i in order], None, affine,
                       (int(first.Columns), int(first.Rows), len(order)), dicom_window(first),
                       skipped, getattr(first, 'FrameOfReferenceUID', None))


def _multi_frame_series(path: str) -> DicomSeries:
    """A multi-frame file: geometry from its functional groups (shared orientation and pixel
    measures, per-frame positions), else from its top-level attributes."""
    ds = _header(path)
    n = int(ds.NumberOfFrames)
    shared = (ds.SharedFunctionalGroupsSequence[0]
              if 'SharedFunctionalGroupsSequence' in ds else None)
    per_frame = ds.get('PerFrameFunctionalGroupsSequence')

    def group(name: str, attr: str, frame=None):
        for holder in ((per_frame[frame] if per_frame is not None and frame is not None
                        else None), shared):
            if holder is not None and name in holder and attr in holder[name][0]:
                return holder[name][0][attr].value
        return getattr(ds, attr, None)

    orientation = group('PlaneOrientationSequence', 'ImageOrientationPatient', 0)
    spacing = group('PixelMeasuresSequence', 'PixelSpacing', 0)
    if orientation is None or spacing is None:
        return DicomSeries([path], list(range(n)), np.eye(4), (int(ds.Columns), int(ds.Rows), n),
                           dicom_window(ds), [f'{path}: no geometry (orientation, spacing): '
                                              '1 mm voxels in frame order'])
    orientation = _floats(orientation, 6, 'ImageOrientationPatient', path)
    spacing = _floats(spacing, 2, 'PixelSpacing', path)
    frame_positions = [group('PlanePositionSequence', 'ImagePositionPatient', i)
                       for i in range(n)] if per_frame is not None else []
    if frame_positions and all(p is not None for p in frame_positions) and len(
            {tuple(p) for p in frame_positions}) > 1:
        positions = np.stack([_floats(p, 3, 'ImagePositionPatient', path)
                              for p in frame_positions])
        names = [f'{osp.basename(path)} frame {i + 1}' for i in range(n)]
        order, step = stack_positions(path, names, positions, orientation)
        first = positions[order[0]]
    else:  # one position (legacy multi-frame): frames stacked along the normal in file order
        origin = getattr(ds, 'ImagePositionPatient', None)
        first = _floats(origin, 3, 'ImagePositionPatient', path) if origin is not None \
            else np.zeros(3)
        order, step = np.arange(n), _slice_step(ds)
    affine = _affine(orientation, spacing, first, step if n > 1 else _slice_step(ds))
    return DicomSeries([path], [int(i) for i in order], affine,
                       (int(ds.Columns), int(ds.Rows), n), dicom_window(ds), [],
                       getattr(ds, 'FrameOfReferenceUID', None))


@functools.lru_cache(maxsize=8)
def _read_series(path: str, stamp: float) -> DicomSeries:
    if osp.isdir(path):
        return _folder_series(path)
    return _multi_frame_series(path)


def _stamp(path: str) -> float:
    """Changes when the series changes: the folder's and its files' modification times."""
    if not osp.isdir(path):
        return os.stat(path).st_mtime
    return max([os.stat(path).st_mtime] + [os.stat(f).st_mtime for f in series_files(path)])


def read_series(path: str) -> DicomSeries:
    """The series at ``path`` (a folder of slices, or a multi-frame file), read and checked
    once (errors name the file)."""
    return _read_series(osp.abspath(path), _stamp(path))


def _stored_range(ds) -> Tuple[float, float]:
    """The values the stored pixels can take after the modality LUT (BitsStored, signed or
    not): MONOCHROME1 is inverted over this range, the same for every slice."""
    from pydicom.pixels import apply_modality_lut
    bits = int(getattr(ds, 'BitsStored', 16) or 16)
    signed = int(getattr(ds, 'PixelRepresentation', 0) or 0) == 1
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    ends = apply_modality_lut(np.array([low, high]), ds).astype(np.float64)
    return float(ends.min()), float(ends.max())


def dicom_pixels(ds, frame: Optional[int] = None) -> np.ndarray:
    """A slice's values after pydicom's modality LUT; MONOCHROME1 inverted over the stored
    range (high = bright, and the same mapping for every slice of a series)."""
    from pydicom.pixels import apply_modality_lut
    data = ds.pixel_array if frame is None else ds.pixel_array[frame]
    data = apply_modality_lut(data, ds).astype(np.float32)
    if getattr(ds, 'PhotometricInterpretation', '') == 'MONOCHROME1':
        low, high = _stored_range(ds)
        data = np.float32(low + high) - data
    return data


def read_dicom_file(path: str):
    """One DICOM file with its pixels; errors name the file."""
    import pydicom
    try:
        return pydicom.dcmread(path)
    except Exception as e:
        raise OneShotDataError(f'{path}: not a readable DICOM file ({type(e).__name__}: '
                               f'{e}).') from e


def _slice_pixels(path: str, ds, frame: Optional[int] = None) -> np.ndarray:
    try:
        return dicom_pixels(ds, frame)
    except Exception as e:
        where = '' if frame is None else f' (frame {frame + 1})'
        raise OneShotDataError(f'{path}{where}: its pixel data cannot be read '
                               f'({type(e).__name__}: {e}).') from e


@functools.lru_cache(maxsize=2)
def _series_volume(path: str, stamp: float) -> Volume:
    series = _read_series(path, stamp)
    if series.frames is None:
        slices = [_slice_pixels(f, read_dicom_file(f)) for f in series.files]
    else:
        ds = read_dicom_file(series.files[0])
        slices = [_slice_pixels(path, ds, i) for i in series.frames]
    data = np.stack([s.T for s in slices], axis=-1)  # (columns, rows, slices)
    return Volume(path, data, series.affine, native_axis=series.native_axis)


def series_volume(path: str) -> Volume:
    """The series as a ``Volume`` (voxel data after the modality LUT, RAS affine); its own
    slices are its pixel arrays."""
    return _series_volume(osp.abspath(path), _stamp(path))


def single_slice_geometry(path: str) -> Volume:
    """One single-frame DICOM image as a one-slice ``Volume`` (its pixel array is the slice),
    for matching a label volume to it by geometry."""
    ds = read_dicom_file(path)
    try:
        orientation = _floats(ds.ImageOrientationPatient, 6, 'ImageOrientationPatient', path)
        spacing = _floats(ds.PixelSpacing, 2, 'PixelSpacing', path)
        position = _floats(ds.ImagePositionPatient, 3, 'ImagePositionPatient', path)
    except AttributeError as e:
        raise OneShotDataError(f'{path}: has no geometry ({e}) to match a label volume to; '
                               'give a 2D mask.') from e
    affine = _affine(orientation, spacing, position, _slice_step(ds))
    data = _slice_pixels(path, ds).T[..., None]
    return Volume(path, data, affine, native_axis=int(volume_orientation(affine)[2, 0]))


def series_frame_of_reference(path: str) -> Optional[str]:
    """The FrameOfReferenceUID of a DICOM file's coordinates, if it has one."""
    return getattr(_header(path), 'FrameOfReferenceUID', None)


def read_seg(path: str) -> Tuple[np.ndarray, np.ndarray, List[str], Optional[str]]:
    """A DICOM SEG as a label volume: (class indices in the SEG's voxel order, RAS affine, the
    segment labels (class k = segment k), its FrameOfReferenceUID). Errors name the file."""
    import highdicom as hd
    try:
        seg = hd.seg.segread(path)
        numbers = list(seg.get_segment_numbers())
        volume = seg.get_volume(combine_segments=True, relabel=True,
                                segment_numbers=numbers)
    except Exception as e:
        raise OneShotDataError(f'{path}: cannot read as a DICOM SEG ({type(e).__name__}: '
                               f'{e}).') from e
    names = [str(seg.get_segment_description(n).segment_label) for n in numbers]
    # highdicom's volume: (slices, rows, columns) voxels, affine to LPS millimetres.
    return (np.asarray(volume.array).astype(np.uint8), LPS_TO_RAS @ np.asarray(volume.affine),
            names, getattr(seg, 'FrameOfReferenceUID', None))


__all__ = ['DicomSeries', 'dicom_pixels', 'dicom_window', 'is_dicom_volume', 'is_image_object',
           'read_dicom_file', 'read_seg', 'read_series', 'series_files',
           'series_frame_of_reference', 'series_volume', 'single_slice_geometry',
           'stack_positions']
