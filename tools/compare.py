"""Table every method from its config (or an existing metrics JSON): how users compare methods.

    python tools/compare.py configs/persam/persam_sam-tiny_mni152-wm.py \
        configs/medpersam/medpersam_sam-tiny_mni152-wm.py work_dirs/old_run.json

Each config runs through ``tools/test.py`` in its own process (``--out-metrics`` into
``--work-dir``); a ``.json`` argument is read as written by an earlier ``--out-metrics``. One
markdown table follows: method, mDice +- std, mIoU, seconds per image, device.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
from typing import List, Optional

HERE = osp.dirname(osp.abspath(__file__))


def run_config(config: str, work_dir: str, extra: List[str]) -> Optional[str]:
    """Run one config through tools/test.py; the metrics JSON path, or None if it failed."""
    name = osp.splitext(osp.basename(config))[0]
    out = osp.join(work_dir, name, 'metrics.json')
    cmd = [sys.executable, osp.join(HERE, 'test.py'), config, '--work-dir',
           osp.join(work_dir, name), '--out-metrics', out] + extra
    print(f'running {name} ...', file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0 or not osp.isfile(out):
        tail = '\n'.join(proc.stderr.strip().splitlines()[-5:])
        print(f'{name} failed (exit {proc.returncode}):\n{tail}', file=sys.stderr)
        return None
    return out


def table_row(path: str) -> str:
    """One markdown row from a metrics JSON written by tools/test.py --out-metrics."""
    with open(path) as f:
        m = json.load(f)
    run = m.get('run', {})
    n = len(m.get('per_image', [])) or 1
    seconds = run.get('wall_seconds')
    per_img = f'{seconds / n:.2f}' if seconds is not None else '?'
    method = run.get('method', osp.basename(path))
    config = osp.basename(run.get('config', path))

    def fmt(v):
        return '-' if v is None else f'{v:.2f}'

    return (f'| {method} | `{config}` | {fmt(m.get("mDice"))} +- {fmt(m.get("mDice_std"))} | '
            f'{fmt(m.get("mIoU"))} | {per_img} | {run.get("device", "?")} |')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('inputs', nargs='+', help='configs to run, or metrics JSONs to read')
    parser.add_argument('--work-dir', default='work_dirs/compare')
    parser.add_argument('--checkpoint', help='SAM weights passed to every config')
    parser.add_argument('--device', help='device passed to every config')
    parser.add_argument('--out', help='also write the table to this markdown file')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='passed to every config, e.g. test_dataloader.dataset.data_root=D')
    args = parser.parse_args(argv)
    extra = ['--cfg-options'] + args.cfg_options if args.cfg_options else []
    if args.checkpoint:
        extra += ['--checkpoint', args.checkpoint]
    if args.device:
        extra += ['--device', args.device]
    rows, failed = [], 0
    for item in args.inputs:
        path = item if item.endswith('.json') else run_config(item, args.work_dir, extra)
        if path is None:
            failed += 1
            continue
        rows.append(table_row(path))
    header = ('| method | config | mDice +- std | mIoU | s / image (wall, incl. fits) | device |\n'
              '|---|---|---|---|---|---|')
    table = '\n'.join([header] + rows)
    print(table)
    if args.out:
        os.makedirs(osp.dirname(args.out) or '.', exist_ok=True)
        with open(args.out, 'w') as f:
            f.write(table + '\n')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
