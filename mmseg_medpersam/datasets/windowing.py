"""Bring medical images of any depth to the 8-bit RGB every method starts from.

Medical images are often single-channel, 16-bit or float; ``to_uint8_rgb`` maps them by one
documented rule:

* uint8: kept as is;
* any other dtype: intensities are clipped to ``window`` = (low, high) when given (e.g. a CT
  window), else to the 0.5th and 99.5th percentiles of the image, then scaled linearly to 0..255;
* one channel is repeated to three; a fourth (alpha) channel is dropped.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np


def window_to_uint8(image: np.ndarray,
                    window: Optional[Sequence[float]] = None,
                    percentiles: Tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
    """Map an array of any dtype to uint8 by the module's windowing rule."""
    if image.dtype == np.uint8:
        return image
    data = image.astype(np.float64)
    if window is not None:
        low, high = float(window[0]), float(window[1])
    else:
        finite = data[np.isfinite(data)]
        if finite.size == 0:
            return np.zeros(image.shape, np.uint8)
        low, high = np.percentile(finite, percentiles)
    if high <= low:
        return np.zeros(image.shape, np.uint8)
    data = np.nan_to_num(data, nan=low)
    return np.rint(np.clip((data - low) / (high - low), 0, 1) * 255).astype(np.uint8)


def to_uint8_rgb(image: np.ndarray, window: Optional[Sequence[float]] = None) -> np.ndarray:
    """HxW or HxWxC array of any dtype -> HxWx3 uint8 (channel order unchanged)."""
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f'expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {image.shape}')
    image = window_to_uint8(image[..., :3], window)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image)


__all__ = ['window_to_uint8', 'to_uint8_rgb']
