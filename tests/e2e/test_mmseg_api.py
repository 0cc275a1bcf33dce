"""mmseg's own inference API on the plugin's configs: ``init_model`` with a raw SAM-family file
or an mmengine checkpoint, ``inference_model`` on a path or an array, ``MMSegInferencer``,
``show_result_pyplot``, and the palette mmseg's visualizer draws with."""
import os.path as osp

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, blob_pair, folder_options, make_folder_task, write_png
from mmengine.config import Config

from mmseg_medpersam.sam import build_sam_model
from mmseg_medpersam.segmentors.mmseg_api import with_meta
from mmseg_medpersam.structures.errors import OneShotDataError
from mmseg_medpersam.utils.palette import drawing_palette, is_grey


@pytest.fixture
def task(tmp_path):
    """A 64x80 folder task (reference ``ref``, targets ``t1``, ``t2``) and the tiny config
    pointed at it."""
    root = make_folder_task(str(tmp_path / 'task'))
    cfg = Config.fromfile(TINY_CONFIG)
    cfg.merge_from_dict(folder_options(root))
    return root, cfg


@pytest.fixture
def model(task):
    from mmseg.apis import init_model
    return init_model(task[1], device='cpu')


def _image(root, stem='t1'):
    return osp.join(root, 'images', stem + '.png')


# --------------------------------------------------------------------------- init_model
def test_init_model_takes_a_raw_sam_file(task, tmp_path):
    """A raw SAM-layout file has no 'meta' (mmseg's init_model read checkpoint['meta']: a
    KeyError); it loads into the backend and the classes come from the config."""
    from mmseg.apis import init_model
    raw = build_sam_model('tiny', seed=3).state_dict()
    path = str(tmp_path / 'raw.pth')
    torch.save(raw, path)
    model = init_model(task[1], path, device='cpu')
    for key, value in raw.items():
        assert torch.equal(model.sam.model.state_dict()[key], value), key
    assert model.dataset_meta['classes'] == ('background', 'foreground')


@pytest.mark.parametrize('meta', [{}, {'dataset_meta': {'classes': ('bg', 'lesion'),
                                                          'palette': [[0, 0, 0], [0, 0, 255]]}}])
def test_init_model_takes_an_mmengine_checkpoint(task, tmp_path, meta):
    from mmengine.runner import save_checkpoint
    from mmseg.apis import init_model
    source = init_model(task[1], device='cpu')
    with torch.no_grad():
        source.sam.model.mask_decoder.iou_token.weight.add_(1.0)
    path = str(tmp_path / 'segmentor.pth')
    save_checkpoint({'meta': meta, 'state_dict': source.state_dict()}, path)
    model = init_model(task[1], path, device='cpu')
    assert torch.equal(model.sam.model.mask_decoder.iou_token.weight,
                       source.sam.model.mask_decoder.iou_token.weight)
    expected = meta['dataset_meta']['classes'] if meta else ('background', 'foreground')
    assert model.dataset_meta['classes'] == expected
    assert model.dataset_meta['palette'][1:] == (
        [[0, 0, 255]] if meta else drawing_palette(expected, [[0, 0, 0], [255, 255, 255]])[1:])


def test_with_meta_wraps_only_sam_files_and_classless_segmentor_checkpoints():
    raw = {'image_encoder.a': torch.zeros(1), 'mask_decoder.b': torch.zeros(1)}
    assert with_meta(raw) == {'state_dict': raw, 'meta': {'dataset_meta': {}}}
    ours = {'meta': {'seed': 1}, 'state_dict': {'sam.model.image_encoder.a': torch.zeros(1)}}
    assert with_meta(ours)['meta'] == {'seed': 1, 'dataset_meta': {}}
    for other in ({'backbone.conv.weight': torch.zeros(1)},  # someone else's model
                  {'meta': {}, 'state_dict': {'backbone.x': torch.zeros(1)}},
                  {'meta': {'CLASSES': ('a', )}, 'state_dict': ours['state_dict']},
                  [1, 2]):
        assert with_meta(other) is other


