"""NRRD label volumes, as 3D Slicer saves them (``.seg.nrrd`` segmentations and ``.nrrd``
label maps), read with pynrrd: voxels, geometry and segment names."""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from ..structures.errors import OneShotDataError

#: NRRD ``space`` values (and their short forms) -> the sign flips that take them to RAS.
_SPACES = {'right-anterior-superior': (1, 1, 1), 'ras': (1, 1, 1),
           'left-posterior-superior': (-1, -1, 1), 'lps': (-1, -1, 1),
           'left-anterior-superior': (-1, 1, 1), 'las': (-1, 1, 1),
           'scanner-xyz': (1, 1, 1), '3d-right-handed': (1, 1, 1)}


def _segments(header: dict) -> List[dict]:
    """Slicer's segment records: name, label value and layer of ``Segment<i>_*``."""
    out, i = [], 0
    while f'Segment{i}_ID' in header or f'Segment{i}_Name' in header:
        out.append(dict(name=str(header.get(f'Segment{i}_Name', f'segment {i + 1}')),
                        value=int(header.get(f'Segment{i}_LabelValue', i + 1)),
                        layer=int(header.get(f'Segment{i}_Layer', 0))))
        i += 1
    return out


def read_nrrd_labels(path: str) -> Tuple[np.ndarray, np.ndarray, Optional[List[str]]]:
    """(class indices in stored voxel order, RAS affine, class names or None).

    A Slicer segmentation's segments become classes 1..n in the file's segment order (a 4D,
    layered file is merged layer by layer); a plain label map keeps its values as classes.
    """
    import nrrd
    try:
        data, header = nrrd.read(path)
    except Exception as e:
        raise OneShotDataError(f'{path}: cannot read as NRRD ({type(e).__name__}: {e}).') from e
    directions = header.get('space directions')
    origin = header.get('space origin')
    space = str(header.get('space', 'right-anterior-superior')).lower()
    if directions is None or origin is None or space not in _SPACES:
        raise OneShotDataError(f'{path}: an NRRD label volume needs its geometry (space '
                               f'{space!r}, space directions, space origin) to be matched to '
                               'its image.')
    rows = [np.asarray(d, float) for d in directions]
    spatial = [i for i, d in enumerate(rows) if d.size == 3 and np.all(np.isfinite(d))]
    if len(spatial) != 3:
        raise OneShotDataError(f'{path}: not a 3D label volume (space directions {directions}).')
    layers = [i for i in range(data.ndim) if i not in spatial]
    if len(layers) > 1:
        raise OneShotDataError(f'{path}: {data.ndim}D data with {len(layers)} non-spatial axes.')
    segments = _segments(header)
    stack = np.transpose(data, layers + spatial) if layers else data[None]
    labels = np.zeros(stack.shape[1:], np.uint8)
    names = None
    if segments:
        names = []
        for k, seg in enumerate(segments, start=1):
            if seg['layer'] >= stack.shape[0]:
                raise OneShotDataError(f'{path}: segment {seg["name"]!r} is on layer '
                                       f'{seg["layer"]} of {stack.shape[0]}.')
            labels[stack[seg['layer']] == seg['value']] = k
            names.append(seg['name'])
    else:
        if layers:
            raise OneShotDataError(f'{path}: a layered NRRD without segment records.')
        values = stack[0]
        if np.issubdtype(values.dtype, np.floating) and not np.all(values == np.round(values)):
            raise OneShotDataError(f'{path}: label map has non-integer values.')
        if values.min() < 0 or values.max() > 254:
            raise OneShotDataError(f'{path}: label values must be 0..254 (got '
                                   f'{values.min()}..{values.max()}).')
        labels = values.astype(np.uint8)
    affine = np.eye(4)
    affine[:3, :3] = np.stack([rows[a] for a in spatial], axis=1)
    affine[:3, 3] = np.asarray(origin, float)
    affine = np.diag(list(_SPACES[space]) + [1.0]) @ affine
    return labels, affine, names


__all__ = ['read_nrrd_labels']
