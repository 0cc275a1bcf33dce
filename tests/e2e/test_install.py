"""A non-editable install carries configs/, tools/ and model-index.yml (mmseg_medpersam/.mim),
and they run, also through openmim (``mim search``, ``mim test``)."""
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO_ROOT, folder_options, make_folder_task

METHOD_FOLDERS = ('medpersam', 'persam', 'persam-f', 'matcher', 'oracle')


def _mim() -> str:
    """openmim's command (the tests extra and requirements.txt install it)."""
    path = osp.join(osp.dirname(sys.executable), 'mim')
    if not osp.isfile(path):
        if os.environ.get('CI'):
            pytest.fail('openmim is not installed (requirements.txt / the tests extra)')
        pytest.skip('openmim is not installed (pip install openmim==0.3.8)')
    return path


@pytest.fixture(scope='module')
def installed(tmp_path_factory) -> str:
    """The package built as a wheel and installed into a folder of its own (its site)."""
    tmp_path = tmp_path_factory.mktemp('install')
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
    return str(site)


def test_the_wheel_ships_configs_and_tools_and_its_copy_runs(installed, tmp_path):
    site = Path(installed)
    mim = site / 'mmseg_medpersam' / '.mim'
    config = mim / 'configs' / 'persam' / 'persam_sam-tiny_mni152-wm.py'
    assert config.is_file() and (mim / 'configs' / '_base_' / 'default_runtime.py').is_file()
    assert (mim / 'tools' / 'test.py').is_file() and (mim / 'tools' / 'infer.py').is_file()
    assert (mim / 'model-index.yml').is_file()
    assert (mim / 'configs' / 'persam' / 'metafile.yml').is_file()
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


# --------------------------------------------------------------------------- mim
def _metafile_models():
    models = {}
    for folder in METHOD_FOLDERS:
        doc = yaml.safe_load(open(osp.join(REPO_ROOT, 'configs', folder, 'metafile.yml')))
        collections = {c['Name'] for c in doc['Collections']}
        for model in doc['Models']:
            assert model['In Collection'] in collections, model['Name']
            assert model['Name'] not in models, model['Name']
            models[model['Name']] = model
    return models


def test_model_index_lists_every_config_once():
    index = yaml.safe_load(open(osp.join(REPO_ROOT, 'model-index.yml')))
    assert index['Import'] == [f'configs/{f}/metafile.yml' for f in METHOD_FOLDERS]
    leaves = sorted(osp.relpath(p, REPO_ROOT) for p in glob.glob(
        osp.join(REPO_ROOT, 'configs', '*', '*.py')) if '_base_' not in p)
    models = _metafile_models()
    assert sorted(m['Config'] for m in models.values()) == leaves
    for name, model in models.items():
        assert model['Config'].endswith(f'/{name}.py')
        assert {'Method', 'Promptable Model', 'Weights'} <= set(model['Metadata']), name
        for result in model.get('Results', []):
            assert result['Task'] == 'One-shot Semantic Segmentation'
            assert 0 <= result['Metrics']['mDice'] <= 100, name
    # The main job's number is the one the README quotes for it (one measurement, two places).
    main_job = models['medpersam_litemedsam_mni152-wm']['Results'][0]['Metrics']['mDice']
    assert f'mDice {main_job:.2f} over the 30 targets' in open(
        osp.join(REPO_ROOT, 'README.md')).read().replace('\n', ' ')
    assert models['persam_sam-vit-b_mni152-wm']['Weights'].startswith('https://')
    assert 'Results' not in models['medpersam_sam-vit-h_mni152-wm']  # never measured


def test_mim_search_lists_every_config(installed):
    mim = _mim()
    proc = subprocess.run([mim, 'search', 'mmseg_medpersam'], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=installed), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    listed = [line.split(':', 1)[1].strip() for line in proc.stdout.splitlines()
              if line.startswith('config id:')]
    assert sorted(listed) == sorted(_metafile_models())
    assert 'mni152 white matter/mdice' in proc.stdout


def test_mim_test_runs_a_config_with_a_checkpoint(installed, tmp_path):
    """mim passes the checkpoint positionally: tools/test.py CONFIG CHECKPOINT."""
    from mmseg_medpersam.sam import build_sam_model
    mim = _mim()
    ckpt = str(tmp_path / 'tiny.pth')
    torch.save(build_sam_model('tiny', seed=0).state_dict(), ckpt)
    root = make_folder_task(str(tmp_path / 'task'), stems=('ref', 't1', 't2'))
    out = tmp_path / 'm.json'
    proc = subprocess.run(
        [mim, 'test', 'mmseg_medpersam', 'persam_sam-tiny_mni152-wm.py', '--checkpoint', ckpt,
         '--work-dir', str(tmp_path / 'w'), '--out-metrics', str(out), '--cfg-options',
         *[f'{k}={v}' for k, v in folder_options(root).items()]],
        capture_output=True, text=True, cwd=str(tmp_path),
        env=dict(os.environ, PYTHONPATH=installed), timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f'weights {ckpt}' in proc.stdout  # the checkpoint reached SAM
    assert len(json.load(open(out))['per_image']) == 2
