"""PromptQualityMetric: prompt figures against hand-computed values."""
import numpy as np
import pytest
import torch

from mmseg_medpersam.evaluation import PromptQualityMetric, prompt_figures
from mmseg_medpersam.structures import PromptRecord


def square_gt():
    gt = np.zeros((20, 30), bool)
    gt[5:15, 10:20] = True  # 10x10 square, box [10, 5, 19, 14]
    return gt


def test_point_precisions_and_spread():
    gt = square_gt()
    record = PromptRecord(point_coords=np.array(
        [[[12, 6], [17, 6], [12, 13], [2, 2], [25, 18], [15, 10]]], float),
                          point_labels=np.array([[1, 1, 1, 1, 0, 0]]))
    f = prompt_figures(record, gt)
    assert f['pos_precision'] == pytest.approx(3 / 4)
    assert f['neg_precision'] == pytest.approx(1 / 2)
    # nearest-neighbour distances of the positives: 5, 5, 7, ~10.77 -> mean / sqrt(100)
    nn = [5, 5, 7, np.hypot(10, 4)]
    assert f['pos_spread'] == pytest.approx(np.mean(nn) / 10)


def test_padding_points_are_ignored_and_single_point_has_no_spread():
    f = prompt_figures(PromptRecord(point_coords=np.array([[[12, 6], [0, 0]]], float),
                                    point_labels=np.array([[1, -1]])), square_gt())
    assert f['pos_precision'] == 1.0 and f['neg_precision'] is None and f['pos_spread'] is None


def test_box_iou_and_mask_dice():
    gt = square_gt()
    f = prompt_figures(PromptRecord(boxes=np.array([[10, 5, 19, 14]], float)), gt)
    assert f['box_iou'] == pytest.approx(1.0)
    f = prompt_figures(PromptRecord(boxes=np.array([[15, 5, 24, 14]], float)), gt)
    assert f['box_iou'] == pytest.approx(50 / 150)
    mask = np.zeros_like(gt)
    mask[5:15, 10:15] = True
    f = prompt_figures(PromptRecord(mask=mask), gt)
    assert f['mask_dice'] == pytest.approx(2 * 50 / 150)
    assert f['pos_precision'] is None and f['box_iou'] is None


def test_metric_averages_over_images_and_skips_missing_figures():
    gt = square_gt()
    metric = PromptQualityMetric()
    samples = []
    for points in ([[12, 6], [2, 2]], [[12, 6], [13, 7]]):
        samples.append(dict(
            gt_sem_seg=dict(data=torch.from_numpy(gt.astype(np.int64))[None]),
            prompts={1: PromptRecord(point_coords=np.array([points], float),
                                     point_labels=np.array([[1, 1]]))}))
    metric.process({}, samples)
    out = metric.compute_metrics(metric.results)
    assert out['pos_precision'] == pytest.approx((0.5 + 1.0) / 2)
    assert 'box_iou' not in out and 'mask_dice' not in out
