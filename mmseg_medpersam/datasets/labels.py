"""Label maps: the one place masks are read and normalised, and label volumes matched to their
image by geometry.

A 0/255 PNG, a 0/1 PNG, a slice of a NIfTI label volume, a DICOM SEG and a 3D Slicer
segmentation all end up as the same thing: an HxW uint8 label map laid out like its image.

* **Label rule**: with two classes (background + one structure) a mask stored as {0, 255} or
  {0, 1} becomes {0, 1}; otherwise values are class indices and must be < ``num_classes``. In
  ground truth (not in references) 255 stays mmseg's "ignore". Any other value is an error
  naming the file.
* **2D masks** (PNG/TIFF, a palette PNG's indices as mmseg reads them) are read as they are:
  a mask of a volume slice is drawn on that slice's image as ``volume``'s rule lays it out
  (a DICOM slice's pixel array, else the radiological view).
* **Label volumes** (a NIfTI label map, a DICOM SEG, a Slicer ``.seg.nrrd`` / ``.nrrd``) carry
  their geometry: they are put on their image's voxel grid by world coordinates (``volume.
  on_grid``), never by array layout, and sliced like the image.
"""
from __future__ import annotations

import functools
import os
import os.path as osp
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..structures.errors import OneShotDataError
from ..structures.labels import IGNORE_INDEX
from .dicom import read_seg
from .formats import has_dicom_suffix, is_dicom_file, is_nifti, is_nrrd
from .images import palette_indices, read_image_file
from .loading import is_volume, load_image, open_volume, read_array
from .nrrd import read_nrrd_labels
from .volume import Volume, on_grid


@dataclass
class LabelVolume:
    """A label volume read from a file: class indices in stored voxel order and geometry.

    Attributes:
        data: uint8 class indices, stored voxel order.
        affine: stored voxel -> RAS millimetres.
        names: class names the file gives (class k = names[k - 1]), or None.
        frame_of_reference: the DICOM FrameOfReferenceUID of its coordinates, if known.
    """

    data: np.ndarray
    affine: np.ndarray
    names: Optional[List[str]] = None
    frame_of_reference: Optional[str] = None


def _is_seg(path: str) -> bool:
    if not (osp.isfile(path) and is_dicom_file(path)):
        return False
    import pydicom
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=['Modality'])
    except Exception:
        return False
    return str(getattr(ds, 'Modality', '')) == 'SEG'


def is_label_volume(path: str) -> bool:
    """A label file with its own geometry: a 3D NIfTI, an NRRD, or a DICOM SEG."""
    if is_nrrd(path):
        return True
    if is_nifti(path):
        if not osp.isfile(path):
            return False
        from .nifti import nifti_shape
        try:
            shape = nifti_shape(path)
        except OneShotDataError:
            return False
        return len(shape) >= 3 and shape[2] > 1
    return _is_seg(path)


def _stamp(path: str) -> Tuple[float, int]:
    stat = os.stat(path)
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=4)
def _read_label_volume(path: str, stamp: Tuple[float, int]) -> LabelVolume:
    if is_nrrd(path):
        data, affine, names = read_nrrd_labels(path)
        return LabelVolume(data, affine, names)
    if is_nifti(path):
        volume = open_volume(path)
        data = np.asarray(volume.dataobj)
        data = data.reshape(data.shape[:3])
        return LabelVolume(_integer_labels(data, path), volume.affine)
    data, affine, names, frame_of_reference = read_seg(path)
    return LabelVolume(data, affine, names, frame_of_reference)


def read_label_volume(path: str) -> LabelVolume:
    """A label volume (NIfTI, NRRD, DICOM SEG), read once per file version."""
    if not osp.isfile(path):
        raise OneShotDataError(f'{path}: file not found.')
    return _read_label_volume(osp.abspath(path), _stamp(path))


def _integer_labels(data: np.ndarray, path: str) -> np.ndarray:
    if np.issubdtype(data.dtype, np.floating):
        if not np.all(np.isfinite(data)) or not np.all(data == np.round(data)):
            raise OneShotDataError(f'{path}: label map has non-integer values.')
    if data.size and (data.min() < 0 or data.max() > 255):
        raise OneShotDataError(f'{path}: label values must be 0..255 (got {data.min()}.. '
                               f'{data.max()}).')
    return data.astype(np.uint8)


def image_grid(image_path: str) -> Volume:
    """The voxel grid of an image with geometry: a volume, or a single DICOM slice (a
    one-slice volume whose slice is its pixel array)."""
    if is_volume(image_path):
        return open_volume(image_path)
    if has_dicom_suffix(image_path) or is_dicom_file(image_path):
        from .dicom import single_slice_geometry
        return single_slice_geometry(image_path)
    raise OneShotDataError(f'{image_path}: a label volume is matched to its image by geometry, '
                           'and this image has none (a PNG/TIFF): give a 2D mask, or the image '
                           'as a volume slice (vol.nii.gz#42, a DICOM).')


def _frame_of_reference(path: str) -> Optional[str]:
    if is_nifti(path) or not osp.exists(path):
        return None
    from .dicom import read_series, series_frame_of_reference
    return (read_series(path).frame_of_reference if osp.isdir(path)
            else series_frame_of_reference(path))


