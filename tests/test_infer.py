"""tools/infer.py: masks and panels for user images from one reference."""
import os.path as osp

import cv2
import numpy as np
from conftest import TINY_CONFIG, load_tool, make_folder_task


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
    inferencer = OneShotInferencer(config, device='cpu', cfg_options={
        'model.head.warping.iters': 20, 'model.head.warping.work_long_side': 64})
    inferencer.set_reference(osp.join(folder_task, 'images', 'ref.png'),
                             osp.join(folder_task, 'masks', 'ref.png'))
    targets = [inferencer.load(osp.join(folder_task, 'images', f'{s}.png')) for s in ('t1', 't2')]
    log = inferencer.fit(targets)
    (ref_log, ) = log.values()
    assert ref_log['fit']['iters'] == 20
    for target in targets:
        pred = inferencer(target)
        assert pred.labels.shape == target.image.shape[:2] and pred.labels.max() <= 1
    assert inferencer.method_name == 'Warp only'
