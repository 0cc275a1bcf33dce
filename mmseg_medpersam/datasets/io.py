"""Read images and label maps for one-shot tasks: the one place masks are normalised.

Every image and mask the plugin touches (reference, targets, ground truth) goes through
``load_image`` / ``load_label_map``, so a 0/255 PNG, a 0/1 PNG, a NIfTI label volume and a
DICOM slice all end up as the same thing: an HxWx3 uint8 RGB image and an HxW uint8 label map.

Label rule: with two classes (background + one structure) a mask stored as {0, 255} or {0, 1}
becomes {0, 1}; otherwise values are class indices and must be < ``num_classes``. In ground
truth (not in references) 255 stays mmseg's "ignore". Any other value is an error naming the file.
"""
from __future__ import annotations

import functools
import os
import os.path as osp
from typing import Optional, Sequence, Tuple

import numpy as np

from .windowing import to_uint8_rgb

IGNORE_INDEX = 255
NIFTI_SUFFIXES = ('.nii', '.nii.gz')
DICOM_SUFFIXES = ('.dcm', '.dicom', '.ima')


from ..structures.errors import OneShotDataError  # noqa: E402


def is_nifti(path: str) -> bool:
    """Whether ``path`` names a NIfTI file (.nii, .nii.gz)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def _is_dicom(path: str) -> bool:
    return path.lower().endswith(DICOM_SUFFIXES)


def is_dicom_volume_path(path: str) -> bool:
    """A DICOM series: a folder of DICOM slices of one series, or a multi-frame file."""
    if not (osp.isdir(path) or _is_dicom(path)):
        return False
    from .dicom import is_dicom_volume
    return is_dicom_volume(path)


def is_volume(path: str) -> bool:
    """A 3D input: a NIfTI file (3D or more) or a DICOM series."""
    return is_nifti(path) or is_dicom_volume_path(path)


def read_array(path: str, slice_index: Optional[int] = None, axis: int = 2) -> np.ndarray:
    """Raw pixel data of a 2D image file, a DICOM slice, or one slice of a NIfTI volume.

    2D files keep their channels (converted BGR -> RGB) and dtype (8/16-bit, float).
    """
    if osp.isdir(path) or (slice_index is not None and _is_dicom(path)):
        from .dicom import is_dicom_volume, series_image
        if not is_dicom_volume(path):
            raise OneShotDataError(f'{path}: not a DICOM series (a folder of DICOM slices, or '
                                   'a multi-frame DICOM file).')
        try:
            img = series_image(path)
        except OneShotDataError:
            raise
        except Exception as e:
            raise OneShotDataError(f'{path}: cannot read the DICOM series '
                                   f'({type(e).__name__}: {e}).') from e
        return volume_slice(img, slice_index, axis, path)
    if not osp.isfile(path):
        raise OneShotDataError(f'{path}: file not found.')
    try:
        if is_nifti(path):
            return nifti_slice(path, slice_index, axis)
        if _is_dicom(path):
            import pydicom

            from .dicom import dicom_pixels
            return dicom_pixels(pydicom.dcmread(path))
        import cv2
        data = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    except OneShotDataError:
        raise
    except Exception as e:
        raise OneShotDataError(f'{path}: cannot read ({type(e).__name__}: {e}).') from e
    if data is None:
        raise OneShotDataError(f'{path}: cannot read (not an image file OpenCV understands, '
                               'or a corrupt one).')
    if data.ndim == 3 and data.shape[2] >= 3:
        data = np.ascontiguousarray(data[..., [2, 1, 0] + list(range(3, data.shape[2]))])
    return data


def volume_shape(path: str) -> tuple:
    """The voxel shape of a NIfTI file, in its canonical RAS orientation (``nifti_slice``'s
    axes); errors name the file."""
    if is_dicom_volume_path(path):
        from .dicom import read_series
        series = read_series(path)
        return canonical_shape(series.shape, volume_orientation(series.affine))
    if not osp.isfile(path):
        raise OneShotDataError(f'{path}: file not found.')
    try:
        import nibabel as nib
        img = nib.load(path)
        shape = tuple(int(n) for n in img.shape)
        if len(shape) >= 3:
            shape = canonical_shape(shape[:3], volume_orientation(img.affine)) + shape[3:]
        return shape
    except Exception as e:
        raise OneShotDataError(f'{path}: cannot read as NIfTI ({type(e).__name__}: {e}).') from e


def check_volume_data(path: str) -> tuple:
    """The voxel shape of a NIfTI volume whose voxel data is all there (a truncated file, or one
    whose header promises more data than it holds, is an error naming the file)."""
    shape = volume_shape(path)
    if is_dicom_volume_path(path):
        from .dicom import series_image
        try:
            series_image(path)
        except Exception as e:
            raise OneShotDataError(f'{path}: its pixel data cannot be read ({type(e).__name__}: '
                                   f'{e}).') from e
        return shape
    try:
        import nibabel as nib
        data = nib.load(path).dataobj
        np.asanyarray(data[..., -1:] if len(shape) >= 3 else data)  # the last slice: the end
    except Exception as e:
        raise OneShotDataError(f'{path}: its voxel data cannot be read: the file is truncated or '
                               f'damaged ({type(e).__name__}: {e}).') from e
    return shape


def volume_orientation(affine: np.ndarray) -> np.ndarray:
    """Per stored voxel axis, the RAS axis it points along and its sign (nibabel's
    ``io_orientation``): how a volume is turned into the canonical RAS orientation."""
    import nibabel as nib
    ornt = nib.io_orientation(affine)
    if np.isnan(ornt).any():  # a degenerate affine: take the voxel axes as they are
        ornt = np.array([[0, 1], [1, 1], [2, 1]], float)
    return ornt


def to_stored_orientation(labels: np.ndarray, img) -> np.ndarray:
    """A (canonical RAS) volume of ``img``'s grid back in the orientation ``img`` is stored in:
    the inverse of how slices are read (``nifti_slice``)."""
    import nibabel as nib
    ras = np.array([[0, 1], [1, 1], [2, 1]], float)
    return nib.orientations.apply_orientation(
        labels, nib.orientations.ornt_transform(ras, volume_orientation(img.affine)))


def nifti_slice(path: str, slice_index: Optional[int], axis: int = 2) -> np.ndarray:
    """Slice ``slice_index`` along ``axis`` of a 3D NIfTI volume in its canonical RAS
    orientation (a 2D file as is), displayed with the in-plane axes as columns and rows, the
    second axis pointing up.

    Axes and indices are those of the volume turned to RAS (``volume_orientation``): volumes
    stored in other orientations (LPS, a flipped axis) give the same slices, never mirrored
    copies. Only the requested slice is read.
    """
    import nibabel as nib
    return volume_slice(nib.load(path), slice_index, axis, path)


def volume_slice(img, slice_index: Optional[int], axis: int, path: str) -> np.ndarray:
    """``nifti_slice`` of a loaded ``nibabel`` image (a NIfTI file, or a DICOM series)."""
    import nibabel as nib
    volume = img.dataobj
    shape = tuple(int(n) for n in volume.shape)
    if len(shape) > 3 and all(n == 1 for n in shape[3:]):
        shape = shape[:3]
    if len(shape) == 2:
        data = np.asarray(volume).reshape(shape)
    elif len(shape) == 3:
        if slice_index is None:
            raise OneShotDataError(f'{path}: a 3D volume (shape {shape}) needs a slice index '
                                   '(vol.nii.gz#42 on the command line, slice_index in a '
                                   'dataset).')
        ornt = volume_orientation(img.affine)
        stored = int(np.flatnonzero(ornt[:, 0] == axis)[0])  # the stored axis along RAS axis
        if not 0 <= int(slice_index) < shape[stored]:
            canonical = canonical_shape(shape, ornt)
            raise OneShotDataError(f'{path}: slice {slice_index} is outside the volume: axis '
                                   f'{axis} has slices 0..{shape[stored] - 1} (shape '
                                   f'{canonical}).')
        index = [slice(None)] * 3
        index[stored] = int(slice_index) if ornt[stored, 1] > 0 else shape[stored] - 1 - int(
            slice_index)
        data = np.asarray(volume[tuple(index) + (0, ) * (len(volume.shape) - 3)])
        rest = [a for a in range(3) if a != stored]
        goes_to = [int(ornt[a, 0]) for a in rest]
        data = nib.orientations.apply_orientation(data, np.array(
            [[sorted(goes_to).index(t), ornt[a, 1]] for a, t in zip(rest, goes_to)]))
    else:
        raise OneShotDataError(f'{path}: a {len(shape)}D volume (shape {shape}); one-shot tasks '
                               'take 2D images or 3D volumes: split the time or channel axis '
                               'into 3D volumes first.')
    return np.ascontiguousarray(np.flipud(data.T))


def canonical_shape(shape: tuple, ornt: np.ndarray) -> tuple:
    """The shape of a stored volume once turned to RAS."""
    out = [0, 0, 0]
    for a in range(3):
        out[int(ornt[a, 0])] = int(shape[a])
    return tuple(out)


@functools.lru_cache(maxsize=8)
def _volume_window(path: str, mtime_ns: int, size: int,
                   percentiles: Tuple[float, float]) -> Optional[Tuple[float, float]]:
    import nibabel as nib
    data = np.asanyarray(nib.load(path).dataobj)
    if data.dtype == np.uint8:
        return None
    finite = data[np.isfinite(data)] if np.issubdtype(data.dtype, np.floating) else data.ravel()
    if finite.size == 0:
        return None
    low, high = np.percentile(finite, percentiles)
    return float(low), float(high)


def volume_window(path: str, percentiles: Tuple[float, float] = (0.5, 99.5)
                  ) -> Optional[Tuple[float, float]]:
    """One intensity window for every slice of a volume, so its slices are scaled alike: a
    DICOM series' own VOI window when it has one, else the percentiles over the whole volume
    (read once per file)."""
    if is_dicom_volume_path(path):
        from .dicom import read_series, series_image
        window = read_series(path).window
        if window is not None:
            return window
        data = np.asarray(series_image(path).dataobj)
        return tuple(float(v) for v in np.percentile(data, percentiles))
    stat = os.stat(path)
    return _volume_window(osp.abspath(path), stat.st_mtime_ns, stat.st_size,
                          tuple(percentiles))


#: Images smaller than this along either side cannot be segmented (nor scored).
MIN_IMAGE_SIDE = 2


def load_image(path: str, slice_index: Optional[int] = None, axis: int = 2,
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
    elif window is None and _is_dicom(path):  # a 2D DICOM: its own VOI window, if any
        import pydicom

        from .dicom import dicom_window
        window = dicom_window(pydicom.dcmread(path, stop_before_pixels=True))
    try:
        return to_uint8_rgb(data, window)
    except ValueError as e:
        raise OneShotDataError(f'{path}: {e}') from e


def normalize_label_map(labels: np.ndarray, num_classes: int, path: str,
                        allow_ignore: bool) -> np.ndarray:
    """Apply the module's label rule to raw mask values; errors name ``path``."""
    if labels.ndim == 3:
        if labels.shape[2] in (3, 4) and all(
                np.array_equal(labels[..., 0], labels[..., c]) for c in (1, 2)):
            labels = labels[..., 0]
        else:
            raise OneShotDataError(
                f'{path}: a label map must have one channel (got shape {labels.shape}); '
                'save class indices as a grayscale PNG.')
    if np.issubdtype(labels.dtype, np.floating):
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise OneShotDataError(f'{path}: label map has non-integer values.')
    values = np.unique(labels)
    if num_classes == 2 and set(values.tolist()) <= {0, 255}:
        return (labels == 255).astype(np.uint8)
    allowed = set(range(num_classes)) | ({IGNORE_INDEX} if allow_ignore else set())
    unknown = sorted(set(values.tolist()) - allowed)
    if unknown:
        shown = ', '.join(str(int(v)) for v in unknown[:10])
        raise OneShotDataError(
            f'{path}: label values {{{shown}}} are not classes of this task '
            f'(num_classes={num_classes}: expected 0..{num_classes - 1}'
            + (', or 0/255 for a binary mask' if num_classes == 2 else '')
            + (', 255 = ignore' if allow_ignore else '') + ').')
    return labels.astype(np.uint8)


