"""tools/infer.py: masks and panels for user images from one reference."""
import os.path as osp

import cv2
import numpy as np
import pytest
from conftest import TINY_CONFIG, fast_warp, load_tool, make_folder_task


def load_infer():
    return load_tool('infer')


def test_infer_writes_masks_and_panels_and_reports_bad_files(tmp_path):
    root = make_folder_task(str(tmp_path / 'task'), mask_scale=255)
    out = tmp_path / 'out'
    code = load_infer().main([
        TINY_CONFIG, '--reference', osp.join(root, 'images', 'ref.png'),
        '--reference-mask', osp.join(root, 'masks', 'ref.png'),
        '--images', osp.join(root, 'images', 't1.png'), osp.join(root, 'images', 't2.png'),
        str(tmp_path / 'missing.png'), '--out-dir', str(out), '--binary-255'])
    assert code == 3  # one unreadable image, named; the others are written
    for stem in ('t1', 't2'):
        mask = cv2.imread(str(out / 'masks' / f'{stem}.png'), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (64, 80) and set(np.unique(mask)) <= {0, 255}
        panel = cv2.imread(str(out / 'panels' / f'{stem}.png'))
        assert panel.shape[0] > 64 and panel.shape[1] > 2 * 80  # reference | target, upscaled


def test_infer_rejects_an_empty_reference(tmp_path, capsys):
    root = make_folder_task(str(tmp_path / 'task'))
    empty = tmp_path / 'empty.png'
    cv2.imwrite(str(empty), np.zeros((64, 80), np.uint8))
    code = load_infer().main([
        TINY_CONFIG, '--reference', osp.join(root, 'images', 'ref.png'),
        '--reference-mask', str(empty), '--images', osp.join(root, 'images', 't1.png'),
        '--out-dir', str(tmp_path / 'out')])
    assert code == 3
    err = capsys.readouterr().err
    assert str(empty) in err and 'empty' in err
    assert not (tmp_path / 'out').exists()  # stopped before any target


def test_inferencer_api_fits_once_and_predicts_each_target(folder_task):
    """The API under tools/infer.py: reference -> fit on the targets -> one prediction each."""
    import os.path as osp

    from conftest import REPO_ROOT

    from mmseg_medpersam.apis import OneShotInferencer
    config = osp.join(REPO_ROOT, 'configs', 'medpersam', 'warp-only_mni152-wm.py')
    inferencer = OneShotInferencer(config, device='cpu', cfg_options=fast_warp(20))
    inferencer.set_reference(osp.join(folder_task, 'images', 'ref.png'),
                             osp.join(folder_task, 'masks', 'ref.png'))
    targets = [inferencer.load(osp.join(folder_task, 'images', f'{s}.png')) for s in ('t1', 't2')]
    log = inferencer.fit(targets)
    (ref_log, ) = log.values()
    assert ref_log['fit']['iters'] == 20
    for target in targets:
        pred = inferencer.segment(target)
        assert pred.labels.shape == target.image.shape[:2] and pred.labels.max() <= 1
    assert inferencer.method_name == 'Warp only'


def test_the_notebook_api_takes_arrays_and_lists_and_returns_seg_data_samples(folder_task):
    """References and targets as arrays of any dtype, (H, W) or (H, W, 3), a list in, mmseg's
    SegDataSample out with the typed Prediction reachable; the same masks as from files."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    from mmseg_medpersam.apis import OneShotInferencer
    from mmseg_medpersam.structures import OneShotDataError
    inferencer = OneShotInferencer(TINY_CONFIG, device='cpu')
    read = lambda kind, n: cv2.imread(osp.join(folder_task, kind, f'{n}.png'),  # noqa: E731
                                      cv2.IMREAD_UNCHANGED)
    inferencer.set_reference(osp.join(folder_task, 'images', 'ref.png'),
                             osp.join(folder_task, 'masks', 'ref.png'))
    from_files = [inferencer(osp.join(folder_task, 'images', f'{n}.png')) for n in ('t1', 't2')]
    inferencer.set_reference(read('images', 'ref')[..., 0], read('masks', 'ref') * 255)
    arrays = [read('images', 't1')[..., 0], read('images', 't2')]  # (H, W) and (H, W, 3)
    samples = inferencer(arrays)
    assert isinstance(samples, list) and len(samples) == 2
    for sample, expected, image in zip(samples, from_files, arrays):
        assert isinstance(sample, SegDataSample) and isinstance(sample.pred_sem_seg, PixelData)
        assert sample.pred_sem_seg.data.shape == (1, ) + image.shape[:2]
        assert np.array_equal(sample.pred_sem_seg.data[0].numpy(),
                              expected.pred_sem_seg.data[0].numpy())
        assert np.array_equal(sample.one_shot.labels, sample.pred_sem_seg.data[0].numpy())
        assert sample.seg_logits.data.shape == (2, ) + image.shape[:2]
    ref16 = read('images', 'ref')[..., 0].astype(np.uint16) * 257  # any dtype: windowed
    inferencer.set_reference(ref16, read('masks', 'ref'))
    (sample, ) = inferencer([read('images', 't1').astype(np.float32) / 255.0])
    assert sample.pred_sem_seg.data.shape == (1, 64, 80)
    with pytest.raises(OneShotDataError, match=r'shape \(4, 5, 6\)'):
        inferencer(np.zeros((4, 5, 6)))
    with pytest.raises(OneShotDataError, match='mask size'):
        inferencer.set_reference(ref16, np.ones((10, 10), np.uint8))
    with pytest.raises(OneShotDataError, match='empty'):
        inferencer.set_reference(ref16, np.zeros(ref16.shape, np.uint8))


def test_the_python_api_doc_example_runs(mni152_root, tmp_path, monkeypatch):
    """docs/python_api.md's notebook example, as written (LiteMedSAM swapped for the tiny SAM
    and the MNI152 folder pointed at the session's copy)."""
    import re
    doc = open(osp.join(osp.dirname(TINY_CONFIG), '..', '..', 'docs', 'python_api.md')).read()
    code = re.findall(r'```python\n(.*?)```', doc, re.S)[0]
    code = code.replace('data/mni152_wm', mni152_root).replace(
        'configs/persam/persam_litemedsam_mni152-wm.py', TINY_CONFIG)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, 'python_api.md', 'exec'), {})
    assert (tmp_path / 'white_matter.png').stat().st_size > 0
