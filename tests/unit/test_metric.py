"""``PerImageDiceMetric``: per-image foreground Dice/IoU against hand-computed values."""
import json
import math

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from mmseg_medpersam.evaluation import PerImageDiceMetric
from mmseg_medpersam.evaluation.report import write_report
from mmseg_medpersam.utils.masks import dice_iou


def _sample(pred, gt, img_path, slice_index=None, seconds=None):
    meta = dict(img_path=img_path)
    if slice_index is not None:
        meta['slice_index'] = slice_index
    if seconds is not None:
        meta['predict_seconds'] = seconds
    s = SegDataSample(metainfo=meta)
    s.pred_sem_seg = PixelData(data=torch.as_tensor(np.asarray(pred))[None].long())
    s.gt_sem_seg = PixelData(data=torch.as_tensor(np.asarray(gt, dtype=np.uint8))[None])
    return s


def _evaluate(samples, classes=('background', 'foreground'), out_file=None):
    """Evaluate; with ``out_file`` also write the report as the test loop does."""
    evaluator = Evaluator(PerImageDiceMetric())
    evaluator.dataset_meta = dict(classes=classes)
    evaluator.process(data_samples=samples, data_batch=dict())
    prefixed = evaluator.evaluate(len(samples))
    assert all(k.startswith('oneshot/') for k in prefixed)  # beside mmseg's IoUMetric
    if out_file:
        details = {k: prefixed.pop('oneshot/' + k) for k in ('per_image', 'per_class')}
        write_report(out_file, prefixed, details, skipped=[], transductive=None, run={})
        prefixed.update({'oneshot/' + k: v for k, v in details.items()})
    return {k.split('/', 1)[1]: v for k, v in prefixed.items()}


def _binary_cases():
    z = np.zeros((4, 4), int)
    # A: gt 4 px, pred 6 px, 3 shared -> Dice 6/10, IoU 3/7
    gt_a, pred_a = z.copy(), z.copy()
    gt_a[0, :4] = 1
    pred_a[0, 1:4] = 1
    pred_a[1, :3] = 1
    # B: exact on the valid pixels; predictions on ignored (255) pixels do not count
    gt_b, pred_b = z.copy(), z.copy()
    gt_b[2, :2] = 1
    gt_b[3, :] = 255
    pred_b[2, :2] = 1
    pred_b[3, :3] = 1
    # C: nothing to find, nothing found -> not scored
    # D: missed everything -> 0
    gt_d = z.copy()
    gt_d[1:3, 1] = 1
    return [
        _sample(pred_a, gt_a, '/data/images/a.png', seconds=0.5),
        _sample(pred_b, gt_b, '/data/images/b.png', seconds=1.5),
        _sample(z, z, '/data/images/c.png'),
        _sample(z, gt_d, '/data/vol.nii.gz', slice_index=7),
    ]


def test_dice_iou_function():
    a = np.array([1, 1, 1, 0, 0], bool)
    b = np.array([0, 1, 1, 1, 0], bool)
    assert dice_iou(a, b) == pytest.approx((4 / 6, 2 / 4))
    assert dice_iou(a, a) == (1.0, 1.0)
    assert dice_iou(a, ~a) == (0.0, 0.0)
    assert all(math.isnan(v) for v in dice_iou(a & False, a & False))


