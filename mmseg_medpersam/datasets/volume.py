"""Volumes with their geometry, and the one rule that turns a slice into a 2D image and back.

**The slice layout** (every 2D image the plugin reads or writes for a volume slice: the
targets, a PNG reference mask, the output masks and panels):

* a DICOM series sliced along its own slice axis: each slice exactly as stored, its pixel array
  (what pydicom and DICOM viewers show), slices counted in order along the series' normal
  (ImageOrientationPatient's row x column direction);
* any other slice (a NIfTI volume, a DICOM series resliced along another axis): the
  radiological view, as 3D Slicer, ITK-SNAP and DICOM viewers show it: axial and coronal
  slices with the patient's right on the image's left, sagittal slices with anterior on the
  left; anterior (axial) or superior (coronal, sagittal) at the top; slices counted along the
  RAS axis (0 = the right-most, posterior-most or inferior-most slice).

The radiological view is also how a standard DICOM acquisition in that plane is stored, so the
same axial CT gives the same 2D images as a DICOM series or as a NIfTI volume in any storage
order (RAS, LPS, flipped): one mask drawn on it fits all three.

A label volume (NIfTI, DICOM SEG, NRRD) is put on its image's voxel grid by geometry
(``on_grid``), never by array layout, and then sliced by the image's layout.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np

from ..structures.errors import OneShotDataError

#: For each RAS axis, the letter of its negative and positive direction.
_LETTERS = (('L', 'R'), ('P', 'A'), ('I', 'S'))


def volume_orientation(affine: np.ndarray) -> np.ndarray:
    """Per stored voxel axis, the RAS axis it points along and its sign (nibabel's
    ``io_orientation``); a degenerate affine takes the voxel axes as they are."""
    import nibabel as nib
    ornt = nib.io_orientation(affine)
    if np.isnan(ornt).any():
        ornt = np.array([[0, 1], [1, 1], [2, 1]], float)
    return ornt


def canonical_shape(shape: tuple, ornt: np.ndarray) -> tuple:
    """The shape of a stored volume once turned to RAS."""
    out = [0, 0, 0]
    for a in range(3):
        out[int(ornt[a, 0])] = int(shape[a])
    return tuple(out)


def direction_letter(ras_axis: int, sign: float) -> str:
    """The patient direction a RAS axis points to with ``sign`` (0, -1 -> 'L')."""
    return _LETTERS[int(ras_axis)][int(sign > 0)]


@dataclass(frozen=True)
class SliceLayout:
    """How slice ``k`` of a stored volume is laid out as a 2D (rows, columns) image.

    Attributes:
        stored_axis: the stored voxel axis that is sliced.
        reverse: slice ``k`` is stored index ``depth - 1 - k``.
        columns_first: of the two other stored axes (in stored order), the first gives the
            image's columns (else its rows).
        flip_columns, flip_rows: the image runs against those stored axes.
        depth: the number of slices.
        letters: the patient directions at the image's (left, right, top, bottom) edges.
    """

    stored_axis: int
    reverse: bool
    columns_first: bool
    flip_columns: bool
    flip_rows: bool
    depth: int
    letters: Tuple[str, str, str, str]

    def stored_index(self, k: int) -> int:
        return self.depth - 1 - int(k) if self.reverse else int(k)

    def extract(self, data: Any, k: int, extra: int = 0) -> np.ndarray:
        """Slice ``k`` of ``data`` (stored voxel order, an array or a nibabel proxy; ``extra``
        trailing singleton axes) as a (rows, columns) image."""
        index = [slice(None)] * 3
        index[self.stored_axis] = self.stored_index(k)
        plane = np.asarray(data[tuple(index) + (0, ) * extra])
        if self.columns_first:
            plane = plane.T
        if self.flip_rows:
            plane = plane[::-1]
        if self.flip_columns:
            plane = plane[:, ::-1]
        return np.ascontiguousarray(plane)

    def insert(self, volume: np.ndarray, k: int, image: np.ndarray) -> None:
        """Write a (rows, columns) image into slice ``k`` of ``volume`` (stored voxel order):
        the inverse of ``extract``."""
        plane = np.asarray(image)
        if self.flip_columns:
            plane = plane[:, ::-1]
        if self.flip_rows:
            plane = plane[::-1]
        if self.columns_first:
            plane = plane.T
        index = [slice(None)] * 3
        index[self.stored_axis] = self.stored_index(k)
        volume[tuple(index)] = plane


def slice_layout(affine: np.ndarray, shape: Tuple[int, int, int], axis: int,
                 as_stored: bool = False) -> SliceLayout:
    """The layout of slices along RAS ``axis`` of a volume stored with ``affine``:
    radiological (the module's rule), or ``as_stored`` (a DICOM series' own slices: the
    stored pixel arrays, in stored order)."""
    stored = volume_orientation(affine)
    if as_stored:
        target = stored.copy()
    else:
        p, q = sorted({0, 1, 2} - {int(axis)})
        target = np.array([[p, -1], [q, -1], [axis, 1]], float)
    goes_to, flips = [], []
    for j in range(3):
        o = int(np.flatnonzero(target[:, 0] == stored[j, 0])[0])
        goes_to.append(o)
        flips.append(bool(stored[j, 1] != target[o, 1]))
    sliced = goes_to.index(2)
    rest = [j for j in range(3) if j != sliced]
    columns = rest[0] if goes_to[rest[0]] == 0 else rest[1]
    rows = rest[1] if columns == rest[0] else rest[0]
    letters = tuple(direction_letter(target[o, 0], s * target[o, 1])
                    for o in (0, 1) for s in (-1, 1))
    return SliceLayout(stored_axis=sliced, reverse=flips[sliced],
                       columns_first=goes_to[rest[0]] == 0, flip_columns=flips[columns],
                       flip_rows=flips[rows], depth=int(shape[sliced]),
                       letters=(letters[0], letters[1], letters[2], letters[3]))


@dataclass
class Volume:
    """A 3D image with its geometry.

    Attributes:
        path: the file or folder it was read from (named in errors).
        dataobj: the voxel data in stored order (an array or a nibabel proxy: slices are read
            one at a time); trailing singleton axes allowed.
        affine: stored voxel -> RAS millimetres.
        native_axis: for a DICOM series, the RAS axis its stored slices are taken along:
            slicing along it gives the stored pixel arrays (the module's rule); None for NIfTI.
    """

    path: str
    dataobj: Any
    affine: np.ndarray
    native_axis: Optional[int] = None

    @property
    def shape(self) -> Tuple[int, int, int]:
        return tuple(int(n) for n in self.dataobj.shape[:3])

    @property
    def extra_axes(self) -> int:
        return len(self.dataobj.shape) - 3

    def default_axis(self, axis: Optional[int]) -> int:
        """``axis``, or when None the series' own slice axis (DICOM) or 2 (axial)."""
        if axis is not None:
            return int(axis)
        return self.native_axis if self.native_axis is not None else 2

    def layout(self, axis: Optional[int] = None) -> SliceLayout:
        axis = self.default_axis(axis)
        return slice_layout(self.affine, self.shape, axis, as_stored=axis == self.native_axis)

    def depth(self, axis: Optional[int] = None) -> int:
        """The number of slices along ``axis``."""
        return self.layout(axis).depth

    def slice(self, k: int, axis: Optional[int] = None) -> np.ndarray:
        """Slice ``k`` along ``axis`` as a 2D image in the module's layout."""
        layout = self.layout(axis)
        if not 0 <= int(k) < layout.depth:
            axis = self.default_axis(axis)
            raise OneShotDataError(f'{self.path}: slice {k} is outside the volume: axis {axis} '
                                   f'has slices 0..{layout.depth - 1} (shape '
                                   f'{canonical_shape(self.shape, volume_orientation(self.affine))}'
                                   ').')
        return layout.extract(self.dataobj, k, self.extra_axes)

    def empty_labels(self) -> np.ndarray:
        """A uint8 label array on this volume's stored grid."""
        return np.zeros(self.shape, np.uint8)


def on_grid(data: np.ndarray, affine: np.ndarray, grid: Volume) -> np.ndarray:
    """A label volume (``data`` in stored order, ``affine`` to RAS mm) on ``grid``'s stored
    voxels, by geometry: exactly when it is the same grid stored in another orientation, else
    nearest-neighbour resampling in world space (voxels outside it are background)."""
    import nibabel as nib
    data = np.asarray(data)
    if data.shape == grid.shape and np.allclose(affine, grid.affine, atol=1e-3):
        return data
    img = nib.Nifti1Image(data, affine)
    turned = img.as_reoriented(nib.orientations.ornt_transform(
        volume_orientation(affine), volume_orientation(grid.affine)))
    if turned.shape == grid.shape and np.allclose(turned.affine, grid.affine, atol=1e-3):
        return np.asarray(turned.dataobj)
    from nibabel.processing import resample_from_to
    moved = resample_from_to(img, (grid.shape, grid.affine), order=0, mode='constant', cval=0)
    return np.asarray(moved.dataobj).astype(data.dtype)


__all__ = ['SliceLayout', 'Volume', 'canonical_shape', 'direction_letter', 'on_grid',
           'slice_layout', 'volume_orientation']
