"""NIfTI volumes: opened lazily (one slice read at a time), checked, windowed once."""
from __future__ import annotations

import functools
import os
import os.path as osp
from typing import Optional, Tuple

import numpy as np

from ..structures.errors import OneShotDataError
from .volume import Volume, volume_orientation


def _load(path: str):
    if not osp.isfile(path):
        raise OneShotDataError(f'{path}: file not found.')
    import nibabel as nib
    try:
        return nib.load(path)
    except Exception as e:
        raise OneShotDataError(f'{path}: cannot read as NIfTI ({type(e).__name__}: {e}).') from e


def nifti_volume(path: str) -> Volume:
    """A 3D NIfTI file as a ``Volume`` (a 4D file whose extra axes are 1 is 3D); a 2D file or a
    true 4D one is an error naming it."""
    img = _load(path)
    shape = tuple(int(n) for n in img.shape)
    if len(shape) > 3 and all(n == 1 for n in shape[3:]):
        pass
    elif len(shape) != 3:
        raise OneShotDataError(f'{path}: a {len(shape)}D volume (shape {shape}); one-shot tasks '
                               'take 2D images or 3D volumes: split the time or channel axis '
                               'into 3D volumes first.')
    return Volume(path, img.dataobj, np.asarray(img.affine, float))


def nifti_shape(path: str) -> tuple:
    """The stored shape of a NIfTI file."""
    return tuple(int(n) for n in _load(path).shape)


def nifti_image_2d(path: str) -> np.ndarray:
    """A 2D NIfTI file (or a 3D one of one slice) as a one-slice volume's image, by the slice
    rule of ``volume``; a 3D volume needs a slice index."""
    img = _load(path)
    shape = tuple(int(n) for n in img.shape)
    plane = tuple(n for n in shape[2:] if n != 1)
    if len(shape) < 2 or plane:
        raise OneShotDataError(f'{path}: a 3D volume (shape {shape}) needs a slice index '
                               '(vol.nii.gz#42 on the command line, slice_index in a dataset).')
    data = np.asarray(img.dataobj).reshape(shape[:2] + (1, ))
    affine = np.asarray(img.affine, float)
    axis = int(volume_orientation(affine)[2, 0])
    return Volume(path, data, affine).slice(0, axis)


def check_nifti_data(path: str) -> None:
    """The voxel data is all there (a truncated file, or one whose header promises more than
    it holds, is an error naming the file)."""
    data = _load(path).dataobj
    try:
        np.asanyarray(data[..., -1:] if len(data.shape) >= 3 else data)  # the last slice: the end
    except Exception as e:
        raise OneShotDataError(f'{path}: its voxel data cannot be read: the file is truncated or '
                               f'damaged ({type(e).__name__}: {e}).') from e


@functools.lru_cache(maxsize=8)
def _window(path: str, mtime_ns: int, size: int,
            percentiles: Tuple[float, float]) -> Optional[Tuple[float, float]]:
    data = np.asanyarray(_load(path).dataobj)
    if data.dtype == np.uint8:
        return None
    finite = data[np.isfinite(data)] if np.issubdtype(data.dtype, np.floating) else data.ravel()
    if finite.size == 0:
        return None
    low, high = np.percentile(finite, percentiles)
    return float(low), float(high)


def nifti_window(path: str, percentiles: Tuple[float, float] = (0.5, 99.5)
                 ) -> Optional[Tuple[float, float]]:
    """One window for every slice of a NIfTI volume: percentiles over all of it (read once per
    file version); None for 8-bit data."""
    stat = os.stat(path)
    return _window(osp.abspath(path), stat.st_mtime_ns, stat.st_size, tuple(percentiles))


__all__ = ['check_nifti_data', 'nifti_image_2d', 'nifti_shape', 'nifti_volume', 'nifti_window']
