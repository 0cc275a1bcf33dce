"""Write an embedded MNI152 task (from nilearn's wheel) as PNG slices and 0/1 masks.

    python tools/prepare_mni152.py [--task wm|ventricles|brain|all] [--out-dir D]
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))



def main(argv=None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # A usage error is a setting that cannot be used: exit 4 (2 means a checkpoint problem).
    parser.error = lambda message: parser.exit(4, f'{parser.format_usage()}error: {message}\n')
    parser.add_argument('--task', default='wm',
                        help='wm, ventricles, brain, or all (default: wm)')
    parser.add_argument('--out-dir', help='default: data/mni152_<task>')
    parser.add_argument('--overwrite', action='store_true',
                        help='write the task again over an earlier copy')
    args = parser.parse_args(argv)
    from mmseg_medpersam.datasets.mni152 import MNI152_TASKS, prepare_mni152, slice_name
    from mmseg_medpersam.structures.errors import OneShotDataError
    if args.task not in list(MNI152_TASKS) + ['all']:
        parser.error(f"--task {args.task}: one of {', '.join(sorted(MNI152_TASKS))}, all")
    tasks = sorted(MNI152_TASKS) if args.task == 'all' else [args.task]
    if args.out_dir and len(tasks) > 1:
        parser.error('--out-dir names one folder: give one --task with it')
    for name in tasks:
        spec = MNI152_TASKS[name]
        out = args.out_dir or f'data/mni152_{name}'
        try:
            prepare_mni152(out, name, overwrite=args.overwrite)
        except OneShotDataError as e:
            print(f'error: {e}', file=sys.stderr)
            return 3
        print(f'{spec.structure}: {len(spec.slices)} axial slices in {out}/images and '
              f'{out}/masks (reference: {slice_name(spec.reference)}; copyright: '
              f'{out}/COPYRIGHT.txt)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
