"""Volume propagation: labelled slices carried outward slice by slice, collapses stopped."""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, as_cli, fast_warp, load_tool

from mmseg_medpersam.methods.base import HeadResult
from mmseg_medpersam.segmentors.propagation import area_change, propagate, propagation_plan
from mmseg_medpersam.structures.errors import OneShotDataError

WARP_ONLY = osp.join(REPO_ROOT, 'configs', 'medpersam', 'warp-only_mni152-wm.py')
FAST = as_cli(fast_warp(warm_start_iters=5))


def test_plan_takes_each_slice_from_its_neighbour_towards_the_nearest_labelled_slice():
    plan = propagation_plan(range(10), [3])
    assert plan[:3] == [(2, 3, 3), (4, 3, 3), (1, 2, 3)]
    assert dict((z, src) for z, src, _ in plan) == {0: 1, 1: 2, 2: 3, 4: 3, 5: 4, 6: 5, 7: 6,
                                                    8: 7, 9: 8}
    # A gap bounded by two labelled slices is filled from both ends (a tie: the lower one).
    bounded = {z: (src, anchor) for z, src, anchor in propagation_plan(range(2, 9), [2, 8])}
    assert bounded == {3: (2, 2), 4: (3, 2), 5: (4, 2), 6: (7, 8), 7: (8, 8)}
    # Sparse slices: the neighbour among the given slices.
    assert propagation_plan([0, 2, 4, 6], [2]) == [(0, 2, 2), (4, 2, 2), (6, 4, 2)]
    with pytest.raises(ValueError, match='labelled'):
        propagation_plan(range(3), [])


def _square(z: int, side: int, size: int = 32) -> np.ndarray:
    labels = np.zeros((size, size), np.uint8)
    labels[4:4 + side, 4:4 + side] = 1
    return labels


def _scripted(areas: dict):
    """A fake method: slice z comes out as a square of side ``areas[z]``; records its calls."""
    calls = []

    def segment(image, meta, reference, init):
        z = meta['slice_index']
        calls.append(dict(z=z, source=reference.files[0].slice_index, init=init))
        logits = torch.from_numpy(_square(z, areas[z]).astype(np.float32)) * 2 - 1
        return {1: HeadResult(logits)}, f'fit of {z}'

    def merge(results, size):
        return (results[1].logits > 0).long()

    return segment, merge, calls


def test_each_step_takes_its_neighbours_result_and_fit():
    areas = {z: 10 for z in range(6)}
    segment, merge, calls = _scripted(areas)
    images = {z: torch.zeros(3, 32, 32) for z in range(6) if z != 2}
    metas = {z: dict(img_path='vol.nii.gz', slice_index=z) for z in images}
    labelled = {2: (np.zeros((32, 32, 3), np.uint8), _square(2, 10))}
    out = propagate(segment, merge, images, metas, labelled)
    assert [r.status for r in out.values()] == ['segmented'] * 2 + ['labelled'] + [
        'segmented'] * 3
    by_z = {c['z']: c for c in calls}
    assert by_z[1]['source'] == 2 and by_z[0]['source'] == 1 and by_z[5]['source'] == 4
    assert by_z[1]['init'] is None and by_z[3]['init'] is None  # from the labelled slice
    assert by_z[0]['init'] == 'fit of 1' and by_z[5]['init'] == 'fit of 4'  # handed on


