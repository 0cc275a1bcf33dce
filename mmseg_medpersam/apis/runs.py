"""Run configs as ``tools/test.py`` runs them (the benchmark and comparison tools): each in its
own process (timings and memory are each run's own), or one after the other in this process
(imports and loaded weights are paid once: ``tools/compare.py``'s default)."""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import os
import os.path as osp
import subprocess
import sys
from typing import List, Optional, Tuple


def test_script() -> str:
    """``tools/test.py``: the repository's, or the installed package's ``.mim`` copy."""
    package = osp.dirname(osp.dirname(osp.abspath(__file__)))
    for candidate in (osp.join(osp.dirname(package), 'tools', 'test.py'),
                      osp.join(package, '.mim', 'tools', 'test.py')):
        if osp.isfile(candidate):
            return candidate
    raise FileNotFoundError('tools/test.py is neither beside the package nor in its .mim/')


@functools.lru_cache(maxsize=1)
def _test_tool():
    """``tools/test.py`` loaded as a module (its ``main``), for runs in this process."""
    spec = importlib.util.spec_from_file_location('medpersam_test_tool', test_script())
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _in_process(argv: List[str]) -> Tuple[int, str]:
    """``tools/test.py`` ARGV in this process: (exit code, what it printed on stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = _test_tool().main(argv)
        except SystemExit as e:  # argparse
            code = e.code if isinstance(e.code, int) else 1
        except Exception as e:  # what a process would print as its traceback's last line
            print(f'{type(e).__name__}: {e}', file=sys.stderr)
            code = 1
    return code, err.getvalue()


def run_config(config: str, work_dir: str, extra: List[str],
               in_process: bool = False) -> Optional[str]:
    """Run one config through ``tools/test.py`` (``--out-metrics`` and ``--out-masks`` under
    ``work_dir/<config name>/``), in its own process or in this one; the metrics JSON path, or
    None if it failed (its last lines are printed). A report left by an earlier run never
    stands in for this one."""
    name = osp.splitext(osp.basename(config))[0]
    out = osp.join(work_dir, name, 'metrics.json')
    argv = [config, '--work-dir', osp.join(work_dir, name), '--out-metrics', out,
            '--out-masks', osp.join(work_dir, name, 'masks')] + extra
    print(f'running {name} ...', file=sys.stderr, flush=True)
    if osp.isfile(out):
        os.remove(out)
    if in_process:
        returncode, stderr = _in_process(argv)
    else:
        proc = subprocess.run([sys.executable, test_script()] + argv,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        returncode, stderr = proc.returncode, proc.stderr
    tail = '\n'.join(stderr.strip().splitlines()[-5:])
    if not osp.isfile(out):
        print(f'{name} failed (exit {returncode}):\n{tail}', file=sys.stderr)
        return None
    if returncode != 0:  # e.g. exit 3: some targets failed, the others were scored
        print(f'{name}: exit {returncode}, its report covers the targets it could '
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