# --------------------------------------------------------------------------- inference_model
def test_mmsegs_api_on_the_tiny_config_and_the_mni152_task(mni152_root, tmp_path):
    """The README's example: init_model with a raw SAM file, inference_model on a path and an
    array, MMSegInferencer: a pred_sem_seg of the image's size, the config's reference."""
    import cv2
    from mmseg.apis import MMSegInferencer, inference_model, init_model
    path = str(tmp_path / 'tiny.pth')
    torch.save(build_sam_model('tiny', seed=0).state_dict(), path)
    options = {'test_dataloader.dataset.data_root': mni152_root}
    model = init_model(TINY_CONFIG, path, device='cpu', cfg_options=options)
    image = osp.join(mni152_root, 'images', 'z070.png')
    size = cv2.imread(image).shape[:2]
    by_path = inference_model(model, image)
    by_array = inference_model(model, cv2.imread(image, cv2.IMREAD_UNCHANGED))
    for result in (by_path, by_array):
        assert tuple(result.pred_sem_seg.data.shape) == (1, *size)
        assert osp.basename(result.metainfo['references'].files[0].img_path) == 'z090.png'
    assert torch.equal(by_path.pred_sem_seg.data, by_array.pred_sem_seg.data)
    cfg = Config.fromfile(TINY_CONFIG)
    cfg.merge_from_dict(options)
    inferencer = MMSegInferencer(model=cfg, weights=path, device='cpu')
    inferencer.show_progress = False
    sample = inferencer(image, return_datasamples=True)
    assert torch.equal(sample.pred_sem_seg.data, by_path.pred_sem_seg.data)
    assert model.dataset_meta['classes'] == ('background', 'white matter')


def test_inference_model_on_a_path_and_an_array(task, model):
    """The config's reference is used; an array (any dtype, HxW or HxWx3) gives the same
    result as its file, with a pred_sem_seg of the image's size."""
    from mmseg.apis import inference_model
    root = task[0]
    by_path = inference_model(model, _image(root))
    assert tuple(by_path.pred_sem_seg.data.shape) == (1, 64, 80)
    assert by_path.metainfo['references'].files[0].img_path.endswith(
        osp.join('images', 'ref.png'))
    image, _ = blob_pair(64, 80, cy=0.5, cx=0.53, seed=1)  # what t1.png holds
    by_array = inference_model(model, image[..., 0])
    assert torch.equal(by_array.pred_sem_seg.data, by_path.pred_sem_seg.data)
    wide = inference_model(model, image[..., 0].astype(np.uint16) * 7)  # windowed to 8 bits
    assert tuple(wide.pred_sem_seg.data.shape) == (1, 64, 80)
    # mmseg swaps the first step for its array loader and never swaps it back: a path after an
    # array still works
    again = inference_model(model, _image(root))
    assert torch.equal(again.pred_sem_seg.data, by_path.pred_sem_seg.data)


def test_arrays_are_named_by_their_pixels(task, model):
    """Two arrays never share a cached embedding (mmseg's array loader names none)."""
    from mmseg.apis import inference_model
    a, _ = blob_pair(64, 80, seed=1)
    b, _ = blob_pair(64, 80, cy=0.3, seed=2)
    first, second, again = (inference_model(model, x) for x in (a, b, a))
    names = [s.metainfo['img_path'] for s in (first, second, again)]
    assert names[0] != names[1] and names[0] == names[2]
    assert names[0].startswith('array_')


def test_a_reference_set_on_the_model_replaces_the_configs(task, model, tmp_path):
    from mmseg.apis import inference_model
    image, labels = blob_pair(64, 80, cy=0.3, seed=5)
    ref = write_png(str(tmp_path / 'other' / 'ref.png'), image)
    mask = write_png(str(tmp_path / 'other' / 'ref_mask.png'), labels)
    model.set_reference(ref, mask)
    result = inference_model(model, _image(task[0]))
    assert result.metainfo['references'].files[0].img_path == ref
    with pytest.raises(OneShotDataError, match='reference'):
        model.set_reference(ref, str(tmp_path / 'missing.png'))


def test_no_reference_anywhere_names_set_reference():
    from mmseg.registry import MODELS
    model = MODELS.build(Config.fromfile(TINY_CONFIG).model)
    data = dict(inputs=[torch.zeros(3, 32, 32)], data_samples=None)
    from mmseg.structures import SegDataSample
    data['data_samples'] = [SegDataSample(metainfo=dict(img_shape=(32, 32),
                                                        ori_shape=(32, 32)))]
    with pytest.raises(OneShotDataError, match='set_reference'):
        model.test_step(data)


def test_a_bad_array_is_one_clear_error(model):
    from mmseg.apis import inference_model
    with pytest.raises(OneShotDataError, match='shape'):
        inference_model(model, np.zeros((1, 40), np.uint8))
    with pytest.raises(OneShotDataError, match='finite'):
        inference_model(model, np.full((40, 40), np.nan, np.float32))


