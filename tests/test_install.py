"""A non-editable install carries configs/ and tools/ (mmseg_medpersam/.mim), and they run."""
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

from conftest import REPO_ROOT, folder_options, make_folder_task


def test_the_wheel_ships_configs_and_tools_and_its_copy_runs(tmp_path):
    # Built from a copy of the sources: pip builds in the tree, and a build/ left there could
    # carry files the repository no longer has.
    source = tmp_path / 'source'
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        '.git', '.venv', 'data', 'work_dirs', 'build', 'dist', '*.egg-info', '__pycache__'))
    wheels = tmp_path / 'wheels'
    proc = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps',
                           '--no-build-isolation', '-q', '-w', str(wheels), str(source)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel, ) = glob.glob(str(wheels / 'mmseg_medpersam-*.whl'))
    site = tmp_path / 'site'
    proc = subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-deps', '-q',
                           '--target', str(site), wheel], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    mim = site / 'mmseg_medpersam' / '.mim'
    config = mim / 'configs' / 'persam' / 'persam_sam-tiny_mni152-wm.py'
    assert config.is_file() and (mim / 'configs' / '_base_' / 'default_runtime.py').is_file()
    assert (mim / 'tools' / 'test.py').is_file() and (mim / 'tools' / 'infer.py').is_file()
    root = make_folder_task(str(tmp_path / 'task'), stems=('ref', 't1', 't2'))
    out = tmp_path / 'm.json'
    env = dict(os.environ, PYTHONPATH=str(site))  # the installed copy, not the repository's
    proc = subprocess.run([sys.executable, str(mim / 'tools' / 'test.py'), str(config),
                           '--work-dir', str(tmp_path / 'w'), '--out-metrics', str(out),
                           '--cfg-options', *[f'{k}={v}' for k, v in folder_options(root).items()]],
                          capture_output=True, text=True, cwd=str(tmp_path), env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.load(open(out))
    assert report['run']['config'] == str(config) and len(report['per_image']) == 2
    probe = subprocess.run([sys.executable, '-c', 'import mmseg_medpersam; '
                            'print(mmseg_medpersam.__file__)'], capture_output=True, text=True,
                           cwd=str(tmp_path), env=env)
    assert probe.stdout.strip().startswith(str(site)), probe.stdout
    assert osp.isdir(site / 'mmseg_medpersam' / 'methods' / 'medpersam')