def test_binary_scores_and_json(tmp_path):
    out = tmp_path / 'sub' / 'metrics.json'
    metrics = _evaluate(_binary_cases(), out_file=str(out))
    dices, ious = [0.6, 1.0, 0.0], [3 / 7, 1.0, 0.0]
    assert metrics['mDice'] == round(100 * np.mean(dices), 2) == 53.33
    assert metrics['mIoU'] == round(100 * np.mean(ious), 2) == 47.62
    assert metrics['mDice_std'] == round(100 * np.std(dices), 2)
    assert 'sec_per_img' not in metrics  # per image only: encode + method, every method
    data = json.loads(out.read_text())
    assert data['mDice'] == pytest.approx(100 * np.mean(dices), abs=0.005)  # 0.01 % steps
    assert data['mIoU'] == pytest.approx(100 * np.mean(ious), abs=0.005)
    per_image = data['per_image']
    assert [e['img'] for e in per_image] == ['a.png', 'b.png', 'c.png', 'vol.nii.gz#7']
    assert [set(e) >= {'img', 'dice', 'iou'} for e in per_image] == [True] * 4
    assert per_image[0]['dice'] == pytest.approx(0.6)
    assert per_image[0]['iou'] == pytest.approx(3 / 7)
    assert per_image[0]['seconds'] == 0.5
    assert per_image[1]['dice'] == 1.0 and per_image[1]['iou'] == 1.0
    assert per_image[2]['dice'] is None and per_image[2]['iou'] is None  # both empty
    assert per_image[3]['dice'] == 0.0
    fg = data['per_class']['foreground']
    assert fg['num_images'] == 3
    assert fg['dice'] == pytest.approx(100 * np.mean(dices))


def test_multiclass_scores(tmp_path):
    gt = np.zeros((4, 6), int)
    gt[:, :2] = 1
    gt[:, 3:5] = 2
    pred = gt.copy()
    pred[:, 3] = 0  # class 2: 4 of 8 found -> Dice 8/12, IoU 4/8
    out = tmp_path / 'm.json'
    metrics = _evaluate([_sample(pred, gt, 'x.png')], classes=('bg', 'a', 'b'),
                        out_file=str(out))
    assert metrics['mDice'] == round(100 * (1 + 8 / 12) / 2, 2)
    assert metrics['mIoU'] == round(100 * (1 + 0.5) / 2, 2)
    data = json.loads(out.read_text())
    entry = data['per_image'][0]
    assert entry['dice'] == pytest.approx((1 + 8 / 12) / 2)
    assert entry['per_class']['1']['dice'] == 1.0
    assert entry['per_class']['2']['iou'] == pytest.approx(0.5)
    assert set(data['per_class']) == {'a', 'b'}


def test_nothing_scorable_gives_no_mdice_and_null_json(tmp_path):
    z = np.zeros((3, 3), int)
    out = tmp_path / 'm.json'
    metrics = _evaluate([_sample(z, z, 'e.png')], out_file=str(out))
    assert 'mDice' not in metrics or math.isnan(metrics['mDice'])
    data = json.loads(out.read_text())  # valid JSON: no NaN literals
    assert data['per_image'] == [{'img': 'e.png', 'name': 'e', 'dice': None, 'iou': None}]


def test_results_of_several_processes_come_back_in_dataset_order_once():
    """Samplers pad shards with repeats and interleave them; the report lists each image once."""
    z = np.zeros((4, 4), int)
    g = z.copy()
    g[0, 0] = 1
    samples = []
    for order in (2, 0, 3, 1, 0):  # two shards, interleaved, index 0 repeated as padding
        s = _sample(g, g, f'/d/{order}.png')
        s.set_metainfo(dict(sample_idx=order))
        samples.append(s)
    metrics = _evaluate(samples)
    assert [e['img'] for e in metrics['per_image']] == ['0.png', '1.png', '2.png', '3.png']


def test_sits_beside_mmseg_iou_metric():
    """The plugin's names carry a prefix, so mmseg's IoUMetric (also an mIoU) can run beside it."""
    from mmseg.evaluation import IoUMetric
    evaluator = Evaluator([PerImageDiceMetric(), IoUMetric(iou_metrics=['mIoU'])])
    evaluator.dataset_meta = dict(classes=('background', 'foreground'))
    samples = _binary_cases()
    evaluator.process(data_samples=samples, data_batch=dict())
    metrics = evaluator.evaluate(len(samples))
    assert metrics['oneshot/mIoU'] == 47.62 and 'mIoU' in metrics
