"""Where an image sits inside a promptable model's square input frame, and the maps between.

Every SAM-family model resizes an image so its longest side fills the model's square frame
(1024 px for SAM, 256 px for LiteMedSAM) and zero-pads it at the bottom/right. Prompts, mask
prompts, the feature grid and the output logits all live in that frame. ``FrameGeometry``
carries the three sizes involved (the image's, the frame's, the image inside the frame) and
does every conversion between image pixels and the frame, so no caller needs to know the
frame size of the model it talks to.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch.nn.functional as F
from torch import Tensor

Size = Tuple[int, int]


def scaled_size(original_size: Size, long_side: int) -> Size:
    """(h', w') with the longest side ``long_side`` (``ResizeLongestSide`` rounding)."""
    h, w = int(original_size[0]), int(original_size[1])
    scale = long_side / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def resize_longest_side(image: Tensor, long_side: int) -> Tensor:
    """(B, C, H, W) float image -> (B, C, h', w') with the longest side ``long_side``.

    Bilinear with antialiasing, so a downscale averages like an area filter.
    """
    h, w = scaled_size(tuple(image.shape[-2:]), long_side)
    return F.interpolate(image, (h, w), mode='bilinear', align_corners=False, antialias=True)


@dataclass(frozen=True)
class FrameGeometry:
    """An image of ``original_size`` inside a model's ``frame_size`` x ``frame_size`` frame.

    Attributes:
        original_size: (H, W) of the image.
        frame_size: side of the model's square input (1024 for SAM, 256 for LiteMedSAM).
        grid_size: side of the image-embedding grid (64 for both).
        mask_size: side of the low-resolution mask logits, in and out (4 x ``grid_size``).
    """

    original_size: Size
    frame_size: int
    grid_size: int = 64
    mask_size: int = 256

    @property
    def input_size(self) -> Size:
        """(h', w') of the image inside the frame, before padding."""
        return scaled_size(self.original_size, self.frame_size)

    def valid_cells(self, size: int) -> Size:
        """(rows, cols) of a ``size`` x ``size`` map over the frame that touch the image."""
        h, w = self.input_size
        return -(-h * size // self.frame_size), -(-w * size // self.frame_size)

    # ----------------------------------------------------------------- coordinates
    def points_to_frame(self, coords: Tensor) -> Tensor:
        """(..., 2) xy pixels on the image -> the frame's pixels (SAM's ``apply_coords``)."""
        h, w = self.input_size
        scale = coords.new_tensor([w / self.original_size[1], h / self.original_size[0]])
        return coords * scale

    def boxes_to_frame(self, boxes: Tensor) -> Tensor:
        """(..., 4) xyxy boxes on the image -> the frame's pixels."""
        return self.points_to_frame(boxes.reshape(*boxes.shape[:-1], 2, 2)).reshape(boxes.shape)

    # ----------------------------------------------------------------- dense maps
    def image_to_frame(self, maps: Tensor, size: int) -> Tensor:
        """(..., H, W) maps on the image -> (..., size, size) over the padded frame.

        The map is resized with the image into the frame, zero-padded like it, and area-pooled
        to ``size`` (e.g. a mask as a 256 x 256 mask prompt, or its coverage of the 64 x 64
        feature grid).
        """
        h, w = self.input_size
        lead = maps.shape[:-2]
        x = maps.reshape(-1, 1, *maps.shape[-2:]).float()
        x = F.interpolate(x, (h, w), mode='bilinear', align_corners=False)
        x = F.pad(x, (0, self.frame_size - w, 0, self.frame_size - h))
        if size != self.frame_size:
            x = F.adaptive_avg_pool2d(x, size)
        return x.reshape(*lead, size, size)

    def frame_to_image(self, maps: Tensor) -> Tensor:
        """(..., s, s) maps over the padded frame (e.g. low-res logits) -> (..., H, W).

        Upsample to the frame, crop the padding away, resize to the image (SAM's
        ``postprocess_masks``; for a 256 frame the first step is the identity).
        """
        lead = maps.shape[:-2]
        x = maps.reshape(-1, 1, *maps.shape[-2:]).float()
        if x.shape[-1] != self.frame_size or x.shape[-2] != self.frame_size:
            x = F.interpolate(x, (self.frame_size, self.frame_size), mode='bilinear',
                              align_corners=False)
        h, w = self.input_size
        x = F.interpolate(x[..., :h, :w], tuple(self.original_size), mode='bilinear',
                          align_corners=False)
        return x.reshape(*lead, *self.original_size)

    def grid_to_mask_size(self, grid: Tensor) -> Tensor:
        """(..., g, g) map on the feature grid -> (..., m, m) at the mask-logit size."""
        lead = grid.shape[:-2]
        x = F.interpolate(grid.reshape(-1, 1, *grid.shape[-2:]).float(),
                          (self.mask_size, self.mask_size), mode='bilinear',
                          align_corners=False)
        return x.reshape(*lead, self.mask_size, self.mask_size)


__all__ = ['FrameGeometry', 'scaled_size', 'resize_longest_side', 'Size']
