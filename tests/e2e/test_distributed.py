"""Several processes (gloo on CPU) give the same per-image report as one process."""
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import REPO_ROOT, TINY_CONFIG, fast_warp, folder_options, make_folder_task

MEDPERSAM_TINY = osp.join(REPO_ROOT, 'configs', 'medpersam', 'medpersam_sam-tiny_mni152-wm.py')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _run(config, options, out, work_dir, processes):
    cmd = [osp.join(REPO_ROOT, 'tools', 'test.py'), config, '--work-dir', work_dir,
           '--out-metrics', out, '--cfg-options'] + [f'{k}={v}' for k, v in options.items()]
    if processes > 1:
        cmd = ['-m', 'torch.distributed.run', f'--nproc_per_node={processes}',
               f'--master_port={_free_port()}'] + cmd + ['--launcher', 'pytorch']
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable] + cmd, capture_output=True, text=True,
                          cwd=REPO_ROOT, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out) as f:
        return json.load(f)


@pytest.mark.parametrize('config, extra', [
    (TINY_CONFIG, {}),
    (MEDPERSAM_TINY, dict(fast_warp(30), **{'model.head.retrain_rounds': 1,
                                            'model.head.min_sam_agreement': 0,
                                            'model.head.pseudo_min_dice': 0})),
], ids=['persam', 'medpersam'])
def test_two_processes_report_what_one_process_reports(tmp_path, config, extra):
    root = make_folder_task(str(tmp_path / 'task'), stems=('ref', 't1', 't2', 't3', 't4', 't5'))
    options = dict(folder_options(root), **extra)
    one = _run(config, options, str(tmp_path / 'one.json'), str(tmp_path / 'w1'), 1)
    two = _run(config, options, str(tmp_path / 'two.json'), str(tmp_path / 'w2'), 2)
    assert two['run']['processes'] == 2 and one['run']['processes'] == 1
    assert [e['img'] for e in two['per_image']] == ['t1.png', 't2.png', 't3.png', 't4.png',
                                                    't5.png']
    for a, b in zip(one['per_image'], two['per_image']):
        assert a['img'] == b['img']
        assert a['dice'] == pytest.approx(b['dice'], abs=1e-6)
    assert one['mDice'] == pytest.approx(two['mDice'], abs=1e-6)
    if 'transductive' in one:  # the fit saw every target in both runs, and retrained alike
        facts = [[(r['retrain_skipped'], r['pseudo_labels_used'])
                  for log in run['transductive']['references'].values() for r in log['rounds']]
                 for run in (one, two)]
        assert facts[0] == facts[1] == [(False, 5)]


def test_dist_test_sh_at_default_threads_reports_what_one_process_reports(tmp_path):
    """Without OMP_NUM_THREADS, torchrun gives each process one thread; the fit still runs
    with the one-process thread count, so the masks are the same to the pixel."""
    root = make_folder_task(str(tmp_path / 'task'), stems=('ref', 't1', 't2', 't3', 't4'))
    options = dict(folder_options(root), **fast_warp(30))
    env = {k: v for k, v in os.environ.items()
           if k not in ('OMP_NUM_THREADS', 'MEDPERSAM_FIT_THREADS')}
    args = ['--cfg-options'] + [f'{k}={v}' for k, v in options.items()]
    runs = {}
    for name, cmd in (('one', [sys.executable, osp.join(REPO_ROOT, 'tools', 'test.py'),
                               MEDPERSAM_TINY]),
                      ('two', ['bash', osp.join(REPO_ROOT, 'tools', 'dist_test.sh'),
                               MEDPERSAM_TINY, '2'])):
        masks = str(tmp_path / name / 'masks')
        proc = subprocess.run(cmd + ['--work-dir', str(tmp_path / name), '--out-masks', masks,
                                     '--out-metrics', str(tmp_path / f'{name}.json')] + args,
                              capture_output=True, text=True, cwd=REPO_ROOT, timeout=900,
                              env=dict(env, PYTHON=sys.executable, PORT=str(_free_port())))
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = {f: cv2.imread(osp.join(masks, f), cv2.IMREAD_UNCHANGED)
                      for f in sorted(os.listdir(masks))}
    assert list(runs['one']) == list(runs['two']) == [f't{i}.png' for i in range(1, 5)]
    for f in runs['one']:
        assert np.array_equal(runs['one'][f], runs['two'][f]), f
