"""Embedded one-shot tasks on axial slices of the MNI152 template (no download).

The ICBM 2009a MNI152 template (a skull-stripped T1 and grey/white-matter probability maps,
197x233x189 voxels at 1 mm, RAS) ships inside nilearn's wheel. Three tasks are derived from it;
each writes 8-bit PNG slices and 0/1 masks, one slice being the labelled reference:

* ``wm`` (white matter, the default): voxels whose white-matter probability exceeds 0.5;
  axial slices z = 60..120 step 2, reference z = 90 (30 targets). A large, diffuse structure.
* ``ventricles`` (lateral ventricles): tissue is gm + wm probability > 0.5; the brain is that
  tissue with its 3D cavities filled (largest 26-connected component); the ventricles are
  the largest 6-connected 3D component of non-tissue voxels enclosed by the brain (CSF with
  no path to the outside: the lateral ventricles, joined by the third ventricle where they
  meet it). Axial slices z = 74..100 step 2, reference z = 88 (13 targets). A compact,
  high-contrast structure (dark CSF inside bright tissue), two or more blobs per slice.
* ``brain`` (whole brain, skull stripping's target): the filled brain mask above; slices
  z = 60..120 step 2, reference z = 90 (30 targets). A large, convex structure.

Voxel z is the template's axial index (z = 72 is the AC plane, 0 mm). The template's copyright
notice is written beside the data. Data is only written into an empty folder or one this
module wrote before, never among other files.
"""
from __future__ import annotations

import os
import os.path as osp
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

import numpy as np

from ..structures.errors import OneShotDataError
from ..utils.atomic import atomic_write_png, atomic_write_text
from .task_folder import foreign_entries, shown

