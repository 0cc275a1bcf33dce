"""Bad inputs and settings a new user meets: each fails with one clear line, nothing is lost."""
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from conftest import (
    REPO_ROOT,
    TINY_CONFIG,
    fast_warp,
    folder_options,
    load_tool,
    make_folder_task,
    write_png,
)

from mmseg_medpersam.datasets.loading import load_image
from mmseg_medpersam.structures.errors import OneShotDataError

MEDPERSAM_TINY = osp.join(REPO_ROOT, 'configs', 'medpersam', 'medpersam_sam-tiny_mni152-wm.py')
FAST_WARP = fast_warp(20, retrain_iters=10)


# --------------------------------------------------------------------------- targets
@pytest.mark.parametrize('shape', [(1, 1), (1, 80)])
def test_a_one_pixel_high_target_is_skipped_by_name_and_the_others_scored(
        tmp_path, run_tool, capsys, shape):
    root = make_folder_task(str(tmp_path / 'task'), stems=('ref', 't1', 't2'))
    write_png(osp.join(root, 'images', 'thin.png'), np.full(shape, 90, np.uint8))
    write_png(osp.join(root, 'masks', 'thin.png'), np.ones(shape, np.uint8))
    code, out = run_tool(cfg_options=folder_options(root))
    assert code == 3
    report = json.load(open(out))
    assert [e['img'] for e in report['per_image']] == ['t1.png', 't2.png']
    assert len(report['skipped']) == 1 and 'thin.png' in report['skipped'][0]
    assert 'too small' in report['skipped'][0]
    assert 'thin.png' in capsys.readouterr().err


def test_tiny_images_are_refused_when_read(tmp_path):
    path = write_png(str(tmp_path / 'one.png'), np.zeros((1, 5), np.uint8))
    with pytest.raises(OneShotDataError, match=r'one.png: an image of 1x5 pixels is too small'):
        load_image(path)


# --------------------------------------------------------------------------- settings
@pytest.mark.parametrize('config, options, message', [
    (MEDPERSAM_TINY, {'model.head.num_iters': -1},
     'MedPerSAMHead: num_iters must be an integer >= 1, got -1'),
    (TINY_CONFIG, {'model.head.num_refinements': -1},
     'PerSAMHead: num_refinements must be an integer >= 0, got -1'),
    (TINY_CONFIG, {'model.head.num_refinements': 'abc'},
     "PerSAMHead: num_refinements must be an integer >= 0, got 'abc'"),
    (TINY_CONFIG, {'model.head.location_prior.type': 'NoSuchPrompt'},
     'NoSuchPrompt is not in the'),
    (TINY_CONFIG, {'model.sam.arch': 'vit_q'}, "unknown SAM arch 'vit_q'"),
    (TINY_CONFIG, {'test_dataloader.dataset.type': 'NoSuchDataset'},
     'NoSuchDataset is not in the'),
])
def test_invalid_settings_stop_before_any_image_with_one_line(tmp_path, folder_task, run_tool,
                                                              capsys, config, options, message):
    code, out = run_tool(config, dict(folder_options(folder_task), **options))
    err = capsys.readouterr().err
    assert code == 4, err
    lines = [line for line in err.splitlines() if line.startswith('error: ')]
    assert len(lines) == 1 and message in lines[0], err
    assert not osp.exists(out)


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a machine without a GPU')
def test_cuda_device_without_a_gpu(folder_task, run_tool, capsys):
    code, _ = run_tool(cfg_options=folder_options(folder_task), extra=['--device', 'cuda'])
    assert code == 4
    assert 'no CUDA device on this machine; use --device cpu' in capsys.readouterr().err


def test_mni152_config_pointed_at_a_user_folder_writes_nothing_there(tmp_path, folder_task,
                                                                     run_tool, capsys):
    before = sorted(os.listdir(folder_task))
    code, out = run_tool(cfg_options={'test_dataloader.dataset.data_root': folder_task})
    assert code == 3 and not osp.exists(out)
    assert 'holds other data' in capsys.readouterr().err
    assert sorted(os.listdir(folder_task)) == before


