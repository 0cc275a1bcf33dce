"""The warping model's one intensity rule, and its mask reader.

Images reach the warping model as every one-shot head gets them: grayscale or RGB with
intensities in ``0..255`` (mmseg's convention; the loading transforms window CT, MRI and
microscopy into it). They become one gray channel in ``[0, 1]`` by a fixed division, never by
guessing a range from the pixels: a dark target stays dark beside a bright reference.
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch
from torch import Tensor

ArrayLike = Union[np.ndarray, Tensor]
#: The intensity range images arrive in (mmseg's 8-bit convention).
INTENSITY_MAX = 255.0
#: ITU-R BT.601 luma weights: RGB to gray.
RGB_WEIGHTS = (0.299, 0.587, 0.114)


def to_gray(image: ArrayLike) -> Tensor:
    """A ``(H, W)`` float32 CPU tensor in ``[0, 1]`` from a ``0..255`` gray or RGB image.

    Accepts ``(H, W)``, ``(1|3, H, W)`` or ``(H, W, 1|3)`` arrays or tensors of any dtype;
    intensities outside ``0..255`` are clipped, as a display window clips them.
    """
    x = image.detach().cpu() if isinstance(image, Tensor) else torch.as_tensor(
        np.asarray(image))
    if x.dim() == 3:
        if x.shape[0] not in (1, 3):
            if x.shape[-1] not in (1, 3):
                raise ValueError(f'cannot read an image of shape {tuple(x.shape)}')
            x = x.permute(2, 0, 1)
    elif x.dim() != 2:
        raise ValueError(f'expected a 2D grayscale or RGB image, got {tuple(x.shape)}')
    x = x.float() / INTENSITY_MAX
    if x.dim() == 3:
        x = x[0] if x.shape[0] == 1 else sum(w * c for w, c in zip(RGB_WEIGHTS, x))
    return x.clamp(0, 1)


def to_mask(mask: ArrayLike) -> Tensor:
    """A ``(H, W)`` float32 CPU map from a bool / 0-1 mask or any float map (kept as is)."""
    m = mask.detach().cpu() if isinstance(mask, Tensor) else torch.as_tensor(np.asarray(mask))
    while m.dim() > 2 and m.shape[0] == 1:
        m = m[0]
    if m.dim() != 2:
        raise ValueError(f'expected a (H, W) mask, got {tuple(m.shape)}')
    return m.float()


__all__ = ['INTENSITY_MAX', 'to_gray', 'to_mask']
