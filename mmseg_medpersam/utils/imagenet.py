"""ImageNet's RGB mean and std on 0..255 pixels: SAM's and DINOv2's normalisation (one copy)."""
from typing import Tuple

IMAGENET_MEAN: Tuple[float, float, float] = (123.675, 116.28, 103.53)
IMAGENET_STD: Tuple[float, float, float] = (58.395, 57.12, 57.375)

__all__ = ['IMAGENET_MEAN', 'IMAGENET_STD']
