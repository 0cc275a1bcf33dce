"""How images are named: cache and report keys, output file stems (one copy of each rule)."""
from __future__ import annotations

import os.path as osp

#: File suffixes of images the plugin reads (longest first, so ``.nii.gz`` wins over ``.gz``).
IMAGE_SUFFIXES = ('.nii.gz', '.nii', '.png', '.jpg', '.jpeg', '.tif', '.tiff', '.bmp', '.dcm')


def file_stem(path: str) -> str:
    """A file's name without its image suffix (``case_1.nii.gz`` -> ``case_1``)."""
    name = osp.basename(path)
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[:-len(suffix)]
    return osp.splitext(name)[0]


def sample_key(metainfo: dict, prefix: str = '') -> str:
    """A stable key for an image: its path and, for a slice of a volume, ``#slice``."""
    path = metainfo.get(prefix + 'img_path')
    index = metainfo.get(prefix + 'slice_index')
    return f'{path}' if index is None else f'{path}#{index}'


def image_name(metainfo: dict) -> str:
    """How reports name an image: its file name, and ``#42`` for slice 42 of a volume."""
    name = osp.basename(metainfo.get('img_path') or '')
    index = metainfo.get('slice_index')
    return name if index is None else f'{name}#{index}'


def prediction_name(metainfo: dict) -> str:
    """A file stem for a target: its image's name, and ``_0042`` for slice 42 of a volume."""
    name = file_stem(metainfo.get('img_path', 'image'))
    index = metainfo.get('slice_index')
    return name if index is None else f'{name}_{int(index):04d}'


__all__ = ['IMAGE_SUFFIXES', 'file_stem', 'sample_key', 'image_name', 'prediction_name']
