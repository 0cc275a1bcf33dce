"""Read any image input the plugin takes as the one thing every method starts from.

2D files (PNG/TIFF/JPEG of any depth, a DICOM slice), a slice of a NIfTI volume
(``vol.nii.gz#42``) or of a DICOM series (a folder of slices, or a multi-frame file) all become
an HxWx3 uint8 RGB image (``load_image``), windowed by ``windowing``'s rule, one window per
volume. Volume slices are laid out by ``volume``'s rule (a DICOM series' own slices as stored,
anything else in the radiological view).
"""
from __future__ import annotations

import os.path as osp
from typing import Optional, Sequence, Tuple

import numpy as np

from ..structures.errors import OneShotDataError
from .dicom import (
    dicom_pixels,
    dicom_window,
    is_dicom_volume,
    read_dicom_file,
    read_series,
    series_volume,
)
from .formats import has_dicom_suffix, is_dicom_file, is_nifti
from .images import read_image_file
from .nifti import check_nifti_data, nifti_image_2d, nifti_shape, nifti_volume, nifti_window
from .volume import Volume, canonical_shape, volume_orientation
from .windowing import to_uint8_rgb

#: Images smaller than this along either side cannot be segmented (nor scored).
MIN_IMAGE_SIDE = 2


def is_dicom_volume_path(path: str) -> bool:
    """A DICOM series: a folder of DICOM image slices of one series, or a multi-frame file."""
    if not (osp.isdir(path) or has_dicom_suffix(path) or osp.isfile(path)):
        return False
    if osp.isfile(path) and not is_dicom_file(path):
        return False
    return is_dicom_volume(path)


def is_volume(path: str) -> bool:
    """A 3D input: a NIfTI file (3D or more) or a DICOM series."""
    return is_nifti(path) or is_dicom_volume_path(path)


def open_volume(path: str) -> Volume:
    """A NIfTI file or a DICOM series as a ``Volume`` (errors name the file)."""
    if is_nifti(path):
        return nifti_volume(path)
    if not osp.exists(path):
        raise OneShotDataError(f'{path}: file not found.')
    if not is_dicom_volume_path(path):
        raise OneShotDataError(f'{path}: not a volume (a NIfTI file, a folder of DICOM slices '
                               'or a multi-frame DICOM file).')
    try:
        return series_volume(path)
    except OneShotDataError:
        raise
    except Exception as e:
        raise OneShotDataError(f'{path}: cannot read the DICOM series '
                               f'({type(e).__name__}: {e}).') from e


def volume_shape(path: str) -> tuple:
    """The voxel shape of a volume turned to RAS (its ``[axis]`` is the slice count along that
    RAS axis); a NIfTI file's extra axes follow. Errors name the file."""
    if is_nifti(path):
        shape = nifti_shape(path)
        if len(shape) < 3:
            return shape
        img = nifti_volume(path) if len(shape) == 3 or all(n == 1 for n in shape[3:]) else None
        affine = img.affine if img is not None else np.eye(4)
        return canonical_shape(shape[:3], volume_orientation(affine)) + shape[3:]
    volume = open_volume(path)
    return canonical_shape(volume.shape, volume_orientation(volume.affine))


def check_volume_data(path: str) -> tuple:
    """``volume_shape`` of a volume whose voxel data is all there (a truncated file is an error
    naming it); a DICOM series' slices are all read."""
    shape = volume_shape(path)
    if is_nifti(path):
        check_nifti_data(path)
    else:
        open_volume(path).dataobj  # noqa: B018  (reads and checks every slice)
    return shape


def read_array(path: str, slice_index: Optional[int] = None,
               axis: Optional[int] = None) -> np.ndarray:
    """Raw pixel data of a 2D image file, a DICOM slice, or one slice of a volume (``axis``
    None: a DICOM series' own slice axis, else 2). 2D files keep their channels (RGB) and
    dtype (8/16-bit, float)."""
    if osp.isdir(path) or (slice_index is not None and (is_nifti(path)
                                                       or is_dicom_file(path))):
        volume = open_volume(path)
        if slice_index is None:
            raise OneShotDataError(f'{path}: a volume needs a slice index ({path}#42 on the '
                                   'command line, slice_index in a dataset).')
        return volume.slice(slice_index, axis)
    if is_nifti(path):
        return nifti_image_2d(path)
    if has_dicom_suffix(path) or (osp.isfile(path) and is_dicom_file(path)):
        ds = read_dicom_file(path)
        if int(getattr(ds, 'NumberOfFrames', 1) or 1) > 1:
            raise OneShotDataError(f'{path}: a multi-frame DICOM (a volume) needs a slice index '
                                   f'({path}#0).')
        try:
            return dicom_pixels(ds)
        except Exception as e:
            raise OneShotDataError(f'{path}: its pixel data cannot be read '
                                   f'({type(e).__name__}: {e}).') from e
    return read_image_file(path)


def volume_window(path: str, percentiles: Tuple[float, float] = (0.5, 99.5)
                  ) -> Optional[Tuple[float, float]]:
    """One intensity window for every slice of a volume, so its slices are scaled alike: a
    DICOM series' own VOI window when it has one, else the percentiles over the whole volume
    (read once per file)."""
    if is_nifti(path):
        return nifti_window(path, percentiles)
    window = read_series(path).window
    if window is not None:
        return window
    data = np.asarray(open_volume(path).dataobj)
    return tuple(float(v) for v in np.percentile(data, percentiles))


def slice_letters(path: str, slice_index: Optional[int] = None,
                  axis: Optional[int] = None) -> Optional[Tuple[str, str, str, str]]:
    """The patient directions at the (left, right, top, bottom) edges of a volume slice's
    image (``volume``'s layout), or None for a 2D file."""
    if slice_index is None or not is_volume(path):
        return None
    return open_volume(path).layout(axis).letters


def load_image(path: str, slice_index: Optional[int] = None, axis: Optional[int] = None,
               window: Optional[Sequence[float]] = None) -> np.ndarray:
    """An HxWx3 uint8 RGB image, windowed by ``windowing.to_uint8_rgb``'s documented rule."""
    data = read_array(path, slice_index, axis)
    if data.size == 0:
        raise OneShotDataError(f'{path}: empty image.')
    if min(data.shape[:2]) < MIN_IMAGE_SIDE:
        raise OneShotDataError(
            f'{path}: an image of {data.shape[0]}x{data.shape[1]} pixels is too small to '
            f'segment (each side needs at least {MIN_IMAGE_SIDE} pixels).')
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).any():
        where = '' if slice_index is None else f' (slice {slice_index})'
        raise OneShotDataError(f'{path}{where}: no pixel has a finite value (all NaN or '
                               'infinite): nothing to segment.')
    if window is None and slice_index is not None and is_volume(path):
        window = volume_window(path)  # one window for the whole volume
    elif window is None and has_dicom_suffix(path):  # a 2D DICOM: its own VOI window, if any
        import pydicom
        window = dicom_window(pydicom.dcmread(path, stop_before_pixels=True))
    try:
        return to_uint8_rgb(data, window)
    except ValueError as e:
        raise OneShotDataError(f'{path}: {e}') from e


__all__ = ['MIN_IMAGE_SIDE', 'check_volume_data', 'is_dicom_volume_path', 'is_volume',
           'load_image', 'open_volume', 'read_array', 'slice_letters', 'volume_shape',
           'volume_window']
