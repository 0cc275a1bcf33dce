"""A full-size SAM ViT-B config from a file and from a URL (random weights, local server)."""
import json

import pytest
import torch
from conftest import VIT_B_CONFIG, folder_options, make_folder_task

from mmseg_medpersam.sam import SAMBackend, build_sam_model


@pytest.mark.slow
def test_vit_b_config_with_checkpoint_file_and_url(tmp_path, http_server, torch_hub_dir,
                                                   test_tool, run_tool):
    """The real ViT-B config, random weights: loads from a file and from a URL, then segments."""
    name = 'sam_vit_b_random.pth'
    path = str(http_server.root / name)
    state = build_sam_model('vit_b', seed=0).state_dict()
    torch.save(state, path)
    probe = 'image_encoder.blocks.11.attn.qkv.weight'
    probe_value = state[probe].clone()
    del state

    # File: build_config puts it in the model; the backend loads it (no image is encoded).
    args = test_tool.parse_args([VIT_B_CONFIG, '--checkpoint', path,
                                 '--work-dir', str(tmp_path / 'wd')])
    cfg = test_tool.build_config(args)
    assert cfg.model.sam.checkpoint == path and cfg.model.sam.arch == 'vit_b'
    backend = SAMBackend(arch='vit_b', seed=1, checkpoint=cfg.model.sam.checkpoint)
    assert torch.equal(backend.model.state_dict()[probe], probe_value)
    del backend

    # URL: downloaded into the isolated hub cache, then one reference + one target segmented.
    root = make_folder_task(str(tmp_path / 'task'), stems=('ref', 'target'))
    code, out = run_tool(VIT_B_CONFIG, folder_options(root), checkpoint=http_server.url(name))
    assert code == 0
    assert http_server.requests == ['/' + name]
    assert (torch_hub_dir / 'checkpoints' / name).is_file()
    with open(out) as f:
        metrics = json.load(f)
    assert [e['img'] for e in metrics['per_image']] == ['target.png']
    assert 0 <= metrics['mDice'] <= 100
    assert out.endswith(".json")
