"""The one-shot segmentor end to end (tiny PerSAM config): bad inputs, multi-class, prompts."""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from conftest import (
    REPO_ROOT,
    TINY_CONFIG,
    fake_vit_b_state_dict,
    folder_options,
    make_folder_task,
    write_png,
)
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope

from mmseg_medpersam.datasets import OneShotDataError
from mmseg_medpersam.methods import HeadResult
from mmseg_medpersam.segmentors import OneShotSAMSegmentor
from mmseg_medpersam.structures import OneShotReferences, ReferenceFile


def _error(capsys) -> str:
    return capsys.readouterr().err


# --------------------------------------------------------------------------- bad inputs
def test_empty_reference_mask(folder_task, run_tool, capsys):
    path = write_png(osp.join(folder_task, 'masks', 'ref.png'), np.zeros((64, 80), np.uint8))
    code, out = run_tool(cfg_options=folder_options(folder_task))
    assert code == 3
    err = _error(capsys)
    assert f'{path}: the reference mask is empty' in err
    assert not osp.exists(out)


def test_reference_mask_of_another_size(folder_task, run_tool, capsys):
    mask = np.zeros((32, 40), np.uint8)
    mask[5:20, 5:20] = 1
    path = write_png(osp.join(folder_task, 'masks', 'ref.png'), mask)
    code, out = run_tool(cfg_options=folder_options(folder_task))
    assert code == 3
    err = _error(capsys)
    assert f'{path}: mask size 32x40 differs from its image' in err
    assert osp.join(folder_task, 'images', 'ref.png') in err


def test_reference_label_values_not_in_config(folder_task, run_tool, capsys):
    mask = np.zeros((64, 80), np.uint8)
    mask[10:30, 10:30] = 1
    mask[40:50, 40:60] = 3
    path = write_png(osp.join(folder_task, 'masks', 'ref.png'), mask)
    code, _ = run_tool(cfg_options=folder_options(folder_task))
    assert code == 3
    err = _error(capsys)
    assert f'{path}: label values {{3}} are not classes of this task' in err
    assert 'num_classes=2' in err


def test_unreadable_target_others_still_scored(tmp_path, run_tool, capsys):
    root = make_folder_task(str(tmp_path / 'task'), stems=('ref', 'bad', 'good'))
    bad = osp.join(root, 'images', 'bad.png')
    with open(bad, 'w') as f:
        f.write('not a png\n')
    code, out = run_tool(cfg_options=folder_options(root))
    assert code == 3
    err = _error(capsys)
    assert '1 target(s) could not be segmented' in err
    assert f'{bad}: cannot read' in err
    with open(out) as f:
        metrics = json.load(f)
    assert [e['img'] for e in metrics['per_image']] == ['good.png']
    assert 0 <= metrics['mDice'] <= 100
    assert 0 <= metrics['per_image'][0]['dice'] <= 1
    assert metrics['run']['method'] == 'PerSAM'  # the run's facts are kept too


def test_warp_only_ignores_checkpoint_and_runs_without_sam(tmp_path, run_tool, capsys):
    root = make_folder_task(str(tmp_path / 'task'))
    config = osp.join(REPO_ROOT, 'configs', 'medpersam', 'warp-only_mni152-wm.py')
    code, out = run_tool(config, folder_options(root, **{'model.head.warping.schedule.iters': 5}),
                         checkpoint='/nonexistent/sam.pth')
    assert code == 0
    assert '--checkpoint is ignored' in capsys.readouterr().err
    with open(out) as f:
        metrics = json.load(f)
    assert metrics['run']['method'] == 'Warp only' and len(metrics['per_image']) == 2


def test_checkpoint_of_another_arch(folder_task, tmp_path, run_tool, capsys):
    path = str(tmp_path / 'sam_vit_b_lookalike.pth')
    torch.save(fake_vit_b_state_dict(), path)
    code, out = run_tool(cfg_options=folder_options(folder_task), checkpoint=path)
    assert code == 2
    err = _error(capsys)
    assert f'{path}: does not match SAM arch \'tiny\'' in err
    assert 'vit_b' in err
    assert not osp.exists(out)


def test_no_reference_anywhere_is_a_clear_error():
    cfg = Config.fromfile(TINY_CONFIG)
    with DefaultScope.overwrite_default_scope('mmseg'):
        from mmseg.registry import MODELS
        model = MODELS.build(cfg.model)
    with pytest.raises(OneShotDataError, match='no reference'):
        model.get_reference(dict(img_path='x.png'))


