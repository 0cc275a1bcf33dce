"""Benchmark the warping model against the unwarped mask and TV-L1 optical flow.

On an embedded MNI152 task (``--task``; default white matter: reference z090, 30 targets) it
prints, per target, the foreground Dice of (a) the unwarped reference mask, (b) the reference
mask warped by scikit-image's TV-L1 optical flow, (c) the reference mask warped by the learned
:class:`WarpingModel` (fitted transductively on the unlabeled targets; the target masks are
only used for scoring), then the means, the fit time and the device.

Example::

    python tools/benchmark_warping.py --iters 600 --device cpu --json work_dirs/warping.json
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys
import time
from typing import Dict, List


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split('\n')[0])
    # A usage error is a setting that cannot be used: exit 4 (2 means a checkpoint problem).
    p.error = lambda message: p.exit(4, f'{p.format_usage()}error: {message}\n')
    p.add_argument('--task', default='wm', help='embedded MNI152 task: wm, ventricles, brain')
    p.add_argument('--data-root', default=None,
                   help='task folder (images/, masks/), default data/mni152_<task>; generated '
                   'from nilearn if missing')
    p.add_argument('--iters', type=int, default=None, help='fit iterations (model default)')
    p.add_argument('--device', default='cpu', help="'cpu', 'cuda', 'cuda:1', ...")
    p.add_argument('--json', default=None, help='also write the results to this file')
    p.add_argument('--cfg', default='{}',
                   help='JSON dict of WarpingModel settings overriding the defaults, e.g. '
                   '\'{"schedule": {"convergence": {}}, "network": {"work_long_side": 256}}\'')
    p.add_argument('--seed', type=int, default=0, help='seed of the fit')
    p.add_argument('--threads', type=int, default=None,
                   help='torch CPU threads (default: torch default)')
    p.add_argument('--no-tvl1', action='store_true', help='skip the TV-L1 baseline')
    return p.parse_args()


if __name__ == '__main__' and {'-h', '--help'} & set(sys.argv[1:]):
    parse_args()  # prints the help and exits before the heavy imports below

import numpy as np
import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmseg_medpersam  # noqa: E402, F401  (registers modules; mmcv-lite compat first)
from mmseg_medpersam.datasets.images import read_image_file  # noqa: E402
from mmseg_medpersam.datasets.mni152 import MNI152_TASKS, is_prepared, prepare_mni152, slice_name  # noqa: E402
from mmseg_medpersam.methods.medpersam.warping import WarpingModel  # noqa: E402
from mmseg_medpersam.utils.masks import dice  # noqa: E402


def load_task(root: str, task: str) -> Dict[int, tuple]:
    if not is_prepared(root, task):
        print(f'{root}: generating the MNI152 {task} task from nilearn')
        prepare_mni152(root, task)
    data = {}
    for z in MNI152_TASKS[task].slices:
        img = read_image_file(osp.join(root, 'images', slice_name(z) + '.png'))
        mask = read_image_file(osp.join(root, 'masks', slice_name(z) + '.png'))
        data[z] = (img, mask > 0)
    return data


def tvl1_warp(ref_img: np.ndarray, ref_mask: np.ndarray, tgt_img: np.ndarray) -> np.ndarray:
    """Reference mask warped onto the target by TV-L1 optical flow (scikit-image defaults)."""
    from skimage.registration import optical_flow_tvl1
    from skimage.transform import warp
    ref = ref_img.astype(np.float32) / 255
    tgt = tgt_img.astype(np.float32) / 255
    if tgt.shape != ref.shape:
        raise ValueError('TV-L1 baseline needs reference and target of the same size')
    v, u = optical_flow_tvl1(tgt, ref)
    rows, cols = np.meshgrid(np.arange(tgt.shape[0]), np.arange(tgt.shape[1]), indexing='ij')
    warped = warp(ref_mask.astype(np.float32), np.array([rows + v, cols + u]),
                  mode='edge', order=1)
    return warped > 0.5


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = MNI152_TASKS[args.task]
    data = load_task(args.data_root or f'data/mni152_{args.task}', args.task)
    ref_img, ref_mask = data[spec.reference]
    zs = [z for z in spec.slices if z != spec.reference]
    targets = [data[z][0] for z in zs]
    device = torch.device(args.device)

    rows: List[dict] = [{'target': slice_name(z)} for z in zs]
    for row, z in zip(rows, zs):
        row['unwarped'] = dice(ref_mask, data[z][1])

    tvl1_seconds = None
    if not args.no_tvl1:
        t0 = time.perf_counter()
        for row, z in zip(rows, zs):
            row['tvl1'] = dice(tvl1_warp(ref_img, ref_mask, data[z][0]), data[z][1])
        tvl1_seconds = time.perf_counter() - t0

    cfg = json.loads(args.cfg)
    cfg['schedule'] = dict(dict(seed=args.seed), **cfg.get('schedule', {}))
    model = WarpingModel(**cfg).to(device)
    info = model.fit(ref_img, ref_mask, targets, iters=args.iters)
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    warped = model.warp_masks(ref_img, ref_mask, targets)
    predict_seconds = time.perf_counter() - t0
    for row, z, w in zip(rows, zs, warped):
        row['learned'] = dice(w.cpu().numpy() > 0.5, data[z][1])

    methods = [m for m in ('unwarped', 'tvl1', 'learned') if m in rows[0]]
    print(f"{'target':<8}" + ''.join(f'{m:>10}' for m in methods))
    for row in rows:
        print(f"{row['target']:<8}" + ''.join(f'{row[m]:>10.4f}' for m in methods))
    means = {m: float(np.mean([r[m] for r in rows])) for m in methods}
    print(f"{'mean':<8}" + ''.join(f'{means[m]:>10.4f}' for m in methods))
    dev_name = (torch.cuda.get_device_name(device) if device.type == 'cuda'
                else f'cpu ({torch.get_num_threads()} threads)')
    print(f"device: {dev_name}; fit: {info['seconds']:.1f} s for {info['iters']} iterations; "
          f'predict: {predict_seconds:.2f} s for {len(zs)} targets' +
          (f'; TV-L1: {tvl1_seconds:.1f} s' if tvl1_seconds is not None else ''))
    print('final losses: ' + ', '.join(
        f'{k}={v:.4f}' for k, v in info.items() if k.startswith('loss_')))

    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        from mmseg_medpersam.utils.atomic import atomic_write_text
        atomic_write_text(args.json, json.dumps(dict(
            per_target=rows, mean=means, fit=info, device=dev_name,
            predict_seconds=predict_seconds, tvl1_seconds=tvl1_seconds, config=cfg), indent=2))


if __name__ == '__main__':
    main()