@functools.lru_cache(maxsize=2)
def _labels_on_grid(label_path: str, label_stamp, image_path: str, image_stamp) -> Volume:
    labels = read_label_volume(label_path)
    grid = image_grid(image_path)
    image_for = _frame_of_reference(image_path)
    if labels.frame_of_reference and image_for and labels.frame_of_reference != image_for:
        raise OneShotDataError(f'{label_path}: its FrameOfReferenceUID '
                               f'({labels.frame_of_reference}) is not its image\'s ({image_for}, '
                               f'{image_path}): their coordinates do not match.')
    data = on_grid(labels.data, labels.affine, grid)
    return Volume(image_path, data, grid.affine, grid.native_axis)


def _path_stamp(path: str):
    if osp.isdir(path):
        return max(os.stat(osp.join(path, f)).st_mtime_ns for f in os.listdir(path)) if \
            os.listdir(path) else os.stat(path).st_mtime_ns
    return _stamp(path)


def label_slice(label_path: str, image_path: Optional[str], slice_index: Optional[int],
                axis: Optional[int] = None) -> np.ndarray:
    """Slice ``slice_index`` of a label volume put on ``image_path``'s grid by geometry, laid
    out like that image's slice; with no image, on the label volume's own grid."""
    if image_path is None:
        labels = read_label_volume(label_path)
        volume = Volume(label_path, labels.data, labels.affine)
    else:
        volume = _labels_on_grid(osp.abspath(label_path), _stamp(label_path),
                                 osp.abspath(image_path), _path_stamp(image_path))
    if slice_index is None:
        if volume.shape[2] != 1 or volume.native_axis is None:
            raise OneShotDataError(f'{label_path}: a label volume needs the slice of its image '
                                   '(vol.nii.gz#42 or series#42 as the image).')
        slice_index = 0
    return volume.slice(slice_index, axis)


def label_names(path: str) -> Optional[List[str]]:
    """The class names a label file carries (DICOM SEG segment labels, Slicer segment names),
    or None."""
    return read_label_volume(path).names if is_label_volume(path) and not is_nifti(path) \
        else None


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
            + (', 255 = ignore' if allow_ignore else '') + '); '
            + (f'give --num-classes {int(max(unknown)) + 1} (background included) if these '
               'are classes.' if max(unknown) < IGNORE_INDEX else 'check the mask file.'))
    return labels.astype(np.uint8)


def raw_label_map(path: str, slice_index: Optional[int] = None, axis: Optional[int] = None,
                  image_path: Optional[str] = None) -> np.ndarray:
    """A label file's values before the label rule, laid out like its image."""
    if is_label_volume(path):
        return label_slice(path, image_path, slice_index, axis)
    if is_nifti(path) or has_dicom_suffix(path) or osp.isdir(path):
        return read_array(path, slice_index, axis)
    if not osp.isfile(path):
        raise OneShotDataError(f'{path}: file not found.')
    labels = palette_indices(path)
    return labels if labels is not None else read_image_file(path)


def load_label_map(path: str, num_classes: int, slice_index: Optional[int] = None,
                   axis: Optional[int] = None, allow_ignore: bool = True,
                   image_path: Optional[str] = None) -> np.ndarray:
    """An HxW uint8 label map (class indices) from a mask file or a label volume, laid out
    like its image (``image_path``: the image it labels; a label volume is matched to it by
    geometry). A palette PNG gives its palette indices (as mmseg reads it), not its colours.
    """
    labels = raw_label_map(path, slice_index, axis, image_path)
    return normalize_label_map(labels, num_classes, path, allow_ignore)


def check_same_size(image: np.ndarray, labels: np.ndarray, img_path: str,
                    seg_map_path: str) -> None:
    """A mask must cover its image pixel for pixel."""
    if image.shape[:2] != labels.shape[:2]:
        raise OneShotDataError(
            f'{seg_map_path}: mask size {labels.shape[0]}x{labels.shape[1]} differs from its '
            f'image {img_path} ({image.shape[0]}x{image.shape[1]}).')


def load_reference(img_path: str, seg_map_path: str, num_classes: int,
                   slice_index: Optional[int] = None, axis: Optional[int] = None,
                   window: Optional[Sequence[float]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """The labelled reference: its HxWx3 uint8 image and HxW label map, checked.

    Its label map may hold no 255 (nothing is "ignore" in a reference), must cover its image
    pixel for pixel, and must label at least one pixel.
    """
    image = load_image(img_path, slice_index, axis, window)
    labels = load_label_map(seg_map_path, num_classes, slice_index, axis, allow_ignore=False,
                            image_path=img_path)
    check_same_size(image, labels, img_path, seg_map_path)
    if not labels.any():
        where = (f' on slice {slice_index} of {img_path}' if is_label_volume(seg_map_path)
                 and slice_index is not None else '')
        raise OneShotDataError(f'{seg_map_path}: the reference mask is empty (no foreground '
                               f'pixel{where}): label at least one structure.')
    return image, labels


__all__ = ['IGNORE_INDEX', 'LabelVolume', 'check_same_size', 'image_grid', 'is_label_volume',
           'label_names', 'label_slice', 'load_label_map', 'load_reference',
           'normalize_label_map', 'raw_label_map', 'read_label_volume']
