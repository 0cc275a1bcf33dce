"""Overlap of binary masks: the one Dice / IoU of the plugin, and a mask's bounding box.

Convention for empty masks: when both masks are empty there is nothing to overlap and the
score is undefined: ``nan``. Metrics leave such images out of the mean (nothing to find,
nothing found); agreement gates (``dice(a, b) < threshold``) treat them as agreeing, since any
comparison with ``nan`` is false.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

Mask = Union[np.ndarray, Tensor]


def _counts(a: Mask, b: Mask) -> Tuple[float, float, float]:
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        a, b = torch.as_tensor(a).bool(), torch.as_tensor(b).bool().to(torch.as_tensor(a).device)
        return float((a & b).sum()), float(a.sum()), float(b.sum())
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return float(np.logical_and(a, b).sum()), float(a.sum()), float(b.sum())


def dice_iou(a: Mask, b: Mask) -> Tuple[float, float]:
    """Dice and IoU of two bool masks (numpy or torch); (nan, nan) when both are empty."""
    inter, p, g = _counts(a, b)
    if p + g == 0:
        return float('nan'), float('nan')
    return 2 * inter / (p + g), inter / (p + g - inter)


def dice(a: Mask, b: Mask) -> float:
    """Dice of two bool masks; nan when both are empty (see the module's convention)."""
    return dice_iou(a, b)[0]


def iou(a: Mask, b: Mask) -> float:
    """IoU of two bool masks; nan when both are empty (see the module's convention)."""
    return dice_iou(a, b)[1]


def mask_bbox(mask: Tensor) -> Optional[Tensor]:
    """(4,) float xyxy pixel box of a (H, W) bool mask, or None when it is empty."""
    ys, xs = torch.nonzero(torch.as_tensor(mask), as_tuple=True)
    if ys.numel() == 0:
        return None
    return torch.stack([xs.min(), ys.min(), xs.max(), ys.max()]).float()


__all__ = ['dice_iou', 'dice', 'iou', 'mask_bbox']
