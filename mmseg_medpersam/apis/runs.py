"""Run configs as ``tools/test.py`` runs them, each in its own process (the benchmark and
comparison tools): one fresh process per config, so timings and memory are each run's own."""
from __future__ import annotations

import os
import os.path as osp
import subprocess
import sys
from typing import List, Optional


def test_script() -> str:
    """``tools/test.py``: the repository's, or the installed package's ``.mim`` copy."""
    package = osp.dirname(osp.dirname(osp.abspath(__file__)))
    for candidate in (osp.join(osp.dirname(package), 'tools', 'test.py'),
                      osp.join(package, '.mim', 'tools', 'test.py')):
        if osp.isfile(candidate):
            return candidate
    raise FileNotFoundError('tools/test.py is neither beside the package nor in its .mim/')


def run_config(config: str, work_dir: str, extra: List[str]) -> Optional[str]:
    """Run one config through ``tools/test.py`` (``--out-metrics`` and ``--out-masks`` under
    ``work_dir/<config name>/``); the metrics JSON path, or None if it failed (its last lines
    are printed). A report left by an earlier run never stands in for this one."""
    name = osp.splitext(osp.basename(config))[0]
    out = osp.join(work_dir, name, 'metrics.json')
    cmd = [sys.executable, test_script(), config, '--work-dir', osp.join(work_dir, name),
           '--out-metrics', out, '--out-masks', osp.join(work_dir, name, 'masks')] + extra
    print(f'running {name} ...', file=sys.stderr, flush=True)
    if osp.isfile(out):
        os.remove(out)
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    tail = '\n'.join(proc.stderr.strip().splitlines()[-5:])
    if not osp.isfile(out):
        print(f'{name} failed (exit {proc.returncode}):\n{tail}', file=sys.stderr)
        return None
    if proc.returncode != 0:  # e.g. exit 3: some targets failed, the others were scored
        print(f'{name}: exit {proc.returncode}, its report covers the targets it could '
              f'segment:\n{tail}', file=sys.stderr)
    return out


def read_report(path: str) -> dict:
    """A report written by ``tools/test.py --out-metrics``; a damaged file or a JSON that is no
    such report is a ``OneShotDataError`` naming it."""
    import json

    from ..structures.errors import OneShotDataError
    try:
        with open(path) as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        raise OneShotDataError(f'{path}: not a readable report ({type(e).__name__}: {e}).'
                               ) from e
    if not isinstance(report, dict) or 'per_image' not in report or 'mDice' not in report:
        raise OneShotDataError(f'{path}: not a report of tools/test.py --out-metrics (it has '
                               'no mDice and per_image).')
    return report


__all__ = ['read_report', 'run_config', 'test_script']
