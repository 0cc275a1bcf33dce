"""File formats by name and by magic: which reader a path goes to (no reading of pixels)."""
from __future__ import annotations

import os.path as osp

NIFTI_SUFFIXES = ('.nii', '.nii.gz')
DICOM_SUFFIXES = ('.dcm', '.dicom', '.ima')
NRRD_SUFFIXES = ('.nrrd', '.seg.nrrd', '.nhdr')


def is_nifti(path: str) -> bool:
    """Whether ``path`` names a NIfTI file (.nii, .nii.gz)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def is_nrrd(path: str) -> bool:
    """Whether ``path`` names an NRRD file (.nrrd, 3D Slicer's .seg.nrrd, .nhdr)."""
    return str(path).lower().endswith(NRRD_SUFFIXES)


def has_dicom_suffix(path: str) -> bool:
    """Whether ``path`` ends in a DICOM suffix (.dcm, .dicom, .ima)."""
    return str(path).lower().endswith(DICOM_SUFFIXES)


def is_dicom_file(path: str) -> bool:
    """A DICOM file: by its suffix, else by the 'DICM' magic after the 128-byte preamble."""
    if has_dicom_suffix(path):
        return osp.isfile(path)
    try:
        with open(path, 'rb') as f:
            return f.read(132)[128:132] == b'DICM'
    except OSError:
        return False


__all__ = ['DICOM_SUFFIXES', 'NIFTI_SUFFIXES', 'NRRD_SUFFIXES', 'has_dicom_suffix',
           'is_dicom_file', 'is_nifti', 'is_nrrd']
