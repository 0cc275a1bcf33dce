r"""Volume propagation vs independent per-slice segmentation on an embedded MNI152 task.

    python tools/benchmark_propagation.py configs/medpersam/warp-only_mni152-wm.py \
        --task wm [--labelled 90] [--work-dir work_dirs/propagation] \
        [--plot dice_vs_distance.png] [--out table.md] [--reuse]

The task is written as one volume (the template's T1 and the task's label volume, NIfTI,
every axial slice between the task's first and last slice), with one labelled slice
(default: the task's reference). The config's method then runs twice through ``tools/test.py``
on a ``NiftiSliceDataset`` of that volume: every slice segmented from the labelled slice
directly ("independent"), and by propagation (``test_cfg.propagate=True``: each slice from its
neighbour's result). Printed: the mean Dice at distances 2, 10, 20 and 30 slices (both sides
averaged) for both, every stopped chain, and the seconds per slice; ``--plot`` draws Dice per
slice against the signed distance.
"""
import argparse
import json
import os.path as osp
import sys
from typing import Dict, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

DISTANCES = (2, 10, 20, 30)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # A usage error is a setting that cannot be used: exit 4 (2 means a checkpoint problem).
    parser.error = lambda message: parser.exit(4, f'{parser.format_usage()}error: {message}\n')
    parser.add_argument('config', help='the method (its model and pipeline are used)')
    parser.add_argument('--task', default='wm', help="embedded MNI152 task: 'wm', 'brain', ...")
    parser.add_argument('--labelled', type=int, help="the labelled slice (default: the task's "
                        'reference slice)')
    parser.add_argument('--max-area-change', type=float, default=0.5,
                        help="propagation's collapse bound (NiftiSliceDataset's)")
    parser.add_argument('--work-dir', default='work_dirs/propagation',
                        help='volumes, derived configs and reports go here')
    parser.add_argument('--plot', help='draw Dice against the distance to this PNG')
    parser.add_argument('--out', help='also write the markdown table (and a .json) here')
    parser.add_argument('--reuse', action='store_true', help='keep reports already written')
    return parser.parse_args(argv)


if __name__ == '__main__' and {'-h', '--help'} & set(sys.argv[1:]):
    parse_args()  # prints the help and exits before the heavy imports below

import gzip  # noqa: E402

import numpy as np  # noqa: E402

from mmseg_medpersam.apis.runs import run_config  # noqa: E402
from mmseg_medpersam.datasets.mni152 import get_task, load_template, template_path  # noqa: E402
from mmseg_medpersam.utils.atomic import atomic_write_bytes, atomic_write_text  # noqa: E402


def write_task_volume(task: str, out_dir: str) -> Dict[str, str]:
    """The template T1 and the task's label volume as NIfTI (the template's grid), once."""
    import nibabel as nib
    spec = get_task(task)
    paths = dict(img=osp.join(out_dir, 't1.nii.gz'), seg=osp.join(out_dir, f'{task}.nii.gz'))
    if all(osp.isfile(p) for p in paths.values()):
        return paths
    affine = nib.load(template_path('t1')).affine
    volumes = load_template()
    for key, data in (('img', volumes['t1'].astype(np.float32)),
                      ('seg', spec.label(volumes).astype(np.uint8))):
        image = nib.Nifti1Image(data, affine)
        if key == 'seg':
            image.header.set_intent('label')
        atomic_write_bytes(paths[key], gzip.compress(image.to_bytes()))
    return paths


def derived_config(config: str, volume: Dict[str, str], labelled: int, limits, structure: str,
                   propagate: bool, max_area_change: float, path: str) -> str:
    """A config inheriting ``config`` whose test set is the task volume's slices."""
    dataset = dict(_delete_=True, type='NiftiSliceDataset',
                   volumes=[dict(img=volume['img'], seg=volume['seg'])],
                   reference=dict(volume=0, slice=labelled),
                   slices=(limits[0], limits[1] + 1, 1),
                   metainfo=dict(classes=('background', structure)),
                   pipeline=[dict(type='LoadOneShotImage'), dict(type='LoadOneShotAnnotations'),
                             dict(type='PackOneShotInputs')])
    text = (f'_base_ = [{osp.abspath(config)!r}]\n'
            f'test_dataloader = dict(dataset={dataset!r})\n'
            f'test_cfg = dict(propagate={propagate!r}, max_area_change={max_area_change!r})\n')
    atomic_write_text(path, text)
    return path


