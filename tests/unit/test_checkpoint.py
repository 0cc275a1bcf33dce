"""SAM checkpoints: local files, http URLs (local server, cached), clear errors for bad ones."""
import os.path as osp

import pytest
import torch
from conftest import fake_vit_b_state_dict, folder_options

from mmseg_medpersam.sam import (
    CheckpointError,
    SAMBackend,
    build_sam_model,
    load_sam_checkpoint,
    read_checkpoint,
)
from mmseg_medpersam.sam.checkpoint import (
    checkpoint_cache_dir,
    resolve_checkpoint,
)


def _assert_weights(backend, state):
    own = backend.model.state_dict()
    assert own.keys() == state.keys()
    assert all(torch.equal(own[k], state[k]) for k in state)


def test_load_from_file(tmp_path, tiny_state_dict):
    path = str(tmp_path / 'tiny.pth')
    torch.save(tiny_state_dict, path)
    backend = SAMBackend(arch='tiny', seed=7, checkpoint=path)  # seed 7 differs from the file
    assert backend.checkpoint == path
    _assert_weights(backend, tiny_state_dict)


def test_load_wrapped_state_dict(tmp_path, tiny_state_dict):
    path = str(tmp_path / 'wrapped.pth')
    torch.save({'state_dict': {'module.' + k: v for k, v in tiny_state_dict.items()}}, path)
    _assert_weights(SAMBackend(arch='tiny', seed=7, checkpoint=path), tiny_state_dict)


def test_load_from_url_then_from_cache(http_server, torch_hub_dir, tiny_state_dict):
    torch.save(tiny_state_dict, str(http_server.root / 'sam_tiny_test.pth'))
    url = http_server.url('sam_tiny_test.pth')
    assert checkpoint_cache_dir() == str(torch_hub_dir / 'checkpoints')
    _assert_weights(SAMBackend(arch='tiny', seed=7, checkpoint=url), tiny_state_dict)
    assert http_server.requests == ['/sam_tiny_test.pth']
    assert (torch_hub_dir / 'checkpoints' / 'sam_tiny_test.pth').is_file()
    _assert_weights(SAMBackend(arch='tiny', seed=8, checkpoint=url), tiny_state_dict)
    assert http_server.requests == ['/sam_tiny_test.pth'], 'second load must use the cache'
    http_server.close()  # even with the server gone, the cached copy serves
    _assert_weights(SAMBackend(arch='tiny', seed=9, checkpoint=url), tiny_state_dict)


def test_checkpoint_of_another_arch_names_file_and_arch(tmp_path):
    path = str(tmp_path / 'looks_like_vit_b.pth')
    torch.save(fake_vit_b_state_dict(), path)
    with pytest.raises(CheckpointError) as err:
        SAMBackend(arch='tiny', checkpoint=path)
    msg = str(err.value)
    assert path in msg
    assert "arch 'tiny'" in msg
    assert 'SAM ViT-B checkpoint' in msg and 'use the vit_b config' in msg


def test_key_and_shape_mismatches_are_listed(tmp_path, tiny_state_dict):
    sam = build_sam_model('tiny', seed=3)
    state = dict(tiny_state_dict)
    state.pop('mask_decoder.iou_token.weight')
    state['mask_decoder.mask_tokens.weight'] = torch.zeros(7, 256)
    state['extra.weight'] = torch.zeros(1)
    path = str(tmp_path / 'broken.pth')
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_sam_checkpoint(sam, 'tiny', path)
    msg = str(err.value)
    assert msg.startswith(path)
    assert 'missing keys: mask_decoder.iou_token.weight' in msg
    assert 'unexpected keys: extra.weight' in msg
    assert 'shape mismatch keys: mask_decoder.mask_tokens.weight' in msg
    # Nothing was half-loaded: the matching keys were not copied either.
    assert not torch.equal(sam.state_dict()['mask_decoder.output_upscaling.0.weight'],
                           tiny_state_dict['mask_decoder.output_upscaling.0.weight'])


def test_not_a_state_dict_of_sam_is_rejected(tmp_path):
    path = str(tmp_path / 'random_stuff.pth')
    torch.save({'conv.weight': torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match='does not look like a SAM-family checkpoint'):
        SAMBackend(arch='tiny', checkpoint=path)


@pytest.mark.parametrize('content', [b'this is not a checkpoint\n', None])
def test_unreadable_or_missing_file_names_it(tmp_path, content):
    path = str(tmp_path / 'sam_weights.pth')
    if content is not None:
        with open(path, 'wb') as f:
            f.write(content)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    assert str(err.value).startswith(path + ':')
    assert ('cannot read' if content else 'not found') in str(err.value)


def test_non_tensor_payload_is_rejected(tmp_path):
    path = str(tmp_path / 'list.pth')
    torch.save({'epoch': 3, 'weights': [1, 2]}, path)
    with pytest.raises(CheckpointError, match='state dict of tensors') as err:
        read_checkpoint(path)
    assert path in str(err.value)


def test_unreachable_url_fails_at_once_naming_file_and_option(closed_port, torch_hub_dir):
    url = f'http://127.0.0.1:{closed_port}/sam_vit_b_01ec64.pth'
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(url)
    msg = str(err.value)
    assert 'Cannot download the SAM checkpoint sam_vit_b_01ec64.pth' in msg
    assert url in msg
    assert '--checkpoint /path/to/sam_vit_b_01ec64.pth' in msg
    assert str(torch_hub_dir / 'checkpoints' / 'sam_vit_b_01ec64.pth') in msg
    assert 'Cannot download' in str(err.value)
    assert not (torch_hub_dir / 'checkpoints' / 'sam_vit_b_01ec64.pth').exists()


def test_unreachable_url_through_the_cli(closed_port, torch_hub_dir, folder_task, run_tool,
                                         capsys):
    url = f'http://127.0.0.1:{closed_port}/sam_vit_b_01ec64.pth'
    code, out = run_tool(cfg_options=folder_options(folder_task), checkpoint=url)
    assert code == 2
    err = capsys.readouterr().err
    assert 'Cannot download the SAM checkpoint sam_vit_b_01ec64.pth' in err
    assert '--checkpoint /path/to/sam_vit_b_01ec64.pth' in err
    assert not osp.exists(out)


def test_missing_file_on_a_live_server(http_server, torch_hub_dir):
    url = http_server.url('sam_vit_l_0b3195.pth')
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(url)
    assert 'sam_vit_l_0b3195.pth' in str(err.value) and '--checkpoint' in str(err.value)
    assert http_server.requests == ['/sam_vit_l_0b3195.pth']


def test_resolve_checkpoint():
    with pytest.raises(CheckpointError) as err:
        resolve_checkpoint('medsam_vit_b', None)
    assert 'medsam_vit_b.pth' in str(err.value) and '--checkpoint' in str(err.value)
    assert resolve_checkpoint('vit_b', None).endswith('/sam_vit_b_01ec64.pth')
    assert resolve_checkpoint('vit_h', None).startswith('https://')
    assert resolve_checkpoint('tiny', None) is None
    assert resolve_checkpoint('medsam_vit_b', '/x/medsam.pth') == '/x/medsam.pth'
    with pytest.raises(KeyError):
        resolve_checkpoint('vit_q', None)