MNI152_COPYRIGHT = """\
The images and masks in this folder are axial slices of the ICBM 2009a Nonlinear Symmetric
MNI152 template (T1-weighted average and tissue probability maps), as shipped inside the
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

PROBABILITY_THRESHOLD = 0.5
TASK_FILE = 'MNI152_TASK.txt'  # marks a folder this module wrote (and which task)


@dataclass(frozen=True)
class MNI152Task:
    """One embedded task: which slices, which reference, how the mask is derived."""

    name: str
    structure: str
    slices: Tuple[int, ...]
    reference: int
    label: Callable[[Dict[str, np.ndarray]], np.ndarray]  # template volumes -> 3D bool mask


def load_template() -> Dict[str, np.ndarray]:
    """The T1 and the grey/white-matter probability maps (0..1) as float volumes."""
    import nibabel as nib

    out = {}
    for kind in ('t1', 'gm', 'wm'):
        data = np.asarray(nib.load(template_path(kind)).dataobj, dtype=np.float64)
        # The maps are stored scaled to 0..255; a probability of 0.5 is 127.5.
        out[kind] = data / 255.0 if kind != 't1' and data.max() > 1.0 else data
    return out


def white_matter(volumes: Dict[str, np.ndarray]) -> np.ndarray:
    """Voxels whose white-matter probability exceeds 0.5."""
    return volumes['wm'] > PROBABILITY_THRESHOLD


def brain(volumes: Dict[str, np.ndarray]) -> np.ndarray:
    """Tissue (gm + wm > 0.5) with its 3D cavities filled, largest 26-connected component."""
    from scipy import ndimage as ndi

    filled = ndi.binary_fill_holes(volumes['gm'] + volumes['wm'] > PROBABILITY_THRESHOLD)
    return largest_component(filled, connectivity=3)


def ventricles(volumes: Dict[str, np.ndarray]) -> np.ndarray:
    """The largest 6-connected 3D component of non-tissue voxels enclosed by the brain."""
    tissue = volumes['gm'] + volumes['wm'] > PROBABILITY_THRESHOLD
    return largest_component(brain(volumes) & ~tissue, connectivity=1)


def largest_component(mask: np.ndarray, connectivity: int) -> np.ndarray:
    """The largest connected component of a 3D bool mask (empty stays empty)."""
    from scipy import ndimage as ndi

    labels, n = ndi.label(mask, structure=ndi.generate_binary_structure(3, connectivity))
    if n == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


MNI152_TASKS: Dict[str, MNI152Task] = {
    'wm': MNI152Task('wm', 'white matter', tuple(range(60, 121, 2)), 90, white_matter),
    'ventricles': MNI152Task('ventricles', 'lateral ventricles', tuple(range(74, 101, 2)), 88,
                             ventricles),
    'brain': MNI152Task('brain', 'brain', tuple(range(60, 121, 2)), 90, brain),
}


def get_task(task: str) -> MNI152Task:
    if task not in MNI152_TASKS:
        raise OneShotDataError(f'unknown MNI152 task {task!r}; choose one of '
                               f'{", ".join(sorted(MNI152_TASKS))}.')
    return MNI152_TASKS[task]


def slice_name(z: int) -> str:
    """File stem of axial slice ``z`` (``z090``)."""
    return f'z{z:03d}'


def template_path(kind: str) -> str:
    """Path of the nilearn-shipped template volume ``kind`` ('t1', 'gm' or 'wm')."""
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


def _expected_files(task: MNI152Task) -> Dict[str, set]:
    names = {slice_name(z) + '.png' for z in task.slices}
    return {'images': names, 'masks': names}


def check_writable(out_dir: str, task: MNI152Task) -> None:
    """Refuse to write the task into a folder that holds anything it did not write."""
    if not osp.isdir(out_dir):
        return
    foreign = foreign_entries(out_dir, ('COPYRIGHT.txt', TASK_FILE), _expected_files(task))
    marker = osp.join(out_dir, TASK_FILE)
    if osp.isfile(marker):
        with open(marker) as f:
            if f.read().strip() != task.name:
                foreign.append(TASK_FILE)
    if foreign:
        raise OneShotDataError(
            f'{out_dir}: not writing the embedded MNI152 {task.name} task here: the folder '
            f'holds other data ({shown(foreign)}). Give the embedded task its own data_root, '
            "or, for your own images, use test_dataloader.dataset.type='OneShotFolderDataset'.")


def prepare_mni152(out_dir: str, task: str = 'wm', overwrite: bool = False) -> str:
    """Write an embedded MNI152 task to ``out_dir/{images,masks}``; returns ``out_dir``.

    Existing files are kept unless ``overwrite``. A folder holding anything else is refused.
    """

    spec = get_task(task)
    check_writable(out_dir, spec)
    img_dir, mask_dir = osp.join(out_dir, 'images'), osp.join(out_dir, 'masks')
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(mask_dir, exist_ok=True)
    atomic_write_text(osp.join(out_dir, TASK_FILE), spec.name + '\n')
    atomic_write_text(osp.join(out_dir, 'COPYRIGHT.txt'), MNI152_COPYRIGHT)
    todo = [z for z in spec.slices if overwrite or not all(
        osp.isfile(osp.join(d, slice_name(z) + '.png')) for d in (img_dir, mask_dir))]
    if not todo:
        return out_dir
    volumes = load_template()
    labels = spec.label(volumes)
    for z in todo:
        img = np.clip(np.rint(axial_slice(volumes['t1'], z)), 0, 255).astype(np.uint8)
        mask = axial_slice(labels, z).astype(np.uint8)
        atomic_write_png(osp.join(img_dir, slice_name(z) + '.png'), img)
        atomic_write_png(osp.join(mask_dir, slice_name(z) + '.png'), mask)
    return out_dir


def is_prepared(data_root: str, task: str = 'wm') -> bool:
    """Whether ``data_root`` holds every slice of the task, written by this module."""
    spec = get_task(task)
    marker = osp.join(data_root, TASK_FILE)
    if not osp.isfile(marker):
        return False
    with open(marker) as f:
        if f.read().strip() != spec.name:
            return False
    return all(
        osp.isfile(osp.join(data_root, sub, slice_name(z) + '.png'))
        for z in spec.slices for sub in ('images', 'masks'))


__all__ = ['MNI152Task', 'MNI152_TASKS', 'get_task', 'prepare_mni152', 'is_prepared',
           'slice_name', 'axial_slice', 'load_template', 'white_matter', 'brain', 'ventricles',
           'template_path', 'check_writable', 'MNI152_COPYRIGHT']
