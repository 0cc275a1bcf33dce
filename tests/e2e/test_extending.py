"""A prompt generator registered outside the package runs end to end through custom_imports."""
import json
import os.path as osp
import sys
import textwrap

from conftest import REPO_ROOT, folder_options, make_folder_task

GENERATOR = '''
import torch
from mmseg.registry import MODELS
from mmseg_medpersam.prompts import BasePromptGenerator, Prompts


@MODELS.register_module()
class CentroidPointPrompt(BasePromptGenerator):
    """One positive point at the centroid of the current mask."""

    def forward(self, ctx):
        if ctx.mask is None or not ctx.mask.any():
            return None
        ys, xs = torch.nonzero(ctx.mask, as_tuple=True)
        xy = torch.stack([xs.float().mean(), ys.float().mean()])
        return Prompts(point_coords=xy.view(1, 1, 2),
                       point_labels=torch.ones(1, 1, dtype=torch.long, device=xy.device))
'''


def test_custom_prompt_module_through_custom_imports(tmp_path, run_tool, monkeypatch):
    plugin_dir = tmp_path / 'user_code'
    plugin_dir.mkdir()
    (plugin_dir / 'my_prompts.py').write_text(GENERATOR)
    monkeypatch.syspath_prepend(str(plugin_dir))
    base = osp.join(REPO_ROOT, 'configs', 'medpersam', 'medpersam_sam-tiny_mni152-wm.py')
    config = tmp_path / 'my_config.py'
    config.write_text(textwrap.dedent(f'''
        _base_ = [{base!r}]
        custom_imports = dict(imports=['mmseg_medpersam', 'my_prompts'],
                              allow_failed_imports=False)
        model = dict(head=dict(
            num_iters=1, retrain_rounds=0, min_sam_agreement=0.0,
            warping=dict(schedule=dict(iters=20)),
            prompt_generators=[dict(type='MaskPrompt'), dict(type='CentroidPointPrompt')]))
        test_evaluator = [dict(type='PerImageDiceMetric'), dict(type='PromptQualityMetric')]
    '''))
    root = make_folder_task(str(tmp_path / 'task'))
    code, out = run_tool(str(config), folder_options(root))
    assert code == 0
    metrics = json.load(open(out))
    assert len(metrics['per_image']) == 2
    # exactly the configured generators were used: a mask and the centroid point, no box and
    # no negative point (those would come from the default BoxPrompt / BandPointPrompt)
    prompt = metrics['prompt']
    assert set(prompt) == {'pos_precision', 'mask_dice'}
    assert prompt['pos_precision'] == 1.0  # the centroid of a blob lies inside it
    assert 'my_prompts' in sys.modules
    assert 'CentroidPointPrompt' in sys.modules['my_prompts'].MODELS.module_dict