def _palette_indices(path: str) -> Optional[np.ndarray]:
    """The indices of a palette (indexed-colour) image, as mmseg reads such masks; None for any
    other file."""
    if is_nifti(path) or _is_dicom(path):
        return None
    try:
        from PIL import Image
        with Image.open(path) as img:
            return np.array(img) if img.mode == 'P' else None
    except Exception:  # not an image PIL knows: read_array reports it
        return None


def load_label_map(path: str, num_classes: int, slice_index: Optional[int] = None,
                   axis: int = 2, allow_ignore: bool = True) -> np.ndarray:
    """An HxW uint8 label map (class indices) from a mask file or a label-volume slice.

    A palette PNG gives its palette indices (as mmseg reads it), not its colours.
    """
    labels = _palette_indices(path) if slice_index is None else None
    if labels is None:
        labels = read_array(path, slice_index, axis)
    return normalize_label_map(labels, num_classes, path, allow_ignore)


def check_same_size(image: np.ndarray, labels: np.ndarray, img_path: str,
                    seg_map_path: str) -> None:
    """A mask must cover its image pixel for pixel."""
    if image.shape[:2] != labels.shape[:2]:
        raise OneShotDataError(
            f'{seg_map_path}: mask size {labels.shape[0]}x{labels.shape[1]} differs from its '
            f'image {img_path} ({image.shape[0]}x{image.shape[1]}).')


def load_reference(img_path: str, seg_map_path: str, num_classes: int,
                   slice_index: Optional[int] = None, axis: int = 2,
                   window: Optional[Sequence[float]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """The labelled reference: its HxWx3 uint8 image and HxW label map, checked.

    Its label map may hold no 255 (nothing is "ignore" in a reference), must cover its image
    pixel for pixel, and must label at least one pixel.
    """
    image = load_image(img_path, slice_index, axis, window)
    labels = load_label_map(seg_map_path, num_classes, slice_index, axis, allow_ignore=False)
    check_same_size(image, labels, img_path, seg_map_path)
    if not labels.any():
        raise OneShotDataError(f'{seg_map_path}: the reference mask is empty (no foreground '
                               'pixel): label at least one structure.')
    return image, labels

