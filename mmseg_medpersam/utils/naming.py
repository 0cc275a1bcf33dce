"""How images are named: cache and report keys, output file stems (one copy of each rule)."""
from __future__ import annotations

import os
import os.path as osp
from typing import Dict, List, Mapping

#: File suffixes of images the plugin reads (longest first, so ``.nii.gz`` wins over ``.gz``).
IMAGE_SUFFIXES = ('.nii.gz', '.nii', '.png', '.jpg', '.jpeg', '.tif', '.tiff', '.bmp', '.dcm')


def file_stem(path: str) -> str:
    """A file's name without its image suffix (``case_1.nii.gz`` -> ``case_1``)."""
    name = osp.basename(path)
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[:-len(suffix)]
    return osp.splitext(name)[0]


def _path_and_slice(metainfo, prefix: str = '') -> tuple:
    """``(img_path, slice_index)`` of a sample's metainfo (a mapping) or a ``ReferenceFile``."""
    if isinstance(metainfo, Mapping):
        return metainfo.get(prefix + 'img_path'), metainfo.get(prefix + 'slice_index')
    return (getattr(metainfo, prefix + 'img_path', None),
            getattr(metainfo, prefix + 'slice_index', None))


def sample_key(metainfo, prefix: str = '') -> str:
    """A stable key for an image: its path and, for a slice of a volume, ``#slice``.
    ``metainfo``: a sample's metainfo (a mapping) or a ``ReferenceFile``."""
    path, index = _path_and_slice(metainfo, prefix)
    return f'{path}' if index is None else f'{path}#{index}'


def reference_cache_key(key: str) -> str:
    """The cache key of a reference image's embedding or features: apart from a target's of
    the same file (a target may be a reference of another run, labelled or not)."""
    return 'ref:' + key


def references_key(references) -> str:
    """A stable key for a sample's set of references (``sample_key`` of each file, in order;
    ``references``: a ``OneShotReferences`` or a sequence of reference files)."""
    return ' + '.join(sample_key(r) for r in references)


def image_name(metainfo) -> str:
    """How reports name an image: its file name, and ``#42`` for slice 42 of a volume
    (``metainfo``: a sample's metainfo or a ``ReferenceFile``)."""
    path, index = _path_and_slice(metainfo)
    name = osp.basename(path or '')
    return name if index is None else f'{name}#{index}'


def unique_names(paths: List[str]) -> Dict[str, str]:
    """A distinct output name per input path: the file stem, with as many parent folders in
    front (joined by '_') as it takes to tell inputs of the same file name apart."""
    names: Dict[str, str] = {}
    depth = {p: 0 for p in paths}
    while True:
        for p in paths:
            parts = osp.normpath(osp.abspath(p)).split(os.sep)
            parents = [q for q in parts[-1 - depth[p]:-1] if q]
            names[p] = '_'.join(parents + [file_stem(p)])
        clash = {n for n in names.values() if list(names.values()).count(n) > 1}
        if not clash:
            return names
        grown = False
        for p in paths:
            if names[p] in clash and depth[p] < len(osp.abspath(p).split(os.sep)) - 2:
                depth[p] += 1
                grown = True
        if not grown:  # identical paths cannot clash here: inputs are de-duplicated
            return names


def target_names(infos: List[dict]) -> List[str]:
    """A distinct output name per target of a dataset: ``unique_names`` of the files, and
    ``_0042`` for slice 42 of a volume (``case1/imaging.nii.gz`` and ``case2/imaging.nii.gz``
    give ``case1_imaging_0042`` and ``case2_imaging_0042``)."""
    names = unique_names(sorted({osp.realpath(i['img_path']) for i in infos}))
    out = []
    for info in infos:
        name = names[osp.realpath(info['img_path'])]
        index = info.get('slice_index')
        out.append(name if index is None else f'{name}_{int(index):04d}')
    return out


def prediction_name(metainfo: dict) -> str:
    """A file stem for a target: the dataset's unique ``target_name`` when it set one, else its
    image's name, and ``_0042`` for slice 42 of a volume."""
    if metainfo.get('target_name'):
        return metainfo['target_name']
    name = file_stem(metainfo.get('img_path', 'image'))
    index = metainfo.get('slice_index')
    return name if index is None else f'{name}_{int(index):04d}'


__all__ = ['IMAGE_SUFFIXES', 'file_stem', 'sample_key', 'reference_cache_key', 'references_key',
           'image_name', 'unique_names', 'target_names', 'prediction_name']