# --------------------------------------------------------------------------- predictions
def test_merge_classes_rule():
    a = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 1.0, -1.0]])
    b = torch.tensor([[1.0, -2.0, 0.7], [-1.0, 0.9, 4.0]])
    labels = OneShotSAMSegmentor.merge_classes({1: HeadResult(a), 2: HeadResult(b)}, (2, 3))
    assert labels.tolist() == [[1, 0, 2], [0, 1, 2]]
    assert OneShotSAMSegmentor.merge_classes({}, (2, 3)).tolist() == [[0] * 3] * 2


@pytest.fixture(scope='module')
def multiclass_run(tmp_path_factory):
    """The tiny PerSAM config on a 3-class folder task (ref + 1 target), run in-process."""
    root = make_folder_task(str(tmp_path_factory.mktemp('mc') / 'task'), stems=('ref', 'tgt'),
                            labels=(1, 2))
    cfg = Config.fromfile(TINY_CONFIG)
    cfg.merge_from_dict(folder_options(root))
    cfg.test_dataloader.dataset.metainfo = dict(classes=('background', 'left', 'right'))
    with DefaultScope.overwrite_default_scope('mmseg'):
        from mmseg.registry import DATASETS, MODELS
        model = MODELS.build(cfg.model).eval()
        dataset = DATASETS.build(cfg.test_dataloader.dataset)
        recorded = {}
        predict = model.head.predict

        def spy(sam, ctx, state=None):
            result = predict(sam, ctx, state)
            label = getattr(ctx.reference, 'label', None)  # the class this call is about
            if label is None:
                label = int(ctx.reference.key.rsplit(':', 1)[1])
            recorded[int(label)] = result
            return result

        model.head.predict = spy
        with torch.no_grad():
            samples = model.test_step(pseudo_collate([dataset[0]]))
    return samples, recorded, model


def test_multiclass_reference_gives_merged_label_map(multiclass_run):
    samples, recorded, model = multiclass_run
    assert len(samples) == 1
    pred = samples[0].pred_sem_seg.data
    assert pred.shape == (1, 64, 80)
    assert set(recorded) == {1, 2}  # the head ran once per foreground class
    ref = next(iter(model._references.values()))
    assert sorted(ref.classes) == [1, 2]
    logits = torch.stack([recorded[1].logits, recorded[2].logits])
    expected = torch.where(logits.max(0).values > 0, logits.argmax(0) + 1, 0)
    assert torch.equal(pred[0], expected)
    assert set(pred.unique().tolist()) <= {0, 1, 2}
    assert samples[0].metainfo['num_classes'] == 3


def test_prompts_are_stored_in_metainfo(multiclass_run):
    samples, recorded, _ = multiclass_run
    from mmseg_medpersam.structures import PromptRecord
    prompts = PromptRecord.of(samples[0].metainfo)
    assert set(prompts) == {1, 2}
    for c, record in prompts.items():
        assert isinstance(record, PromptRecord)
        assert record.point_coords.shape == (1, 2, 2)
        assert record.point_labels.tolist() == [[1, 0]]
        xy = record.point_coords[0]
        assert (xy[:, 0] >= 0).all() and (xy[:, 0] < 80).all()
        assert (xy[:, 1] >= 0).all() and (xy[:, 1] < 64).all()
        np.testing.assert_array_equal(record.point_coords,
                                      recorded[c].prompts.point_coords.numpy())
        assert 'iou_prediction' in record.info
    assert samples[0].metainfo['predict_seconds'] > 0


