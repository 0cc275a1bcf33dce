"""How a target is named in output files and reports."""
from __future__ import annotations

import os.path as osp


def prediction_name(metainfo: dict) -> str:
    """A file stem for a target: its image's name, and ``_0042`` for slice 42 of a volume."""
    name = osp.basename(metainfo.get('img_path', 'image'))
    for suffix in ('.nii.gz', '.nii', '.png', '.jpg', '.jpeg', '.tif', '.tiff', '.bmp', '.dcm'):
        if name.lower().endswith(suffix):
            name = name[:-len(suffix)]
            break
    index = metainfo.get('slice_index')
    return name if index is None else f'{name}_{int(index):04d}'


__all__ = ['prediction_name']
