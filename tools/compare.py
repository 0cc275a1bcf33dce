r"""Compare methods: one table, and optionally a method-by-target grid and a Dice plot.

    python tools/compare.py configs/persam/persam_sam-tiny_mni152-wm.py \
        configs/medpersam/warp-only_mni152-wm.py work_dirs/old_run.json \
        [--figure grid.png [--targets worst|best|z060,z100] [--num-targets 4]] \
        [--plot dice.png] [--out table.md]

Each config runs through ``tools/test.py`` (``--out-metrics`` and ``--out-masks`` into
``--work-dir``), one after the other in this process (``--isolate``: each in its own); a
``.json`` argument is read as written by an earlier
``--out-metrics`` (its masks are drawn if that run saved them). The table: method, config,
mDice +- std, mIoU, seconds per image, device. ``--figure`` draws the same targets (the worst
or best by mean Dice over the methods, or named ones) across every method, each cell with its
Dice; ``--plot`` draws every method's per-image Dice. Warp-only and oracle rows are references,
not methods, and are marked so.

The runs share the disk embedding cache (``MEDPERSAM_CACHE_DIR``, see
``mmseg_medpersam/sam/embedding_store.py``): configs with the same SAM on the same task encode
each image once, in the first run; the others read it back, bit for bit. ``--no-cache`` is
passed on to every run (each then encodes every image itself).
"""
import argparse
import os.path as osp
import sys
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

def is_reference(report: dict) -> bool:
    """Whether the run is a reference for the methods (warp only, the oracle), as the model
    said in its report."""
    return bool(report.get('run', {}).get('reference_row'))


def table_row(report: dict, path: str) -> str:
    """One markdown row from a metrics report written by tools/test.py --out-metrics."""
    run = report.get('run', {})
    n = len(report.get('per_image', [])) or 1
    seconds = run.get('wall_seconds')
    per_img = f'{seconds / n:.2f}' if seconds is not None else '?'
    method = run.get('method', osp.basename(path))
    config = osp.basename(run.get('config') or path)

    def fmt(v):
        return '-' if v is None else f'{v:.2f}'

    return (f'| {method} | `{config}` | {fmt(report.get("mDice"))} +- '
            f'{fmt(report.get("mDice_std"))} | {fmt(report.get("mIoU"))} | {per_img} | '
            f'{run.get("device", "?")} |')


def method_label(report: dict, path: str, seen: Dict[str, int]) -> str:
    """The method's name; a second run of the same method gets its config's name too."""
    method = report.get('run', {}).get('method', osp.basename(path))
    seen[method] = seen.get(method, 0) + 1
    if seen[method] > 1:
        config = osp.splitext(osp.basename(report.get('run', {}).get('config') or path))[0]
        return f'{method} ({config})'
    return method


def choose_targets(reports: List[dict], how: str, count: int) -> List[str]:
    """Target names: the worst or best by mean Dice over the methods, or the named ones."""
    names = [e['name'] for e in reports[0]['per_image']]
    if how not in ('worst', 'best'):
        wanted = [t.strip() for t in how.split(',') if t.strip()]
        missing = [t for t in wanted if t not in names]
        if missing:
            raise SystemExit(f'--targets: {", ".join(missing)} not among the targets '
                             f'({", ".join(names[:8])}{" ..." if len(names) > 8 else ""})')
        return wanted
    methods = [r for r in reports if not is_reference(r)] or reports
    scores = {}
    for name in names:
        values = [e['dice'] for r in methods for e in r['per_image']
                  if e['name'] == name and e['dice'] is not None]
        scores[name] = sum(values) / len(values) if values else float('nan')
    ranked = sorted((s, n) for n, s in scores.items() if s == s)
    ranked = ranked if how == 'worst' else ranked[::-1]
    return [n for _, n in ranked[:count]]


def load_targets(config: str, names: List[str], options: dict) -> Tuple[dict, dict]:
    """Images and ground-truth label maps of the named targets, from the config's dataset."""
    import mmseg_medpersam  # noqa: F401  (registers the datasets)
    from mmseg_medpersam.apis import build_dataset, load_config
    from mmseg_medpersam.utils.naming import prediction_name
    dataset = build_dataset(load_config(config, options))
    images, gts = {}, {}
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        name = prediction_name(info)
        if name in names:
            sample = dict(info)
            for transform in dataset.pipeline.transforms:  # load, not pack
                if type(transform).__name__.startswith('Pack'):
                    break
                sample = transform(sample)
            images[name] = sample['img']
            if 'gt_seg_map' in sample:
                gts[name] = sample['gt_seg_map']
    return images, gts