# --------------------------------------------------------------------------- MMSegInferencer
def test_mmseg_inferencer_on_a_config(task, tmp_path):
    """mmseg refused every one-shot config ('LoadImageFromFile is not found in the test
    pipeline'); it now segments paths and arrays and draws them."""
    from mmseg.apis import MMSegInferencer
    root, cfg = task
    inferencer = MMSegInferencer(model=cfg, device='cpu')
    inferencer.show_progress = False
    sample = inferencer(_image(root), return_datasamples=True)
    assert tuple(sample.pred_sem_seg.data.shape) == (1, 64, 80)
    image, _ = blob_pair(64, 80, cy=0.5, cx=0.53, seed=1)
    out = inferencer([image], out_dir=str(tmp_path / 'out'))
    assert out['predictions'].shape == (64, 80)
    assert np.array_equal(out['predictions'], sample.pred_sem_seg.data[0].numpy())
    assert osp.isfile(tmp_path / 'out' / 'vis' / '00000000_vis.jpg')
    assert inferencer.model.dataset_meta['classes'] == ('background', 'foreground')  # not
    # the Cityscapes classes mmseg's inferencer sets when it gets no checkpoint


def test_mmseg_inferencer_keeps_mmseg_configs_as_they_were():
    """Only the one-shot case is added: another config's pipeline goes through mmseg."""
    from mmseg.apis import MMSegInferencer
    cfg = Config(dict(test_dataloader=dict(dataset=dict(pipeline=[
        dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
        dict(type='PackSegInputs')]))))
    pipeline = MMSegInferencer._init_pipeline(object.__new__(MMSegInferencer), cfg)
    assert [type(t).__name__ for t in pipeline.transforms] == ['InferencerLoader',
                                                              'PackSegInputs']
    cfg.test_dataloader.dataset.pipeline = [dict(type='PackSegInputs')]
    with pytest.raises(ValueError, match='LoadImageFromFile is not found'):
        MMSegInferencer._init_pipeline(object.__new__(MMSegInferencer), cfg)


# --------------------------------------------------------------------------- drawing
def test_show_result_pyplot_draws_the_structure_in_colour(task, model):
    from mmengine.structures import PixelData
    from mmseg.apis import show_result_pyplot
    from mmseg.structures import SegDataSample
    labels = torch.zeros(1, 64, 80, dtype=torch.long)
    labels[0, 20:40, 20:60] = 1
    result = SegDataSample(pred_sem_seg=PixelData(data=labels))
    drawn = show_result_pyplot(model, _image(task[0]), result, show=False, with_labels=False)
    assert drawn.shape == (64, 80, 3)
    inside = drawn[25:35, 25:55].reshape(-1, 3).astype(int)
    assert (inside.max(1) - inside.min(1)).mean() > 40  # a colour, not a white blend on grey


def test_drawing_palette():
    assert drawing_palette(('bg', 'wm'), [[0, 0, 0], [255, 255, 255]])[0] == [0, 0, 0]
    assert not is_grey(drawing_palette(('bg', 'wm'), [[0, 0, 0], [255, 255, 255]])[1])
    chosen = [[0, 0, 0], [200, 30, 30], [30, 30, 200]]
    assert drawing_palette(('a', 'b', 'c'), chosen) == chosen  # colours kept as given
    many = drawing_palette([str(i) for i in range(14)], [[0, 0, 0]] + [[255, 0, 0]] * 13)
    assert len({tuple(c) for c in many}) == 14 and not any(is_grey(c) for c in many[1:])


def test_dataset_meta_of_another_task_is_ignored(model):
    model.dataset_meta = dict(classes=tuple(f'c{i}' for i in range(19)), palette=[[0, 0, 0]] * 19)
    assert model.dataset_meta['classes'] == ('background', 'foreground')
    model.dataset_meta = dict(classes=('bg', 'tumour'), palette=[[0, 0, 0], [9, 200, 9]])
    assert model.dataset_meta == dict(classes=('bg', 'tumour'), palette=[[0, 0, 0], [9, 200, 9]])


def test_show_dir_hook_draws_with_a_contrasting_palette():
    """mmseg's --show-dir: the datasets' palette (white structure) becomes a colour."""
    from mmseg.visualization import SegLocalVisualizer

    from mmseg_medpersam.engine import OneShotVisualizationHook
    visualizer = SegLocalVisualizer.get_instance('medpersam_test_show_dir')
    visualizer.dataset_meta = dict(classes=('background', 'white matter'),
                                   palette=[[0, 0, 0], [255, 255, 255]])
    hook = OneShotVisualizationHook(draw=True)
    hook._visualizer = visualizer
    hook._contrasting_palette()
    assert not is_grey(visualizer.dataset_meta['palette'][1])
    assert visualizer.dataset_meta['classes'] == ('background', 'white matter')
