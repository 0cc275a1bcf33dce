"""The embedded default task: white matter on axial slices of the MNI152 template.

The ICBM 2009a MNI152 template (T1 and tissue probability maps, 197x233x189 at 1 mm) ships inside
nilearn's wheel, so this task needs no download. Axial slices z = 60..120 step 2 are written as
8-bit PNGs; white matter is the voxels whose probability exceeds 0.5, stored as a 0/1 mask. Slice
z = 90 is the labelled reference, the other 30 slices are the test set.
"""
from __future__ import annotations

import os
import os.path as osp
from typing import Sequence

import numpy as np

MNI152_COPYRIGHT = """\
The images and masks in this folder are axial slices of the ICBM 2009a Nonlinear Symmetric
MNI152 template (T1-weighted average and white-matter probability map), as shipped inside the
nilearn Python package (nilearn/datasets/data/mni_icbm152_*_tal_nlin_sym_09a_converted.nii.gz).

Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre,
Montreal Neurological Institute, McGill University.
Permission to use, copy, modify, and distribute this software and its documentation for any
purpose and without fee is hereby granted, provided that the above copyright notice appear in
all copies. The authors and McGill University make no representations about the suitability of
this software for any purpose. It is provided "as is" without express or implied warranty. The
authors are not responsible for any data loss, equipment damage, property loss, or injury to
subjects or patients resulting from the use or misuse of this software package.

References: V.S. Fonov, A.C. Evans, R.C. McKinstry, C.R. Almli, D.L. Collins, "Unbiased nonlinear
average age-appropriate brain templates from birth to adulthood", NeuroImage 47 (2009) S102;
D.L. Collins, A.P. Zijdenbos, W.F.C. Baare, A.C. Evans, "ANIMAL+INSECT: Improved Cortical
Structure Segmentation", IPMI 1999.
"""

DEFAULT_SLICES: Sequence[int] = tuple(range(60, 121, 2))
REFERENCE_SLICE = 90
WM_THRESHOLD = 0.5


def slice_name(z: int) -> str:
    """File stem of axial slice ``z`` (``z090``)."""
    return f'z{z:03d}'


def _template_path(kind: str) -> str:
    try:
        import nilearn
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            'The embedded MNI152 data comes from the nilearn wheel: '
            "pip install nilearn (or pip install -e '.[data]').") from e
    path = osp.join(
        osp.dirname(nilearn.__file__), 'datasets', 'data',
        f'mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz')
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{path}: the MNI152 template is missing from this nilearn install.')
    return path


def axial_slice(volume: np.ndarray, z: int) -> np.ndarray:
    """Axial slice ``z`` of a RAS volume, displayed with anterior up (HxW = 233x197)."""
    return np.flipud(volume[:, :, z].T)


def prepare_mni152(out_dir: str,
                   slices: Sequence[int] = DEFAULT_SLICES,
                   overwrite: bool = False) -> str:
    """Write the MNI152 white-matter task to ``out_dir/{images,masks}``.

    Returns ``out_dir``. Existing files are kept unless ``overwrite``.
    """
    import cv2
    import nibabel as nib

    img_dir = osp.join(out_dir, 'images')
    mask_dir = osp.join(out_dir, 'masks')
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(mask_dir, exist_ok=True)
    t1 = np.asarray(nib.load(_template_path('t1')).dataobj, dtype=np.float64)
    wm = np.asarray(nib.load(_template_path('wm')).dataobj, dtype=np.float64)
    # Both maps are stored scaled to 0..255; a probability of 0.5 is 127.5.
    wm_scale = 255.0 if wm.max() > 1.0 else 1.0
    for z in slices:
        stem = slice_name(z)
        img_path = osp.join(img_dir, stem + '.png')
        mask_path = osp.join(mask_dir, stem + '.png')
        if not overwrite and osp.isfile(img_path) and osp.isfile(mask_path):
            continue
        img = np.clip(np.rint(axial_slice(t1, z)), 0, 255).astype(np.uint8)
        mask = (axial_slice(wm, z) > WM_THRESHOLD * wm_scale).astype(np.uint8)
        cv2.imwrite(img_path, img)
        cv2.imwrite(mask_path, mask)
    with open(osp.join(out_dir, 'COPYRIGHT.txt'), 'w') as f:
        f.write(MNI152_COPYRIGHT)
    return out_dir


def is_prepared(data_root: str, slices: Sequence[int] = DEFAULT_SLICES) -> bool:
    """Whether ``data_root`` already holds every slice of the task."""
    return all(
        osp.isfile(osp.join(data_root, sub, slice_name(z) + '.png'))
        for z in slices for sub in ('images', 'masks'))