def draw_grid(path: str, reports: List[dict], labels: List[str], how: str, count: int,
              config: Optional[str], options: dict) -> None:
    import cv2

    from mmseg_medpersam.visualization import method_grid
    if not config:
        raise SystemExit('--figure needs the task: give at least one config, or a metrics '
                         'JSON that names its config')
    targets = choose_targets(reports, how, count)
    images, gts = load_targets(config, targets, options)
    if not images:
        raise SystemExit(f'--figure: the targets {targets} are not in the dataset of {config}')
    preds, dice = {}, {}
    for report, label in zip(reports, labels):
        masks_dir = report.get('run', {}).get('masks_dir')
        by_name = {e['name']: e['dice'] for e in report['per_image']}
        for t in targets:
            dice[(t, label)] = by_name.get(t)
            mask_path = osp.join(masks_dir, t + '.png') if masks_dir else None
            if mask_path and osp.isfile(mask_path):
                preds[(t, label)] = cv2.imread(mask_path, cv2.IMREAD_UNCHANGED)
    method_grid(path, targets, labels, images, preds, dice, gts)
    print(f'grid of {len(targets)} targets x {len(labels)} methods written to {path}',
          file=sys.stderr)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # A usage error is a setting that cannot be used: exit 4 (2 means a checkpoint problem).
    parser.error = lambda message: parser.exit(4, f'{parser.format_usage()}error: {message}\n')
    parser.add_argument('inputs', nargs='+', help='configs to run, or metrics JSONs to read')
    parser.add_argument('--work-dir', default='work_dirs/compare')
    parser.add_argument('--checkpoint', help='SAM weights passed to every config')
    parser.add_argument('--device', help='device passed to every config')
    parser.add_argument('--isolate', action='store_true',
                        help='run each config in its own process (default: one after the '
                        'other in this one, imports and weights loaded once)')
    parser.add_argument('--no-cache', action='store_true',
                        help='runs neither read nor write the disk embedding cache')
    parser.add_argument('--out', help='also write the table to this markdown file')
    parser.add_argument('--figure', help='draw a method-by-target grid to this PNG')
    parser.add_argument('--targets', default='worst',
                        help="the grid's targets: 'worst', 'best', or names (z060,z100)")
    parser.add_argument('--num-targets', type=int, default=4)
    parser.add_argument('--plot', help="draw every method's per-image Dice to this PNG")
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='passed to every config, e.g. test_dataloader.dataset.data_root=D')
    args = parser.parse_args(argv)
    from mmseg_medpersam.apis import run_tool
    return run_tool(lambda: compare(args))


def compare(args: argparse.Namespace) -> int:
    from mmseg_medpersam.apis.runs import read_report, run_config
    extra = ['--cfg-options'] + args.cfg_options if args.cfg_options else []
    if args.checkpoint:
        extra += ['--checkpoint', args.checkpoint]
    if args.device:
        extra += ['--device', args.device]
    if args.no_cache:
        extra.append('--no-cache')
    rows, reports, labels, seen, failed = [], [], [], {}, 0
    task_config = None
    for item in args.inputs:
        path = item if item.endswith('.json') else run_config(
            item, args.work_dir, extra, in_process=not args.isolate)
        if path is None:
            failed += 1
            continue
        report = read_report(path)
        rows.append(table_row(report, path))
        reports.append(report)
        labels.append(method_label(report, path, seen))
        task_config = task_config or (item if not item.endswith('.json')
                                      else report.get('run', {}).get('config'))
    header = ('| method | config | mDice +- std | mIoU | s / image (wall, incl. fits) | device |\n'
              '|---|---|---|---|---|---|')
    table = '\n'.join([header] + rows)
    print(table)
    if args.out:
        from mmseg_medpersam.utils.atomic import atomic_write_text
        atomic_write_text(args.out, table + '\n')
    if reports and args.figure:
        draw_grid(args.figure, reports, labels, args.targets, args.num_targets, task_config,
                  args.cfg_options)
    if reports and args.plot:
        from mmseg_medpersam.visualization import dice_plot
        per_image = {lab: [e['dice'] for e in r['per_image']] for r, lab in zip(reports, labels)}
        dice_plot(args.plot, labels, per_image,
                  references=[lab for r, lab in zip(reports, labels) if is_reference(r)])
        print(f'per-image Dice plot written to {args.plot}', file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
