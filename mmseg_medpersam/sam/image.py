"""Bring medical images into SAM's input space, and SAM's outputs back to the image.

SAM expects an RGB image with values 0..255, resized so its longest side is 1024 and zero-padded
(after normalisation) to 1024x1024 at the bottom/right. Medical images are often single-channel,
16-bit or float; ``to_uint8_rgb`` maps them by one documented rule:

* uint8: kept as is;
* any other dtype: intensities are clipped to ``window`` = (low, high) when given (e.g. a CT
  window), else to the 0.5th and 99.5th percentiles of the image, then scaled linearly to 0..255;
* one channel is repeated to three; a fourth (alpha) channel is dropped.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .builder import IMAGE_SIZE

Size = Tuple[int, int]


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


def input_size(original_size: Size, long_side: int = IMAGE_SIZE) -> Size:
    """Size of the image inside SAM's frame (``ResizeLongestSide`` rounding)."""
    h, w = original_size
    scale = long_side / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def resize_longest_side(image: torch.Tensor, long_side: int = IMAGE_SIZE) -> torch.Tensor:
    """(B,3,H,W) float image -> (B,3,h',w') with the longest side ``long_side`` (antialiased)."""
    h, w = input_size(tuple(image.shape[-2:]), long_side)
    return F.interpolate(image, (h, w), mode='bilinear', align_corners=False, antialias=True)


def mask_to_sam_frame(mask: torch.Tensor, original_size: Size) -> torch.Tensor:
    """(..., H, W) float map at the image's size -> (..., 1024, 1024) in SAM's padded frame."""
    h, w = input_size(original_size)
    lead = mask.shape[:-2]
    x = mask.reshape(-1, 1, *mask.shape[-2:]).float()
    x = F.interpolate(x, (h, w), mode='bilinear', align_corners=False)
    x = F.pad(x, (0, IMAGE_SIZE - w, 0, IMAGE_SIZE - h))
    return x.reshape(*lead, IMAGE_SIZE, IMAGE_SIZE)


def frame_to_image(maps: torch.Tensor, original_size: Size) -> torch.Tensor:
    """(..., s, s) maps over SAM's padded frame (e.g. 256x256 logits) -> (..., H, W) on the image.

    Upsample to 1024, crop the padding away, resize to the original size (``postprocess_masks``).
    """
    lead = maps.shape[:-2]
    x = maps.reshape(-1, 1, *maps.shape[-2:]).float()
    x = F.interpolate(x, (IMAGE_SIZE, IMAGE_SIZE), mode='bilinear', align_corners=False)
    h, w = input_size(original_size)
    x = x[..., :h, :w]
    x = F.interpolate(x, tuple(original_size), mode='bilinear', align_corners=False)
    return x.reshape(*lead, *original_size)


def image_to_frame(maps: torch.Tensor, original_size: Size, size: int) -> torch.Tensor:
    """(..., H, W) maps on the image -> (..., size, size) over SAM's padded frame.

    The inverse of ``frame_to_image``: e.g. a mask as a 256x256 mask prompt or on the 64x64
    feature grid. Padding is zero; use ``area`` pooling semantics by going through 1024.
    """
    framed = mask_to_sam_frame(maps, original_size)
    lead = framed.shape[:-2]
    x = F.adaptive_avg_pool2d(framed.reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE), size)
    return x.reshape(*lead, size, size)


def points_to_frame(coords: torch.Tensor, original_size: Size) -> torch.Tensor:
    """(..., 2) xy pixel coordinates on the image -> SAM's 1024 frame (``apply_coords``)."""
    h, w = input_size(original_size)
    scale = coords.new_tensor([w / original_size[1], h / original_size[0]])
    return coords * scale


def boxes_to_frame(boxes: torch.Tensor, original_size: Size) -> torch.Tensor:
    """(..., 4) xyxy boxes on the image -> SAM's 1024 frame."""
    return points_to_frame(boxes.reshape(*boxes.shape[:-1], 2, 2),
                           original_size).reshape(boxes.shape)
