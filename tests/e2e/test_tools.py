"""``tools/test.py``: argument handling, and the real tiny config on the embedded MNI152 task."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT, TINY_CONFIG, VIT_B_CONFIG, fake_vit_b_state_dict

from mmseg_medpersam.datasets.mni152 import MNI152_TASKS, slice_name

WM = MNI152_TASKS['wm']


def test_build_config_applies_cli_options(test_tool, tmp_path):
    args = test_tool.parse_args([
        VIT_B_CONFIG, '--checkpoint', 'http://127.0.0.1:1/sam_vit_b_01ec64.pth',
        '--work-dir', str(tmp_path / 'wd'), '--out-metrics', str(tmp_path / 'm.json'),
        '--show-dir', str(tmp_path / 'vis'),
        '--cfg-options', 'model.head.num_refinements=1', 'test_dataloader.dataset.data_root=/d'])
    cfg = test_tool.build_config(args)
    assert cfg.model.sam.arch == 'vit_b'
    assert cfg.model.sam.checkpoint == 'http://127.0.0.1:1/sam_vit_b_01ec64.pth'
    assert cfg.work_dir == str(tmp_path / 'wd')
    assert cfg.test_evaluator.type == 'OneShotEvaluator'
    assert [e.type for e in cfg.test_evaluator.metrics] == ['PerImageDiceMetric',
                                                            'PromptQualityMetric']
    assert cfg.test_cfg.out_file == str(tmp_path / 'm.json')
    assert cfg.model.head.num_refinements == 1
    assert cfg.test_dataloader.dataset.data_root == '/d'
    assert cfg.custom_hooks == [dict(type='PanelVisualizationHook', out_dir=str(tmp_path / 'vis'))]
    assert cfg.load_from is None and cfg.launcher == 'none'
    assert cfg.test_cfg.type == 'OneShotTestLoop'


def test_build_config_defaults(test_tool):
    cfg = test_tool.build_config(test_tool.parse_args([TINY_CONFIG]))
    assert cfg.model.sam.arch == 'tiny' and cfg.model.sam.checkpoint is None
    assert cfg.work_dir == osp.join('./work_dirs', 'persam_sam-tiny_mni152-wm')
    assert cfg.test_cfg.get('out_file') is None


def test_tiny_config_on_embedded_mni152(mni152_root, run_tool, capsys):
    code, out = run_tool(cfg_options={'test_dataloader.dataset.data_root': mni152_root})
    assert code == 0
    stdout = capsys.readouterr().out
    start = stdout.rindex('\n{\n') + 1  # main prints the metrics as the last JSON block
    printed = json.loads(stdout[start:stdout.index('\n}', start) + 2])
    with open(out) as f:
        metrics = json.load(f)
    assert 0 <= metrics['mDice'] <= 100 and 0 <= metrics['mIoU'] <= 100
    assert printed['oneshot/mDice'] == round(metrics['mDice'], 2)  # mmseg-style name
    expected = [slice_name(z) + '.png' for z in WM.slices if z != WM.reference]
    assert [e['img'] for e in metrics['per_image']] == expected
    assert len(metrics['per_image']) == 30
    for entry in metrics['per_image']:
        assert 0 <= entry['dice'] <= 1 and 0 <= entry['iou'] <= entry['dice'] + 1e-9
    assert metrics['per_class']['white matter']['num_images'] == 30
    mean = 100 * sum(e['dice'] for e in metrics['per_image']) / 30
    assert abs(mean - metrics['mDice']) <= 0.005  # the report rounds to 0.01 %


def test_cli_script_exit_code_and_message(tmp_path):
    """``python tools/test.py`` from another folder, without the package on PYTHONPATH."""
    ckpt = str(tmp_path / 'wrong_arch.pth')
    torch.save(fake_vit_b_state_dict(), ckpt)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run(
        [sys.executable, osp.join(REPO_ROOT, 'tools', 'test.py'), TINY_CONFIG,
         '--checkpoint', ckpt, '--work-dir', str(tmp_path / 'wd')],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert 'error: ' in proc.stderr and ckpt in proc.stderr and 'vit_b' in proc.stderr


def test_benchmark_prints_the_per_stage_table(tmp_path, folder_task, capsys):
    from conftest import folder_options, load_tool
    options = [f'{k}={v}' for k, v in folder_options(folder_task).items()]
    out = tmp_path / 'bench.json'
    code = load_tool('benchmark').main([TINY_CONFIG, '--device', 'cpu', '--images', '2',
                                        '--repeats', '1', '--compare-official', '--json',
                                        str(out), '--cfg-options'] + options)
    assert code == 0
    text = capsys.readouterr().out
    for stage in ('| encode |', '| prompt generation |', '| decode |', '| total (excl. fit) |'):
        assert stage in text
    assert 'official / ours' in text
    result = json.load(open(out))
    assert result['images'] == 2 and result['method'] == 'PerSAM'
    assert 0 < result['decode_ms'] and 0 < result['encode_ms'] and result['peak_host_memory_gib']
    assert result['total_ms'] == pytest.approx(
        result['encode_ms'] + result['decode_ms'] + result['prompts_ms'], abs=0.02)


def test_benchmark_times_each_variant_and_says_which_do_not_apply(tmp_path, folder_task,
                                                                   capsys):
    """--variants: one row per numeric setting, the encode stage at each batch size; a
    setting a model cannot take (sdpa on LiteMedSAM's TinyViT) is a row saying so, not a
    crash of the whole run."""
    from conftest import folder_options, load_tool
    options = [f'{k}={v}' for k, v in folder_options(folder_task).items()]
    out = tmp_path / 'bench.json'
    tool = load_tool('benchmark')
    code = tool.main([TINY_CONFIG, '--device', 'cpu', '--images', '2', '--repeats', '1',
                      '--batch-size', '1', '2', '--variants', 'fp32', 'sdpa+bf16',
                      '--json', str(out), '--cfg-options'] + options)
    assert code == 0
    results = json.load(open(out))
    assert [r['variant'] for r in results] == ['fp32', 'sdpa+bf16']
    for r in results:
        assert set(r['encode_ms_by_batch']) == {'1', '2'} and r['decode_ms'] > 0
    text = capsys.readouterr().out
    assert 'encode ms/img (batch 2)' in text
    assert '| fp32 |' in text and '| sdpa+bf16 |' in text  # the summary: a row per variant
    lite = 'configs/medpersam/medpersam_litemedsam_mni152-wm.py'
    args = tool.parse_args([lite, '--device', 'cpu', '--variants', 'sdpa'])
    row = tool.benchmark(args, lite, 'sdpa')
    assert 'sdpa' in row['not_applicable'] and 'LiteMedSAM' in row['not_applicable']
    assert 'not applicable' in tool.summary_table([row])
    with pytest.raises(SystemExit):
        tool.parse_args(['--suite', 'gpu', lite])  # one CONFIG or --suite
