"""What a run on the user's own files segments: inputs (files, folders, volumes, DICOM
series, ``vol.nii.gz#42`` slices) expanded into targets with unique output names."""
from __future__ import annotations

import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..datasets.dicom import read_series
from ..datasets.loading import check_volume_data, is_dicom_volume_path, is_volume, open_volume
from ..structures.errors import OneShotDataError
from ..utils.naming import IMAGE_SUFFIXES, unique_names

#: (path, slice index or None) of an input or a reference.
Item = Tuple[str, Optional[int]]


@dataclass
class Target:
    """One image to segment: a 2D file, or one slice of a volume."""

    path: str
    slice_index: Optional[int] = None
    name: str = ''
    volume: Optional[str] = None  # the volume input this slice belongs to


@dataclass
class Plan:
    """What to segment and where its outputs go.

    Attributes:
        targets: every image to segment, in order.
        volumes: volume inputs (path -> number of slices along the run's axis).
        names: input path -> its unique output name.
        failed: inputs that cannot be used, one line each (the others are segmented).
        notes: what was left out on purpose (references among the inputs, objects beside a
            DICOM series), one line each.
    """

    targets: List[Target] = field(default_factory=list)
    volumes: Dict[str, int] = field(default_factory=dict)
    names: Dict[str, str] = field(default_factory=dict)
    failed: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


def split_slice(path: str) -> Item:
    """``vol.nii.gz#42`` -> (``vol.nii.gz``, 42); a negative or non-integer index is an error."""
    if '#' not in path:
        return path, None
    file, index = path.rsplit('#', 1)
    if not index.isdigit():
        raise OneShotDataError(f'{path}: the slice after # must be a whole number >= 0, '
                               f'got {index!r}.')
    return file, int(index)


def series_slice_of(path: str) -> Optional[Item]:
    """A DICOM file that is one slice of the series in its folder: (folder, its index in the
    series' order), else None: a reference given as the file it was drawn on is that slice."""
    folder = osp.dirname(osp.abspath(path))
    if not osp.isfile(path) or not is_dicom_volume_path(folder):
        return None
    try:
        files = read_series(folder).files
    except OneShotDataError:
        return None
    real = osp.realpath(path)
    for k, f in enumerate(files):
        if osp.realpath(f) == real:
            return folder, k
    return None


def _expand(items: Sequence[str], plan: Plan) -> List[Item]:
    entries: List[Item] = []
    for item in items:
        try:
            path, index = split_slice(item)
        except OneShotDataError as e:
            plan.failed.append(str(e))
            continue
        if osp.isdir(path) and index is None and is_volume(path):  # a DICOM series
            entries.append((path, None))
        elif osp.isdir(path):
            found = sorted(osp.join(path, f) for f in os.listdir(path)
                           if f.lower().endswith(IMAGE_SUFFIXES))
            if not found:
                plan.failed.append(f'{path}: no image files in this folder '
                                   f'({", ".join(IMAGE_SUFFIXES)}).')
            entries += [(f, None) for f in found]
        else:
            entries.append((path, index))
    seen, unique = set(), []
    for path, index in entries:
        key = (osp.realpath(path), index)
        if key not in seen:
            seen.add(key)
            unique.append((path, index))
    return unique


def plan_targets(items: Sequence[str], axis: Optional[int], references: Sequence[Item]) -> Plan:
    """Expand folders and volumes into targets; the references are left out (and noted).
    Unreadable inputs are listed in ``failed``, not fatal. ``axis`` None slices a DICOM series
    along its own slice axis and a NIfTI volume along 2 (axial)."""
    plan = Plan()
    unique = _expand(items, plan)
    names = plan.names = unique_names(sorted({p for p, _ in unique}))
    ref_real = {}
    for path, index in references:
        ref_real[(osp.realpath(path), index)] = path
        as_slice = series_slice_of(path) if index is None else None
        if as_slice is not None:  # a reference given as one file of a target series
            ref_real[(osp.realpath(as_slice[0]), as_slice[1])] = path
    for path, index in unique:
        if is_volume(path) and index is None:
            try:
                check_volume_data(path)
                volume = open_volume(path)
            except OneShotDataError as e:
                plan.failed.append(str(e))
                continue
            depth = plan.volumes[path] = volume.depth(axis)
            if volume.native_axis is not None:
                plan.notes += [line for line in read_series(path).skipped]
            for z in range(depth):
                ref = ref_real.get((osp.realpath(path), z))
                if ref is not None:
                    plan.notes.append(f'{path}#{z}: the reference ({ref}), not segmented; its '
                                      'labels fill its slice of the label volume')
                    continue
                plan.targets.append(Target(path, z, f'{names[path]}_{z:04d}', path))
            continue
        ref = ref_real.get((osp.realpath(path), index))
        if ref is not None:
            plan.notes.append(f'{path if index is None else f"{path}#{index}"}: a reference, '
                              'not segmented')
            continue
        name = names[path] if index is None else f'{names[path]}_{index:04d}'
        plan.targets.append(Target(path, index, name))
    return plan


__all__ = ['Item', 'Plan', 'Target', 'plan_targets', 'series_slice_of', 'split_slice']
