r"""mDice against the number of labelled references k, on targets shared by every setting.

    python tools/benchmark_references.py configs/medpersam/warp-only_mni152-wm.py \
        configs/persam/persam_litemedsam_mni152-wm.py \
        --references z090 --references z080,z100 --references z070,z090,z110 \
        [--work-dir work_dirs/references] [--out table.md] [--reuse]

Each config runs once per reference set through ``tools/test.py`` (its own process; the set
goes in as ``test_dataloader.dataset.reference``). A slice that is a reference in any setting
is left out of every score, so each row compares k = 1, 2, 3 on the same targets: the mean
(+- std) of the per-image Dice over those shared targets, and the run's wall seconds per
target (encoding, fit and prediction together). ``--reuse`` keeps reports already in
``--work-dir`` (an interrupted sweep resumes).
"""
import argparse
import json
import os.path as osp
import sys
from typing import Dict, List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # A usage error is a setting that cannot be used: exit 4 (2 means a checkpoint problem).
    parser.error = lambda message: parser.exit(4, f'{parser.format_usage()}error: {message}\n')
    parser.add_argument('configs', nargs='+', help='configs of configs/ to run')
    parser.add_argument('--references', action='append', required=True, metavar='STEM[,STEM]',
                        help='one reference set (comma-separated stems); repeat per setting')
    parser.add_argument('--work-dir', default='work_dirs/references',
                        help='reports go to WORK_DIR/k<k>_<stems>/<config>/')
    parser.add_argument('--out', help='also write the markdown table here')
    parser.add_argument('--reuse', action='store_true',
                        help='keep a report already written for a (config, set)')
    return parser.parse_args(argv)


if __name__ == '__main__' and {'-h', '--help'} & set(sys.argv[1:]):
    parse_args()  # prints the help and exits before the heavy imports below

import numpy as np  # noqa: E402

from mmseg_medpersam.apis.runs import run_config  # noqa: E402
from mmseg_medpersam.utils.atomic import atomic_write_text  # noqa: E402


def set_name(stems: List[str]) -> str:
    return f'k{len(stems)}_' + '+'.join(stems)


def run_setting(config: str, stems: List[str], work_dir: str, reuse: bool) -> Optional[dict]:
    """The report of ``config`` with the reference set ``stems`` (None if it failed)."""
    out_dir = osp.join(work_dir, set_name(stems))
    name = osp.splitext(osp.basename(config))[0]
    report = osp.join(out_dir, name, 'metrics.json')
    if not (reuse and osp.isfile(report)):
        option = 'test_dataloader.dataset.reference=[' + ','.join(
            repr(s) for s in stems) + ']'
        report = run_config(config, out_dir, ['--cfg-options', option])
        if report is None:
            return None
    with open(report) as f:
        return json.load(f)


def shared_scores(report: dict, excluded: set) -> Dict[str, float]:
    """Per-image Dice of the report's targets that are no reference in any setting."""
    return {e['name']: e['dice'] for e in report.get('per_image', [])
            if e['name'] not in excluded and e.get('dice') is not None}


def main(argv=None) -> int:
    args = parse_args(argv)
    settings = [[s.strip() for s in text.split(',') if s.strip()] for text in args.references]
    excluded = {s for stems in settings for s in stems}
    rows, results = [], []
    for config in args.configs:
        reports = [run_setting(config, stems, args.work_dir, args.reuse) for stems in settings]
        scores = [shared_scores(r, excluded) if r else {} for r in reports]
        common = set.intersection(*[set(s) for s in scores]) if all(scores) else set()
        method = next((r for r in reports if r), {}).get('run', {}).get('method', '?')
        label = f'{method} (`{osp.splitext(osp.basename(config))[0]}`)'
        cells, entry = [], dict(config=config, method=label, settings=[])
        for stems, report, score in zip(settings, reports, scores):
            if not report or not common:
                cells.append('failed' if not report else 'no shared target')
                entry['settings'].append(dict(references=stems, failed=True))
                continue
            dice = np.array([score[n] for n in sorted(common)]) * 100
            n = len(report.get('per_image', [])) or 1
            wall = report.get('run', {}).get('wall_seconds')
            per_img = wall / n if wall else float('nan')
            cells.append(f'{dice.mean():.2f} +- {dice.std():.2f} ({per_img:.1f} s)')
            entry['settings'].append(dict(references=stems, mdice=round(float(dice.mean()), 2),
                                          std=round(float(dice.std()), 2),
                                          seconds_per_image=round(per_img, 2),
                                          targets=len(common),
                                          device=report.get('run', {}).get('device')))
        entry['shared_targets'] = sorted(common)
        results.append(entry)
        rows.append(f'| {label} | ' + ' | '.join(cells) + f' | {len(common)} |')
    header = ('| method | ' + ' | '.join(f'k={len(s)}: {"+".join(s)}' for s in settings)
              + ' | shared targets |')
    table = '\n'.join([header, '|' + '---|' * (len(settings) + 2)] + rows)
    print(table)
    if args.out:
        atomic_write_text(args.out, table + '\n')
        atomic_write_text(osp.splitext(args.out)[0] + '.json', json.dumps(results, indent=2))
    return 0 if all(r['settings'] and not any(s.get('failed') for s in r['settings'])
                    for r in results) else 1


if __name__ == '__main__':
    sys.exit(main())