def per_slice(report: dict) -> Dict[int, float]:
    """Dice by slice index from a report's per-image entries (``t1.nii.gz#60``)."""
    return {int(e['img'].rpartition('#')[2]): e['dice'] for e in report.get('per_image', [])
            if e.get('dice') is not None}


def at_distance(dice: Dict[int, float], labelled: int, d: int) -> Optional[float]:
    values = [dice[z] for z in (labelled - d, labelled + d) if z in dice]
    return float(np.mean(values)) if values else None


def main(argv=None) -> int:
    args = parse_args(argv)
    spec = get_task(args.task)
    labelled = spec.reference if args.labelled is None else args.labelled
    limits = (min(spec.slices), max(spec.slices))
    task_dir = osp.join(args.work_dir, args.task)
    volume = write_task_volume(args.task, task_dir)
    name = osp.splitext(osp.basename(args.config))[0]
    runs, reports = {'independent': False, 'propagation': True}, {}
    for setting, propagate in runs.items():
        cfg = derived_config(args.config, volume, labelled, limits, spec.structure, propagate,
                             args.max_area_change,
                             osp.join(task_dir, f'{name}_{setting}.py'))
        out = osp.join(task_dir, f'{name}_{setting}', 'metrics.json')
        if not (args.reuse and osp.isfile(out)):
            out = run_config(cfg, task_dir, [])
            if out is None:
                return 1
        with open(out) as f:
            reports[setting] = json.load(f)
    dice = {s: per_slice(r) for s, r in reports.items()}
    lines = ['| setting | ' + ' | '.join(f'd={d}' for d in DISTANCES)
             + ' | all slices | s/slice |', '|' + '---|' * (len(DISTANCES) + 3)]
    result = dict(config=args.config, task=args.task, labelled=labelled, limits=limits,
                  settings={})
    for setting, report in reports.items():
        values = [at_distance(dice[setting], labelled, d) for d in DISTANCES]
        n = len(report.get('per_image', [])) or 1
        per = (report.get('run', {}).get('wall_seconds') or float('nan')) / n
        lines.append(f'| {setting} | ' + ' | '.join('-' if v is None else f'{100 * v:.2f}'
                                                    for v in values)
                     + f' | {report.get("mDice")} | {per:.1f} |')
        result['settings'][setting] = dict(
            at_distance={d: v for d, v in zip(DISTANCES, values)}, mdice=report.get('mDice'),
            seconds_per_slice=per, per_slice=dice[setting],
            propagation=report.get('propagation'), device=report.get('run', {}).get('device'))
    table = '\n'.join(lines)
    print(f'{reports["independent"].get("run", {}).get("method")} on MNI152 {spec.structure}, '
          f'slices {limits[0]}..{limits[1]}, labelled slice {labelled}:')
    print(table)
    for vol, entry in ((reports['propagation'].get('propagation') or {}).get('volumes')
                       or {}).items():
        for line in entry.get('stopped') or ['no chain stopped']:
            print(f'  {line}')
    if args.out:
        atomic_write_text(args.out, table + '\n')
        atomic_write_text(osp.splitext(args.out)[0] + '.json', json.dumps(result, indent=2))
    if args.plot:
        from mmseg_medpersam.visualization import distance_plot
        curves = {s: {z - labelled: v for z, v in d.items()} for s, d in dice.items()}
        distance_plot(args.plot, curves, marks=DISTANCES, title=(
            f'{reports["independent"].get("run", {}).get("method")}: MNI152 {spec.structure}, '
            f'labelled slice {labelled}'))
        print(f'plot written to {args.plot}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