def test_cfg_options_keep_spaces_in_paths(test_tool, tmp_path):
    args = test_tool.parse_args([TINY_CONFIG, '--cfg-options',
                                 'test_dataloader.dataset.data_root=/data/my scans/task 1',
                                 'model.head.num_refinements=1'])
    cfg = test_tool.build_config(args)
    assert cfg.test_dataloader.dataset.data_root == '/data/my scans/task 1'
    assert cfg.model.head.num_refinements == 1


# --------------------------------------------------------------------------- ground truth
def test_predictions_never_depend_on_the_target_masks(tmp_path, run_tool):
    """Inverting every target's mask leaves every prediction identical (methods are blind)."""
    root = make_folder_task(str(tmp_path / 'task'), stems=('ref', 't1', 't2'))
    for config, options in ((TINY_CONFIG, {}), (MEDPERSAM_TINY, FAST_WARP)):
        masks = []
        for run in range(2):
            if run == 1:
                for stem in ('t1', 't2'):
                    path = osp.join(root, 'masks', stem + '.png')
                    cv2.imwrite(path, (1 - cv2.imread(path, cv2.IMREAD_UNCHANGED)))
            out_dir = str(tmp_path / f'pred_{osp.basename(config)}_{run}')
            code, _ = run_tool(config, dict(folder_options(root), **options),
                               extra=['--out-masks', out_dir])
            assert code == 0
            masks.append([cv2.imread(osp.join(out_dir, s + '.png'), cv2.IMREAD_UNCHANGED)
                          for s in ('t1', 't2')])
        for a, b in zip(*masks):
            assert a is not None and np.array_equal(a, b)
        for stem in ('t1', 't2'):  # restore for the next method
            path = osp.join(root, 'masks', stem + '.png')
            cv2.imwrite(path, (1 - cv2.imread(path, cv2.IMREAD_UNCHANGED)))


def test_target_mask_paths_are_not_given_to_the_model():
    from mmseg_medpersam.datasets.transforms import ONE_SHOT_META_KEYS
    assert 'seg_map_path' not in ONE_SHOT_META_KEYS


# --------------------------------------------------------------------------- retraining
def test_medpersam_retraining_through_the_test_loop_is_reported(tmp_path, run_tool):
    """With SAM trusted (no guard), refined masks retrain the warp; the report says so."""
    root = make_folder_task(str(tmp_path / 'task'), stems=('ref', 't1', 't2', 't3'))
    options = dict(folder_options(root), **FAST_WARP)
    options.update({'model.head.min_sam_agreement': 0, 'model.head.pseudo_min_dice': 0})
    code, out = run_tool(MEDPERSAM_TINY, options)
    assert code == 0
    fit = json.load(open(out))['transductive']
    (ref_log, ) = fit['references'].values()  # per reference, Med-PerSAM's own log
    (round1, ) = ref_log['rounds']
    assert round1['retrain_skipped'] is False and round1['pseudo_labels_used'] == 3
    assert fit['seconds'] > 0 and ref_log['seconds'] > 0
    # With the former fixed guard and a random SAM, nothing is refined: the round is skipped.
    code, out = run_tool(MEDPERSAM_TINY, dict(folder_options(root), **FAST_WARP,
                                              **{'model.head.min_sam_agreement': 0.95}))
    (ref_log, ) = json.load(open(out))['transductive']['references'].values()
    (round1, ) = ref_log['rounds']
    assert round1 == {'retrain_skipped': True, 'pseudo_label_candidates': 0,
                      'pseudo_labels_used': 0}
    # Self-calibrated (the default): a random SAM loses to the warp on the augmented copies of
    # the reference, so SAM is not used and nothing is retrained; the report says why.
    code, out = run_tool(MEDPERSAM_TINY, dict(folder_options(root), **FAST_WARP))
    report = json.load(open(out))
    (ref_log, ) = report['transductive']['references'].values()
    assert ref_log['calibration']['choice'] == 'warp only' and ref_log['rounds'] == []
    assert ref_log['calibration']['options'] and ref_log['calibration']['cases'] == 6