def test_a_collapse_stops_its_chain_and_only_its_chain():
    areas = {0: 10, 1: 10, 3: 10, 4: 3, 5: 10, 6: 10}  # slice 4: area 9 against 100
    segment, merge, calls = _scripted(areas)
    images = {z: torch.zeros(3, 32, 32) for z in areas}
    metas = {z: dict(img_path='vol.nii.gz', slice_index=z) for z in images}
    out = propagate(segment, merge, images, metas,
                    {2: (np.zeros((32, 32, 3), np.uint8), _square(2, 10))}, max_area_change=0.5)
    status = {z: r.status for z, r in out.items()}
    assert status == {0: 'segmented', 1: 'segmented', 2: 'labelled', 3: 'segmented',
                      4: 'stopped', 5: 'not reached', 6: 'not reached'}
    assert out[4].area_change == pytest.approx(0.91) and not out[4].labels.any()
    assert not out[5].labels.any() and 5 not in {c['z'] for c in calls}  # never segmented
    # Within the bound nothing stops; an empty result always does.
    assert area_change(_square(0, 10), _square(0, 9)) == pytest.approx(19 / 81)
    areas[4] = 0
    out = propagate(*_scripted(areas)[:2], images, metas,
                    {2: (np.zeros((32, 32, 3), np.uint8), _square(2, 10))}, max_area_change=5)
    assert out[4].status == 'stopped'


def _volume(tmp_path, depth: int = 7):
    """A RAS volume whose blob drifts one voxel per slice, and its label volume."""
    import nibabel as nib
    img = np.full((40, 48, depth), 30, np.uint8)
    seg = np.zeros((40, 48, depth), np.uint8)
    xx, yy = np.mgrid[0:40, 0:48]
    for z in range(depth):
        blob = ((xx - 14 - z) / 8.0) ** 2 + ((yy - 24) / 10.0) ** 2 <= 1
        img[..., z][blob] = 200
        seg[..., z][blob] = 1
    affine = np.diag([0.9, 0.8, 2.0, 1.0])
    affine[:3, 3] = [-20, 10, 5]
    nib.save(nib.Nifti1Image(img, affine), str(tmp_path / 'vol.nii.gz'))
    nib.save(nib.Nifti1Image(seg, affine), str(tmp_path / 'lab.nii.gz'))
    return tmp_path


def test_infer_propagate_writes_one_label_volume_with_the_input_geometry(tmp_path):
    import nibabel as nib
    root = _volume(tmp_path)
    out = root / 'out'
    code = load_tool('infer').main([
        WARP_ONLY, '--reference', f'{root}/vol.nii.gz#3', '--reference-mask',
        f'{root}/lab.nii.gz#3', '--images', str(root / 'vol.nii.gz'), '--out-dir', str(out),
        '--propagate', '--cfg-options', *FAST])
    assert code == 0
    written = nib.load(str(out / 'volumes' / 'vol_seg.nii.gz'))
    source = nib.load(str(root / 'vol.nii.gz'))
    assert written.shape == source.shape and np.allclose(written.affine, source.affine)
    labels = np.asarray(written.dataobj)
    truth = np.asarray(nib.load(str(root / 'lab.nii.gz')).dataobj)
    assert np.array_equal(labels[..., 3], truth[..., 3])  # the labelled slice as given
    for z in range(7):
        inter = np.logical_and(labels[..., z], truth[..., z]).sum()
        assert 2 * inter / (labels[..., z].sum() + truth[..., z].sum()) > 0.8, z
    summary = json.load(open(out / 'summary.json'))
    assert {t['propagation'] for t in summary['targets']} == {'segmented'}
    (entry, ) = summary['propagation'].values()
    assert entry['labelled'] == [3] and entry['segmented'] == 6 and entry['stopped'] == []


def test_infer_propagate_refuses_inputs_it_cannot_propagate(tmp_path, capsys):
    root = _volume(tmp_path)
    from conftest import make_folder_task
    task = make_folder_task(str(tmp_path / 'task'))
    code = load_tool('infer').main([
        WARP_ONLY, '--reference', f'{root}/vol.nii.gz#3', '--reference-mask',
        f'{root}/lab.nii.gz#3', '--images', osp.join(task, 'images', 't1.png'),
        '--out-dir', str(tmp_path / 'out'), '--propagate', '--cfg-options', *FAST])
    assert code == 4 and 't1.png: not a volume' in capsys.readouterr().err
    code = load_tool('infer').main([
        WARP_ONLY, '--reference', f'{root}/vol.nii.gz#3', '--reference', f'{root}/vol.nii.gz#4',
        '--reference-mask', f'{root}/lab.nii.gz#3', '--images', str(root / 'vol.nii.gz'),
        '--out-dir', str(tmp_path / 'out2')])
    assert code == 4 and 'one label map per reference' in capsys.readouterr().err


