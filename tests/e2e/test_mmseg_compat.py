"""mmseg's own entry points run the plugin's configs as an mmseg user expects."""
import glob
import os.path as osp
import subprocess
import sys

import mmseg
import pytest
import torch
from conftest import REPO_ROOT, TINY_CONFIG, folder_options, make_folder_task
from mmengine.runner import load_checkpoint

from mmseg_medpersam.sam import CheckpointError, build_sam_model

MMSEG_TEST = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', 'test.py')


def test_init_model_builds_the_tiny_config():
    from mmseg.apis import init_model
    model = init_model(TINY_CONFIG, device='cpu')
    assert model.method_name == 'PerSAM'


def test_a_raw_sam_state_dict_loads_into_the_backend(tmp_path):
    """A SAM-layout file (image_encoder./prompt_encoder./mask_decoder.) given to mmengine's
    load_checkpoint lands in the backend; before, no key matched and it was ignored."""
    from mmseg.apis import init_model
    model = init_model(TINY_CONFIG, device='cpu')
    raw = build_sam_model('tiny', seed=1).state_dict()
    path = str(tmp_path / 'raw.pth')
    torch.save(raw, path)
    assert not torch.equal(model.sam.model.state_dict()['mask_decoder.iou_token.weight'],
                           raw['mask_decoder.iou_token.weight'])
    load_checkpoint(model, path, map_location='cpu', strict=True)
    for key, value in raw.items():
        assert torch.equal(model.sam.model.state_dict()[key], value), key


def test_a_raw_checkpoint_of_another_arch_is_refused(tmp_path):
    from conftest import fake_vit_b_state_dict
    from mmseg.apis import init_model
    model = init_model(TINY_CONFIG, device='cpu')
    path = str(tmp_path / 'vit_b.pth')
    torch.save(fake_vit_b_state_dict(), path)
    with pytest.raises(CheckpointError, match='SAM ViT-B'):
        load_checkpoint(model, path, map_location='cpu')


def test_mmseg_tools_test_runs_a_config_with_checkpoint_show_dir_and_out(tmp_path):
    root = make_folder_task(str(tmp_path / 'task'), stems=('ref', 't1', 't2', 't3'))
    ckpt = str(tmp_path / 'tiny.pth')
    torch.save(build_sam_model('tiny', seed=0).state_dict(), ckpt)
    options = [f'{k}={v}' for k, v in folder_options(root).items()]
    work, show, out = (str(tmp_path / n) for n in ('work', 'show', 'out'))
    proc = subprocess.run([sys.executable, MMSEG_TEST, TINY_CONFIG, ckpt, '--work-dir', work,
                           '--show-dir', show, '--out', out, '--cfg-options', *options],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'Loaded tiny SAM' in proc.stdout + proc.stderr  # the checkpoint reached SAM
    pictures = sorted(osp.basename(p) for p in glob.glob(osp.join(show, '**', '*.png'),
                                                         recursive=True))
    assert pictures == ['test_t1_0.png', 'test_t2_0.png', 'test_t3_0.png']  # every target
    assert sorted(osp.basename(p) for p in glob.glob(osp.join(out, '*.png'))) == [
        't1.png', 't2.png', 't3.png']
    assert 'oneshot/mDice' in proc.stdout + proc.stderr