def test_warping_fit_logs_progress(monkeypatch):
    from mmseg_medpersam.methods.medpersam.warping import WarpingModel
    from mmseg_medpersam.methods.medpersam.warping import fitter as module
    logged = []
    monkeypatch.setattr(module, 'print_log', lambda msg, **kwargs: logged.append(msg))
    model = WarpingModel(schedule=dict(iters=20), network=dict(work_size=(32, 32)))
    model.fit(torch.rand(32, 32) * 255, torch.rand(32, 32) > 0.5, [torch.rand(32, 32) * 255])
    lines = [m for m in logged if 'warping fit' in m]
    assert len(lines) == 10 and lines[-1].startswith('warping fit 20/20: loss ')


# --------------------------------------------------------------------------- infer.py
def _infer(args):
    return load_tool('infer').main([TINY_CONFIG] + [str(a) for a in args])


def test_infer_keeps_inputs_of_the_same_name_apart(tmp_path):
    root = make_folder_task(str(tmp_path / 'task'), stems=('ref', 't1', 't2'))
    for folder in ('a', 'b'):
        os.makedirs(tmp_path / folder)
        img = cv2.imread(osp.join(root, 'images', 't2.png'))
        cv2.imwrite(str(tmp_path / folder / 't2.png'), img if folder == 'a' else img[::-1])
    out = tmp_path / 'out'
    code = _infer(['--reference', osp.join(root, 'images', 'ref.png'),
                   '--reference-mask', osp.join(root, 'masks', 'ref.png'),
                   '--images', tmp_path / 'a' / 't2.png', tmp_path / 'b' / 't2.png',
                   osp.join(root, 'images', 't1.png'), '--out-dir', out])
    assert code == 0
    summary = json.load(open(out / 'summary.json'))
    names = [t['name'] for t in summary['targets']]
    assert sorted(names) == ['a_t2', 'b_t2', 't1'] and len(os.listdir(out / 'masks')) == 3


def test_infer_without_images_is_an_error(tmp_path, capsys):
    root = make_folder_task(str(tmp_path / 'task'))
    (tmp_path / 'empty').mkdir()
    code = _infer(['--reference', osp.join(root, 'images', 'ref.png'),
                   '--reference-mask', osp.join(root, 'masks', 'ref.png'),
                   '--images', tmp_path / 'empty', '--out-dir', tmp_path / 'out'])
    assert code == 3
    err = capsys.readouterr().err
    assert 'no image to segment' in err and 'no image files in this folder' in err


@pytest.fixture
def volume_task(tmp_path):
    """A 40x48x6 image volume with a moving bright blob, its label volume, a non-eye affine."""
    import nibabel as nib
    img = np.full((40, 48, 6), 30, np.uint8)
    seg = np.zeros((40, 48, 6), np.uint8)
    xx, yy = np.mgrid[0:40, 0:48]
    for z in range(6):
        blob = ((xx - 18 - z) / 9.0) ** 2 + ((yy - 22) / 12.0) ** 2 <= 1
        img[..., z][blob] = 200
        seg[..., z][blob] = 1
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    affine[:3, 3] = [-10, 5, 30]
    nib.save(nib.Nifti1Image(img, affine), str(tmp_path / 'vol.nii.gz'))
    nib.save(nib.Nifti1Image(seg, affine), str(tmp_path / 'lab.nii.gz'))
    return tmp_path, affine, seg


def test_infer_writes_a_label_volume_and_resumes(volume_task):
    import nibabel as nib
    root, affine, seg = volume_task
    out = root / 'out'
    args = ['--reference', f'{root}/vol.nii.gz#2', '--reference-mask', f'{root}/lab.nii.gz#2',
            '--images', root / 'vol.nii.gz', '--out-dir', out]
    assert _infer(args) == 0
    vol = nib.load(str(out / 'volumes' / 'vol_seg.nii.gz'))
    assert vol.shape == (40, 48, 6) and np.allclose(vol.affine, affine)
    labels = np.asarray(vol.dataobj)
    assert np.array_equal(labels[..., 2], seg[..., 2])  # the reference slice: its own labels
    assert set(np.unique(labels)) <= {0, 1} and labels.sum() > 0
    summary = json.load(open(out / 'summary.json'))
    assert [t['slice'] for t in summary['targets']] == [0, 1, 3, 4, 5]
    # Interrupted after two targets: resume completes it with the same files and summary.
    first = {f: cv2.imread(str(out / 'masks' / f), cv2.IMREAD_UNCHANGED)
             for f in os.listdir(out / 'masks')}
    for t in summary['targets'][2:]:
        os.remove(out / t['mask'])
    os.remove(out / 'volumes' / 'vol_seg.nii.gz')
    assert _infer(args + ['--resume']) == 0
    assert json.load(open(out / 'summary.json')) == summary
    for f, mask in first.items():
        assert np.array_equal(cv2.imread(str(out / 'masks' / f), cv2.IMREAD_UNCHANGED), mask)
    assert np.array_equal(np.asarray(nib.load(str(out / 'volumes' / 'vol_seg.nii.gz')).dataobj),
                          labels)


