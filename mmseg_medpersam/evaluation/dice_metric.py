"""Per-image foreground Dice and IoU, as medical segmentation papers report them.

mmseg's ``IoUMetric`` sums areas over the whole dataset and averages the background class in,
which inflates a two-class medical score. Here every image is scored on its own, per foreground
class; the summary is the mean (and std) over images, then over classes, in percent.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from mmseg.registry import METRICS

from ..structures.labels import IGNORE_INDEX
from ..utils.masks import label_map_scores
from ..utils.naming import image_name, prediction_name

#: The prefix of this metric's names in mmengine's evaluator output.
METRIC_PREFIX = 'oneshot'


@METRICS.register_module()
class PerImageDiceMetric(BaseMetric):
    """Foreground Dice/IoU per image and class; mean and std over images.

    Images where a class is absent from both the prediction and the ground truth do not count
    for that class (there is nothing to score: ``utils.masks``' convention). Pixels labelled
    255 are ignored. Besides the summary (mDice, mDice_std, mIoU in percent) the metrics carry
    ``per_class`` and ``per_image`` (in dataset order, one entry per image whatever the number
    of processes), which the test loop writes to its report.
    """

    #: Its names are ``oneshot/mDice`` etc. beside other metrics (mmseg's ``IoUMetric`` has
    #: an ``mIoU`` too); the report lists them without the prefix.
    default_prefix: Optional[str] = METRIC_PREFIX

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        num_classes = len(self.dataset_meta['classes']) if self.dataset_meta else None
        for sample in data_samples:
            pred = sample['pred_sem_seg']['data'][0].cpu().numpy()
            gt = sample['gt_sem_seg']['data'][0].cpu().numpy()
            scores = label_map_scores(pred, gt, IGNORE_INDEX, num_classes)
            self.results.append(dict(img=image_name(sample), name=prediction_name(sample),
                                     scores=scores,
                                     order=sample.get('sample_idx'),
                                     seconds=sample.get('predict_seconds'),
                                     refinement=sample.get('refinement')))

    def compute_metrics(self, results: List[dict]) -> Dict[str, object]:
        # Dataset order, each image once (samplers of several processes pad with repeats).
        if all(r.get('order') is not None for r in results):
            results = list({r['order']: r for r in sorted(results,
                                                          key=lambda r: r['order'])}.values())
        classes = self.dataset_meta['classes'] if self.dataset_meta else None
        class_ids = sorted({c for r in results for c in r['scores']})
        summary: Dict[str, float] = {}
        per_class = {}
        for c in class_ids:
            d = np.array([r['scores'][c][0] for r in results if c in r['scores']], float)
            j = np.array([r['scores'][c][1] for r in results if c in r['scores']], float)
            d, j = d[~np.isnan(d)], j[~np.isnan(j)]
            name = classes[c] if classes and c < len(classes) else str(c)
            per_class[name] = dict(dice=100 * d.mean() if d.size else float('nan'),
                                   dice_std=100 * d.std() if d.size else float('nan'),
                                   iou=100 * j.mean() if j.size else float('nan'),
                                   num_images=int(d.size))
        if per_class:
            summary['mDice'] = float(np.nanmean([v['dice'] for v in per_class.values()]))
            summary['mDice_std'] = float(np.nanmean([v['dice_std'] for v in per_class.values()]))
            summary['mIoU'] = float(np.nanmean([v['iou'] for v in per_class.values()]))
        lines = [f'{name}: Dice {v["dice"]:.2f} +- {v["dice_std"]:.2f}, IoU {v["iou"]:.2f} '
                 f'({v["num_images"]} images)' for name, v in per_class.items()]
        print_log('per-image foreground scores\n' + '\n'.join(lines), logger='current')
        out: Dict[str, object] = {k: round(v, 2) for k, v in summary.items()}
        out['per_class'] = per_class
        out['per_image'] = per_image_entries(results)
        return out


def per_image_entries(results: List[dict]) -> List[dict]:
    """One report entry per image: mean Dice/IoU over its scored classes, per class if many."""
    entries = []
    for r in results:
        d = [v[0] for v in r['scores'].values() if not np.isnan(v[0])]
        j = [v[1] for v in r['scores'].values() if not np.isnan(v[1])]
        entry = dict(img=r['img'], name=r.get('name'), dice=float(np.mean(d)) if d else None,
                     iou=float(np.mean(j)) if j else None)
        if len(r['scores']) > 1:
            entry['per_class'] = {str(c): dict(dice=v[0], iou=v[1])
                                  for c, v in r['scores'].items()}
        if r.get('seconds') is not None:
            entry['seconds'] = r['seconds']
        if r.get('refinement'):  # the method's own record of its SAM step, per class
            entry['refinement'] = {str(c): v for c, v in r['refinement'].items()}
        entries.append(entry)
    return entries