def test_predict_fills_seg_logits_like_mmseg(tiny_sam, folder_task):
    """pred_sem_seg is the argmax of seg_logits (background 0, each class its logits)."""
    import torch
    from conftest import REPO_ROOT
    from mmengine.config import Config
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'persam', 'persam_sam-tiny_mni152-wm.py'))
    model = MODELS.build(cfg.model).eval()
    model.begin_run()
    import cv2
    img = cv2.imread(osp.join(folder_task, 'images', 't1.png'))[..., ::-1].copy()
    from mmseg_medpersam.datasets import LoadOneShotImage
    meta = dict(img_path=osp.join(folder_task, 'images', 't1.png'), img_shape=img.shape[:2],
                ori_shape=img.shape[:2], num_classes=2,
                references=OneShotReferences((ReferenceFile(
                    osp.join(folder_task, 'images', 'ref.png'),
                    osp.join(folder_task, 'masks', 'ref.png')), )))
    meta['references'] = LoadOneShotImage().load_references(meta)
    inputs = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        (out, ) = model.predict(inputs, [SegDataSample(metainfo=meta)])
    assert out.seg_logits.data.shape == (2, 64, 80)
    assert torch.equal(out.seg_logits.data.argmax(0), out.pred_sem_seg.data[0])
    assert model.extract_feat(inputs)[0].shape == (1, 256, 64, 64)
    warp_cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'medpersam',
                                        'warp-only_mni152-wm.py'))
    assert MODELS.build(warp_cfg.model).extract_feat(inputs) == []  # no SAM: no features


def test_the_model_reads_no_file(folder_task, tmp_path):
    """Given the reference's pixels in the sample, the model segments with every file gone."""
    import shutil

    import cv2
    from mmengine.config import Config
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample

    from mmseg_medpersam.datasets import LoadOneShotImage
    root = str(tmp_path / 'gone')
    shutil.copytree(folder_task, root)
    meta = dict(img_path=osp.join(root, 'images', 't1.png'), num_classes=2,
                references=OneShotReferences((ReferenceFile(
                    osp.join(root, 'images', 'ref.png'), osp.join(root, 'masks', 'ref.png')), )))
    meta['references'] = LoadOneShotImage().load_references(meta)
    img = cv2.imread(meta['img_path'])[..., ::-1].copy()
    shutil.rmtree(root)
    meta.update(img_shape=img.shape[:2], ori_shape=img.shape[:2])
    model = MODELS.build(Config.fromfile(TINY_CONFIG).model).eval()
    model.begin_run()
    inputs = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        (out, ) = model.predict(inputs, [SegDataSample(metainfo=meta)])
    assert out.pred_sem_seg.data.shape == (1, 64, 80)


def test_no_method_is_handed_a_target_label(multiclass_run, folder_task):
    """test_step strips gt_sem_seg before predict (the evaluator still gets it back); only a
    segmentor that says so in its type (the oracle) reads target labels."""
    from mmengine.dataset import pseudo_collate
    from mmseg.registry import DATASETS

    from mmseg_medpersam.segmentors import (
        OneShotSAMSegmentor,
        OneShotSegmentorBase,
        OracleBoxSegmentor,
    )
    _, _, model = multiclass_run
    cfg = Config.fromfile(TINY_CONFIG)
    cfg.merge_from_dict(folder_options(folder_task))
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = DATASETS.build(cfg.test_dataloader.dataset)
    batch = pseudo_collate([dataset[0]])
    assert 'gt_sem_seg' in batch['data_samples'][0]  # the pipeline packs it, for the metric
    seen = []
    real = model.predict

    def spy(inputs, samples):
        seen.extend('gt_sem_seg' in s for s in samples)
        return real(inputs, samples)

    model.predict = spy
    try:
        model.begin_run()
        with torch.no_grad():
            (out, ) = model.test_step(batch)
    finally:
        del model.predict
    assert seen == [False]
    assert torch.equal(out.gt_sem_seg.data, batch['data_samples'][0].gt_sem_seg.data)
    readers = [cls for cls in (OneShotSAMSegmentor, OracleBoxSegmentor)
               if cls.reads_target_labels]
    assert readers == [OracleBoxSegmentor] and issubclass(OracleBoxSegmentor,
                                                           OneShotSegmentorBase)


def test_one_rule_crops_the_batch_padding():
    """A target padded into a batch is cropped back to its img_shape by every stage (one
    helper); a tensor with no img_shape is its own size."""
    from mmseg_medpersam.utils.padding import crop_padding, image_size
    padded = torch.zeros(3, 40, 50)
    padded[:, :30, :20] = 1
    assert image_size(padded, dict(img_shape=(30, 20))) == (30, 20)
    assert crop_padding(padded, dict(img_shape=(30, 20))).shape == (3, 30, 20)
    assert bool(crop_padding(padded, dict(img_shape=(30, 20))).all())
    assert crop_padding(padded, {}).shape == (3, 40, 50)