def test_test_py_propagates_a_nifti_slice_dataset(run_tool, tmp_path):
    root = _volume(tmp_path)
    config = tmp_path / 'propagate.py'
    dataset = dict(_delete_=True, type='NiftiSliceDataset',
                   volumes=[dict(img=f'{root}/vol.nii.gz', seg=f'{root}/lab.nii.gz')],
                   reference=dict(volume=0, slice=[1, 5]),
                   pipeline=[dict(type='LoadOneShotImage'), dict(type='LoadOneShotAnnotations'),
                             dict(type='PackOneShotInputs')])
    # Propagation is an inference mode of the test loop, not a property of the data.
    config.write_text(f'_base_ = [{WARP_ONLY!r}]\ntest_dataloader = dict(dataset={dataset!r})\n'
                      'test_cfg = dict(propagate=True)\n')
    options = dict(o.split('=') for o in FAST)
    code, out = run_tool(str(config), options)
    assert code == 0
    report = json.load(open(out))
    assert sorted(e['img'] for e in report['per_image']) == [
        f'vol.nii.gz#{z}' for z in (0, 2, 3, 4, 6)]
    assert all(e['dice'] > 0.8 for e in report['per_image'])
    (entry, ) = report['propagation']['volumes'].values()
    assert entry['labelled'] == [1, 5] and entry['segmented'] == 5
    assert 'transductive' not in report  # no fit over all slices: each from its neighbour


def test_propagation_needs_a_labelled_slice_in_every_volume(tmp_path):
    from mmseg_medpersam.datasets import NiftiSliceDataset
    root = _volume(tmp_path)
    vols = [dict(img='vol.nii.gz', seg='lab.nii.gz')] * 2
    with pytest.raises(OneShotDataError, match=r'volumes \[1\] have no labelled slice'):
        NiftiSliceDataset(volumes=vols, reference=dict(volume=0, slice=2), propagate=True,
                          data_root=str(root), pipeline=[])
    with pytest.raises(ValueError, match='max_area_change'):
        NiftiSliceDataset(volumes=vols[:1], reference=dict(slice=2), propagate=True,
                          max_area_change=0, data_root=str(root), pipeline=[])


def test_med_persam_warm_starts_from_the_neighbours_fit():
    from mmseg_medpersam.methods import MedPerSAMHead
    from mmseg_medpersam.methods.base import TargetImage
    from mmseg_medpersam.prompts import ReferenceContext
    yy, xx = np.mgrid[0:40, 0:48]

    def pair(shift):
        mask = torch.from_numpy(((yy - 20) / 9.0) ** 2 + ((xx - 20 - shift) / 11.0) ** 2 <= 1)
        return (mask.float() * 150 + 40).expand(3, 40, 48).clone(), mask

    image, mask = pair(0)
    view = [{1: ReferenceContext(image, mask, None, key='r', label_map=mask.long())}]
    head = MedPerSAMHead(use_sam=False, warping=dict(
        type='WarpingModel', schedule=dict(iters=12, warm_start_iters=4),
        network=dict(work_size=(32, 32))))
    first = head.fit(None, view, [TargetImage(pair(1)[0], 't1')])
    before = [p.clone() for p in first.warper.parameters()]
    second = head.fit(None, view, [TargetImage(pair(2)[0], 't2')], init=first)
    assert first.log['warm_start'] is False and first.log['fit']['iters'] == 12
    assert second.log['warm_start'] is True and second.log['fit']['iters'] == 4
    assert second.warper is not first.warper
    assert all(torch.equal(a, b) for a, b in zip(before, first.warper.parameters()))
    moved = any(not torch.equal(a, b) for a, b in zip(before, second.warper.parameters()))
    assert moved  # continued from the neighbour's weights, not refitted from scratch
