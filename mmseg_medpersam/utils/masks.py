"""Overlap of binary masks: the one Dice / IoU of the plugin, and a mask's bounding box.

Convention for empty masks: when both masks are empty there is nothing to overlap and the
score is undefined: ``nan``. Metrics leave such images out of the mean (nothing to find,
nothing found); agreement gates (``dice(a, b) < threshold``) treat them as agreeing, since any
comparison with ``nan`` is false.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Union

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


def soft_dice_loss(prob: Tensor, target: Tensor, eps: float = 1.0) -> Tensor:
    """``1 - soft Dice`` per sample, averaged; ``eps`` keeps empty masks defined (loss 0)."""
    dims = tuple(range(1, prob.dim()))
    inter = (prob * target).sum(dims)
    denom = prob.sum(dims) + target.sum(dims)
    return (1.0 - (2.0 * inter + eps) / (denom + eps)).mean()


def merge_class_logits(classes: Sequence[int], logits: Tensor) -> Tensor:
    """(H, W) label map from per-class (C, H, W) logits: each pixel takes the class with the
    highest logit where that logit is positive, else background 0."""
    labels = torch.zeros(logits.shape[-2:], dtype=torch.long)
    if not len(classes):
        return labels
    logits = logits.float().cpu()
    fg = logits.max(dim=0).values > 0
    labels[fg] = torch.as_tensor(list(classes))[logits.argmax(dim=0)[fg]]
    return labels


def label_map_scores(pred: np.ndarray, gt: np.ndarray, ignore_index: int,
                     num_classes: Optional[int] = None) -> Dict[int, Tuple[float, float]]:
    """Per foreground class ``c`` of two label maps: ``(dice, iou)`` of ``pred == c`` and
    ``gt == c`` outside the ``ignore_index`` pixels; (nan, nan) for a class in neither.

    Classes 1 .. ``num_classes`` - 1; without ``num_classes``, every class either map holds.
    """
    valid = gt != ignore_index
    n = num_classes or int(max(pred.max(initial=0), gt[valid].max(initial=0)) + 1)
    return {c: dice_iou((pred == c) & valid, (gt == c) & valid) for c in range(1, n)}


def mean_foreground_dice(pred: np.ndarray, gt: np.ndarray, ignore_index: int) -> Optional[float]:
    """Mean Dice over the foreground classes present in either map (None if none is)."""
    scores = [d for d, _ in label_map_scores(pred, gt, ignore_index).values() if not np.isnan(d)]
    return float(np.mean(scores)) if scores else None


def mask_bbox(mask: Tensor) -> Optional[Tensor]:
    """(4,) float xyxy pixel box of a (H, W) bool mask, or None when it is empty."""
    ys, xs = torch.nonzero(torch.as_tensor(mask), as_tuple=True)
    if ys.numel() == 0:
        return None
    return torch.stack([xs.min(), ys.min(), xs.max(), ys.max()]).float()


def component_boxes(mask: Tensor, min_fraction: float = 0.05,
                    max_components: int = 8) -> Optional[Tensor]:
    """(K, 4) float xyxy boxes of the connected components of a (H, W) bool mask.

    Components (8-connected) are taken largest first; one smaller than ``min_fraction`` of the
    mask's area is left out (specks would get a box of their own), and at most
    ``max_components`` are kept. A mask of many small pieces, none of which reaches
    ``min_fraction``, gets the one box around all of them (as ``mask_bbox``). None when the mask
    is empty; otherwise always at least one box.
    """
    from scipy import ndimage

    arr = torch.as_tensor(mask).bool().cpu().numpy()
    labels, count = ndimage.label(arr, structure=np.ones((3, 3), bool))
    if count == 0:
        return None
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    order = np.argsort(-areas, kind='stable')
    keep = [i for i in order if areas[i] >= min_fraction * areas.sum()][:max_components]
    if not keep:  # no piece stands out: one box around them all
        return mask_bbox(torch.as_tensor(mask))[None]
    slices = ndimage.find_objects(labels)
    boxes = [[slices[i][1].start, slices[i][0].start, slices[i][1].stop - 1,
              slices[i][0].stop - 1] for i in keep]
    return torch.tensor(boxes, dtype=torch.float32, device=torch.as_tensor(mask).device)


__all__ = ['dice_iou', 'dice', 'iou', 'label_map_scores', 'mean_foreground_dice', 'mask_bbox',
           'component_boxes']