def test_volume_slices_out_of_range_and_4d_volumes(volume_task, tmp_path):
    import nibabel as nib
    root, _, _ = volume_task
    with pytest.raises(OneShotDataError, match=r'slice 6 is outside the volume: axis 2 has '
                                               r'slices 0..5 \(shape \(40, 48, 6\)\)'):
        load_image(str(root / 'vol.nii.gz'), 6)
    nib.save(nib.Nifti1Image(np.zeros((10, 12, 4, 3), np.uint8), np.eye(4)),
             str(tmp_path / 'fmri.nii.gz'))
    with pytest.raises(OneShotDataError, match=r'a 4D volume \(shape \(10, 12, 4, 3\)\)'):
        load_image(str(tmp_path / 'fmri.nii.gz'), 1)
    code = _infer(['--reference', f'{root}/vol.nii.gz#2', '--reference-mask',
                   f'{root}/lab.nii.gz#2', '--images', f'{root}/vol.nii.gz#-1',
                   '--out-dir', tmp_path / 'o'])
    assert code == 3  # '#-1' is not a slice


def test_garbage_checkpoint_message_gives_no_unsafe_advice(tmp_path):
    from mmseg_medpersam.sam import CheckpointError, read_checkpoint
    path = tmp_path / 'weights.pth'
    path.write_bytes(b'PK\x03\x04 not a torch zip at all')
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(str(path))
    assert str(err.value).startswith(str(path)) and 'weights_only' not in str(err.value)


def test_pickled_objects_are_refused_without_advice_to_unpickle(tmp_path):
    import collections

    from mmseg_medpersam.sam import CheckpointError, read_checkpoint
    path = str(tmp_path / 'objects.pth')
    torch.save({'state_dict': collections.Counter(a=1)}, path)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    message = str(err.value)
    assert message.startswith(path) and 'weights_only' not in message


def test_a_reference_of_many_small_objects_runs_through_medpersam(tmp_path):
    """25 equal small objects (cells, nuclei, lesions): no piece reaches BoxPrompt's
    ``min_component_fraction``; Med-PerSAM's default config still segments every target."""
    yy, xx = np.mgrid[0:100, 0:100]
    paths = []
    for i in range(3):
        img = np.full((100, 100), 40, np.uint8)
        lab = np.zeros((100, 100), np.uint8)
        for cy in range(10, 100, 20):
            for cx in range(10, 100, 20):
                blob = (yy - cy - i) ** 2 + (xx - cx - i) ** 2 <= 16
                img[blob], lab[blob] = 200, 1
        paths.append((write_png(str(tmp_path / f'img{i}.png'), img),
                      write_png(str(tmp_path / f'lab{i}.png'), lab)))
    out = tmp_path / 'out'
    code = load_tool('infer').main([
        MEDPERSAM_TINY, '--reference', paths[0][0], '--reference-mask', paths[0][1],
        '--images', paths[1][0], paths[2][0], '--out-dir', str(out), '--cfg-options',
        *[f'{k}={v}' for k, v in FAST_WARP.items()]])
    assert code == 0
    summary = json.load(open(out / 'summary.json'))
    assert [t['name'] for t in summary['targets']] == ['img1', 'img2']
    assert all(t['foreground_pixels'] > 0 for t in summary['targets'])
