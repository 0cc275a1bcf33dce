"""2D image files (PNG, TIFF, JPEG, BMP of any depth): their pixels, and a palette PNG's
indices (how mmseg reads indexed-colour masks)."""
from __future__ import annotations

import os.path as osp
from typing import Optional

import numpy as np

from ..structures.errors import OneShotDataError


def read_image_file(path: str) -> np.ndarray:
    """The pixels of a 2D image file: channels kept (BGR -> RGB), dtype kept (8/16-bit, float);
    errors name the file."""
    if not osp.isfile(path):
        raise OneShotDataError(f'{path}: file not found.')
    import cv2
    try:
        data = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    except Exception as e:
        raise OneShotDataError(f'{path}: cannot read ({type(e).__name__}: {e}).') from e
    if data is None:
        raise OneShotDataError(f'{path}: cannot read (not an image file OpenCV understands, '
                               'or a corrupt one).')
    if data.ndim == 3 and data.shape[2] >= 3:
        data = np.ascontiguousarray(data[..., [2, 1, 0] + list(range(3, data.shape[2]))])
    return data


def palette_indices(path: str) -> Optional[np.ndarray]:
    """The indices of a palette (indexed-colour) image, as mmseg reads such masks; None for any
    other file."""
    try:
        from PIL import Image
        with Image.open(path) as img:
            return np.array(img) if img.mode == 'P' else None
    except Exception:  # not an image PIL knows: read_image_file reports it
        return None


__all__ = ['palette_indices', 'read_image_file']
