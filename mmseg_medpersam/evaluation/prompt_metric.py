"""How good are the prompts a method generated? Scored against the target's ground truth.

For every image and class, from the prompts stored with the prediction (``prompts`` metainfo):

* ``pos_precision``: fraction of positive points inside the ground-truth structure;
* ``neg_precision``: fraction of negative points outside it;
* ``pos_spread``: mean nearest-neighbour distance between positive points divided by
  sqrt(ground-truth area): how far the points spread over the structure (needs >= 2 points);
* ``box_iou``: IoU of the box prompt with the ground-truth box;
* ``mask_dice``: Dice of the mask prompt (e.g. the warped reference mask) with the ground truth.

A figure that a method does not produce (PerSAM has no box prompt) is left out. Summaries are
means over images and classes, in [0, 1].
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from mmseg.registry import METRICS

from ..structures.prompt_record import PromptRecord
from ..utils.masks import dice, mask_bbox

FIGURES = ('pos_precision', 'neg_precision', 'pos_spread', 'box_iou', 'mask_dice')


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two inclusive xyxy pixel boxes (``mask_bbox``'s convention)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = ix * iy
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return float(inter / (area(a) + area(b) - inter))


def prompt_figures(record: PromptRecord, gt: np.ndarray) -> Dict[str, Optional[float]]:
    """The module's figures for one class's prompt record against its (H, W) bool truth."""
    out: Dict[str, Optional[float]] = dict.fromkeys(FIGURES)
    h, w = gt.shape
    coords, labels = record.point_coords, record.point_labels
    if coords is not None and labels is not None:
        coords = np.asarray(coords, float).reshape(-1, 2)
        labels = np.asarray(labels).reshape(-1)
        xs = np.clip(np.floor(coords[:, 0]).astype(int), 0, w - 1)
        ys = np.clip(np.floor(coords[:, 1]).astype(int), 0, h - 1)
        inside = gt[ys, xs]
        pos, neg = labels == 1, labels == 0
        if pos.any():
            out['pos_precision'] = float(inside[pos].mean())
            pts = np.unique(coords[pos], axis=0)
            if len(pts) >= 2 and gt.any():
                d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
                np.fill_diagonal(d, np.inf)
                out['pos_spread'] = float(d.min(axis=1).mean() / np.sqrt(gt.sum()))
        if neg.any():
            out['neg_precision'] = float((~inside[neg]).mean())
    boxes = record.boxes
    gt_box = mask_bbox(gt)
    if boxes is not None and gt_box is not None:
        out['box_iou'] = _box_iou(np.asarray(boxes, float).reshape(-1, 4)[0], gt_box.numpy())
    mask = record.mask
    if mask is not None:
        score = dice(np.asarray(mask, bool), gt)
        out['mask_dice'] = None if np.isnan(score) else score
    return out


@METRICS.register_module()
class PromptQualityMetric(BaseMetric):
    """Quality of generated prompts (see module docstring), averaged over images and classes."""

    default_prefix: Optional[str] = 'prompt'

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            gt = sample['gt_sem_seg']['data'][0].cpu().numpy()
            for c, record in PromptRecord.of(sample).items():
                self.results.append(prompt_figures(record, gt == int(c)))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        metrics = {}
        for name in FIGURES:
            values = [r[name] for r in results if r.get(name) is not None]
            if values:
                metrics[name] = round(float(np.mean(values)), 4)
        print_log('prompt quality: ' + ', '.join(f'{k} {v:.3f}' for k, v in metrics.items()),
                  logger='current')
        return metrics
