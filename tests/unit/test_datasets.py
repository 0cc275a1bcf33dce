"""One-shot datasets: folders, the embedded MNI152 tasks, NIfTI slices; the one label rule."""
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from conftest import make_folder_task, write_png

from mmseg_medpersam.datasets import (
    LoadOneShotAnnotations,
    LoadOneShotImage,
    MNI152BrainDataset,
    MNI152VentriclesDataset,
    MNI152WhiteMatterDataset,
    NiftiSliceDataset,
    OneShotDataError,
    OneShotFolderDataset,
    load_label_map,
    prepare_embedded_task,
)
from mmseg_medpersam.datasets.mni152 import MNI152_TASKS, prepare_mni152, slice_name
from mmseg_medpersam.structures import OneShotReferences, ReferenceFile

LOAD = [dict(type='LoadOneShotImage'), dict(type='LoadOneShotAnnotations')]


def _folder(root, **kwargs):
    kwargs.setdefault('reference', 'ref')
    kwargs.setdefault('pipeline', LOAD)
    return OneShotFolderDataset(data_root=str(root), **kwargs)


def test_folder_dataset_excludes_reference_and_attaches_it(folder_task):
    ds = _folder(folder_task)
    assert len(ds) == 2
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    assert [osp.basename(i['img_path']) for i in infos] == ['t1.png', 't2.png']
    for info in infos:
        assert info['references'] == OneShotReferences((ReferenceFile(
            img_path=osp.join(folder_task, 'images', 'ref.png'),
            seg_map_path=osp.join(folder_task, 'masks', 'ref.png'), slice_index=None), ))
        assert not info['references'].loaded  # files only: the loader reads them
        assert info['num_classes'] == 2
    sample = ds[0]
    assert sample['img'].shape == (64, 80, 3) and sample['img'].dtype == np.uint8
    refs = OneShotReferences.of(sample)
    assert refs.files[0].img_path.endswith('ref.png') and refs.loaded
    assert len(refs.images) == 1 and refs.images[0].shape == (64, 80, 3)


def test_reference_given_as_pair_stored_elsewhere(tmp_path, folder_task):
    other = make_folder_task(str(tmp_path / 'elsewhere'), stems=('atlas', ))
    ds = _folder(folder_task, reference=dict(img_path=osp.join(other, 'images', 'atlas.png'),
                                             seg_map_path=osp.join(other, 'masks', 'atlas.png')))
    assert len(ds) == 3  # nothing in the folder is the reference
    assert ds.get_data_info(0)['references'].files[0].img_path.endswith('atlas.png')
    with pytest.raises(OneShotDataError, match='seg_map_path'):
        _folder(folder_task, reference=dict(img_path='x.png'))


@pytest.mark.parametrize('scale', [255, 1])
def test_binary_masks_become_0_1(tmp_path, scale):
    root = make_folder_task(str(tmp_path / 'task'), mask_scale=scale)
    raw = np.unique(cv2.imread(osp.join(root, 'masks', 't1.png'), cv2.IMREAD_UNCHANGED))
    assert raw.tolist() == [0, scale]
    gt = _folder(root)[0]['gt_seg_map']
    assert gt.dtype == np.uint8
    assert np.unique(gt).tolist() == [0, 1]


def test_multi_label_masks_keep_their_labels(tmp_path):
    root = make_folder_task(str(tmp_path / 'task'), labels=(1, 2))
    ds = _folder(root, metainfo=dict(classes=('background', 'liver', 'kidney')))
    assert ds.get_data_info(0)['num_classes'] == 3
    assert len(ds.metainfo['palette']) == 3
    assert np.unique(ds[0]['gt_seg_map']).tolist() == [0, 1, 2]
    # The same maps in a two-class task are an error naming the file: the reference's first
    # (it is read with the first target and handed to every sample).
    with pytest.raises(OneShotDataError) as err:
        _folder(root)[0]
    assert str(err.value).startswith(osp.join(root, 'masks', 'ref.png'))
    assert '{2}' in str(err.value)


@pytest.mark.parametrize('values', [(0, 1, 7), (0, 128)])
def test_unknown_label_values_name_the_file(folder_task, values):
    mask = np.zeros((64, 80), np.uint8)
    for i, v in enumerate(values):
        mask[i * 10:(i + 1) * 10] = v
    path = write_png(osp.join(folder_task, 'masks', 't2.png'), mask)
    ds = _folder(folder_task)
    ds[0]  # t1 is fine
    with pytest.raises(OneShotDataError) as err:
        ds[1]
    assert str(err.value).startswith(path + ':')
    assert str(values[-1]) in str(err.value) and 'num_classes=2' in str(err.value)


def test_ground_truth_keeps_255_as_ignore_in_multiclass(tmp_path):
    root = make_folder_task(str(tmp_path / 'task'), labels=(1, 2))
    mask = np.zeros((64, 80), np.uint8)
    mask[:5] = 255
    mask[10:20] = 2
    write_png(osp.join(root, 'masks', 't1.png'), mask)
    gt = _folder(root, metainfo=dict(classes=('bg', 'a', 'b')))[0]['gt_seg_map']
    assert np.unique(gt).tolist() == [0, 2, 255]
    with pytest.raises(OneShotDataError, match='255'):
        load_label_map(osp.join(root, 'masks', 't1.png'), 3, allow_ignore=False)


def test_mask_of_another_size_names_the_file(folder_task):
    path = write_png(osp.join(folder_task, 'masks', 't1.png'), np.zeros((32, 40), np.uint8))
    with pytest.raises(OneShotDataError) as err:
        _folder(folder_task)[0]
    msg = str(err.value)
    assert msg.startswith(path + ':')
    assert '32x40' in msg and '64x80' in msg and 't1.png' in msg


def test_unreadable_image_names_the_file(folder_task):
    path = osp.join(folder_task, 'images', 't2.png')
    with open(path, 'w') as f:
        f.write('not an image\n')
    ds = _folder(folder_task)
    with pytest.raises(OneShotDataError) as err:
        ds[1]
    assert str(err.value).startswith(path + ': cannot read')


def test_16bit_png_is_windowed_to_uint8(folder_task):
    img16 = np.full((64, 80), 1000, np.uint16)
    img16[:, 40:] = 40000
    write_png(osp.join(folder_task, 'images', 't1.png'), img16)
    assert cv2.imread(osp.join(folder_task, 'images', 't1.png'), -1).dtype == np.uint16
    img = _folder(folder_task)[0]['img']
    assert img.dtype == np.uint8 and img.shape == (64, 80, 3)
    assert (img[:, :40] == 0).all() and (img[:, 40:] == 255).all()
    window = LoadOneShotImage(window=(0, 80000))
    out = window.transform(dict(img_path=osp.join(folder_task, 'images', 't1.png'),
                                **_reference(folder_task)))
    assert out['img'][0, 0, 0] == 3 and out['img'][0, 79, 0] == 128
    assert out['ori_shape'] == (64, 80)


def test_folder_dataset_errors(tmp_path, folder_task):
    with pytest.raises(OneShotDataError, match='reference file not found'):
        _folder(folder_task, reference='nope')
    with pytest.raises(OneShotDataError, match='image folder not found'):
        _folder(tmp_path / 'empty')
    only_ref = make_folder_task(str(tmp_path / 'only'), stems=('ref', ))
    with pytest.raises(OneShotDataError, match='no images to segment'):
        _folder(only_ref)
    os.remove(osp.join(folder_task, 'masks', 't2.png'))
    with pytest.raises(OneShotDataError, match='t2.png: mask not found'):
        _folder(folder_task)


def test_mni152_dataset_only_reads(tmp_path):
    """The constructor writes nothing: an unwritten task is an error naming the way to write it;
    the one explicit call (``prepare_embedded_task``) writes it, a second call only checks."""
    root = str(tmp_path / 'mni152_wm')
    cfg = dict(type='MNI152WhiteMatterDataset', data_root=root, pipeline=LOAD)
    with pytest.raises(OneShotDataError, match='not written there yet.*prepare_data.py'):
        MNI152WhiteMatterDataset(data_root=root, pipeline=LOAD)
    assert not osp.exists(root)
    assert prepare_embedded_task(cfg) == root
    stamp = os.stat(osp.join(root, 'images', 'z090.png')).st_mtime_ns
    assert prepare_embedded_task(cfg) == root
    assert os.stat(osp.join(root, 'images', 'z090.png')).st_mtime_ns == stamp
    assert prepare_embedded_task(dict(type='OneShotFolderDataset', data_root=root)) is None
    ds = MNI152WhiteMatterDataset(data_root=root, pipeline=LOAD)
    wm = MNI152_TASKS['wm']
    assert len(ds) == 30 == len(wm.slices) - 1
    names = [osp.basename(ds.get_data_info(i)['img_path']) for i in range(len(ds))]
    assert slice_name(wm.reference) + '.png' not in names
    assert names[0] == 'z060.png' and names[-1] == 'z120.png'
    assert osp.isfile(osp.join(root, 'COPYRIGHT.txt'))
    assert 'MNI152' in open(osp.join(root, 'COPYRIGHT.txt')).read()
    info = ds.get_data_info(0)
    assert info['references'].files[0].img_path == osp.join(root, 'images', 'z090.png')
    sample = ds[len(ds) // 2]
    assert sample['img'].shape == (233, 197, 3)
    assert np.unique(sample['gt_seg_map']).tolist() == [0, 1]
    assert 0.05 < sample['gt_seg_map'].mean() < 0.6
    assert ds.metainfo['classes'] == ('background', 'white matter')


@pytest.fixture(scope='module')
def template():
    from mmseg_medpersam.datasets.mni152 import load_template
    return load_template()


def test_mni152_masks_are_derived_as_documented(template):
    """White matter > 0.5; the brain is filled tissue; the ventricles are enclosed CSF."""
    from scipy import ndimage as ndi

    from mmseg_medpersam.datasets.mni152 import brain, ventricles, white_matter
    tissue = template['gm'] + template['wm'] > 0.5
    assert np.array_equal(white_matter(template), template['wm'] > 0.5)
    whole = brain(template)
    assert (whole >= tissue).mean() > 0.999  # tissue lies in the brain (but stray specks)
    assert ndi.label(whole, structure=np.ones((3, 3, 3)))[1] == 1  # one 26-connected piece
    assert not ndi.binary_fill_holes(whole)[~whole].any()
    vent = ventricles(template)
    assert not (vent & tissue).any() and not (vent & ~whole).any()  # CSF inside the brain
    assert ndi.label(vent)[1] == 1  # one connected system, nothing touching the outside
    # The ventricular system, not a sulcus: 10..40 ml, centred on the midline (x = 98).
    assert 10_000 < vent.sum() < 40_000
    xs = np.nonzero(vent)[0]
    assert abs(xs.mean() - 98) < 6 and xs.min() > 50 and xs.max() < 150
    # Every ventricle slice has foreground; the two lateral ventricles appear as >= 2 blobs.
    spec = MNI152_TASKS['ventricles']
    for z in spec.slices:
        assert vent[:, :, z].sum() > 50
    assert ndi.label(vent[:, :, spec.reference])[1] >= 2


@pytest.mark.parametrize('task', ['ventricles', 'brain'])
def test_every_mni152_task_writes_its_slices(tmp_path, task):
    root = str(tmp_path / task)
    cls = {'ventricles': MNI152VentriclesDataset, 'brain': MNI152BrainDataset}[task]
    cls.prepare(root)
    ds = cls(data_root=root, pipeline=LOAD)
    spec = MNI152_TASKS[task]
    assert len(ds) == len(spec.slices) - 1
    assert ds.get_data_info(0)['references'].files[0].img_path.endswith(
        slice_name(spec.reference) + '.png')
    assert ds.metainfo['classes'] == ('background', spec.structure)
    fractions = [ds[i]['gt_seg_map'].mean() for i in range(len(ds))]
    low, high = {'ventricles': (0.001, 0.05), 'brain': (0.2, 0.7)}[task]
    assert all(low < f < high for f in fractions), fractions


def test_mni152_never_writes_among_other_data(tmp_path, folder_task):
    before = sorted(os.listdir(osp.join(folder_task, 'images')))
    with pytest.raises(OneShotDataError, match='holds other data.*OneShotFolderDataset'):
        MNI152WhiteMatterDataset.prepare(folder_task)
    assert sorted(os.listdir(osp.join(folder_task, 'images'))) == before
    assert not osp.exists(osp.join(folder_task, 'COPYRIGHT.txt'))
    # A folder written for one task is not taken (nor overwritten) for another.
    wm_root = str(tmp_path / 'wm')
    MNI152WhiteMatterDataset.prepare(wm_root)
    with pytest.raises(OneShotDataError, match='holds other data'):
        MNI152VentriclesDataset.prepare(wm_root)
    with pytest.raises(OneShotDataError, match='not written there yet'):
        MNI152VentriclesDataset(data_root=wm_root, pipeline=LOAD)
    with pytest.raises(OneShotDataError, match="unknown MNI152 task 'liver'"):
        prepare_mni152(str(tmp_path / 'x'), 'liver')


@pytest.fixture
def nifti_pair(tmp_path):
    """A 20x24x5 uint8 image volume (slice z filled with 10*z + x) and a label volume."""
    import nibabel as nib
    img = np.zeros((20, 24, 5), np.uint8)
    seg = np.zeros((20, 24, 5), np.uint8)
    for z in range(5):
        img[:, :, z] = 10 * z + np.arange(20)[:, None]
        seg[2:4 + 2 * z, 3:9, z] = 1
    seg[:, :, 4] = 0  # an empty slice
    nib.save(nib.Nifti1Image(img, np.eye(4)), str(tmp_path / 'img.nii.gz'))
    nib.save(nib.Nifti1Image(seg, np.eye(4)), str(tmp_path / 'seg.nii.gz'))
    return tmp_path, img, seg


def test_nifti_slices_minus_reference(nifti_pair):
    root, img, seg = nifti_pair
    ds = NiftiSliceDataset(volumes=[dict(img='img.nii.gz', seg='seg.nii.gz')],
                           reference=dict(volume=0, slice=2), data_root=str(root),
                           pipeline=LOAD)
    assert len(ds) == 4
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    assert [i['slice_index'] for i in infos] == [0, 1, 3, 4]
    for info in infos:
        assert info['references'].files == (ReferenceFile(
            img_path=osp.join(str(root), 'img.nii.gz'),
            seg_map_path=osp.join(str(root), 'seg.nii.gz'), slice_index=2), )
        assert info['num_classes'] == 2
    for i, z in enumerate([0, 1, 3, 4]):
        sample = ds[i]
        assert sample['img'].shape == (24, 20, 3)
        assert np.array_equal(sample['img'][..., 0], img[:, :, z].T[::-1, ::-1])  # radiological
        assert np.array_equal(sample['gt_seg_map'], seg[:, :, z].T[::-1, ::-1])
    skip = NiftiSliceDataset(volumes=[dict(img='img.nii.gz', seg='seg.nii.gz')],
                             reference=dict(slice=2), data_root=str(root), skip_empty=True,
                             slices=(0, 5, 1), pipeline=LOAD)
    assert [skip.get_data_info(i)['slice_index'] for i in range(len(skip))] == [0, 1, 3]


def test_a_label_volume_on_another_grid_is_matched_by_geometry_and_missing_volume(nifti_pair):
    """A label volume of another shape, stored in another orientation, labels the slices
    where its world coordinates put it (not by array index)."""
    import nibabel as nib
    root, img, seg = nifti_pair
    bigger = np.zeros((20, 24, 7), np.uint8)
    bigger[:, :, 2:7] = seg  # two more slices below: its voxel z = the image's z + 2
    shifted = np.eye(4)
    shifted[2, 3] = -2.0
    lps = nib.Nifti1Image(bigger, shifted).as_reoriented(nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt('RAS'), nib.orientations.axcodes2ornt('LPS')))
    nib.save(lps, str(root / 'seg7.nii.gz'))
    ds = NiftiSliceDataset(volumes=[dict(img='img.nii.gz', seg='seg7.nii.gz')],
                           reference=dict(slice=2), data_root=str(root), pipeline=LOAD)
    for i, z in enumerate([0, 1, 3, 4]):
        assert np.array_equal(ds[i]['gt_seg_map'], seg[:, :, z].T[::-1, ::-1])
    with pytest.raises(OneShotDataError, match='nope.nii.gz: volume not found'):
        NiftiSliceDataset(volumes=[dict(img='nope.nii.gz', seg='seg.nii.gz')],
                          reference=dict(slice=0), data_root=str(root), pipeline=[])


def test_annotation_loader_checks_size_against_image(folder_task):
    results = LoadOneShotImage().transform(
        dict(img_path=osp.join(folder_task, 'images', 't1.png'), **_reference(folder_task)))
    results.update(seg_map_path=osp.join(folder_task, 'masks', 't1.png'), num_classes=2)
    out = LoadOneShotAnnotations().transform(results)
    assert out['gt_seg_map'].shape == (64, 80)
    assert 'gt_seg_map' in out['seg_fields']
    # The reference came along, read once for every sample.
    refs = OneShotReferences.of(out)
    assert refs.images[0].shape == (64, 80, 3) and refs.label_maps[0].any()
    with pytest.raises(OneShotDataError, match='no reference'):
        LoadOneShotImage().transform(dict(img_path=osp.join(folder_task, 'images', 't1.png')))


def _reference(root):
    return dict(references=OneShotReferences((ReferenceFile(
        osp.join(root, 'images', 'ref.png'), osp.join(root, 'masks', 'ref.png')), )),
        num_classes=2)


def test_hela_task_is_real_microscopy_with_objects_elsewhere(tmp_path):
    """The embedded HeLa task: 15 target tiles and a reference tile, 8-bit images, 0/1 masks
    of the shipped segmentation; nuclei cover a plausible fraction and sit at other places in
    every tile (no target mask is the reference's)."""
    from mmseg_medpersam.datasets import HeLaNucleiDataset
    from mmseg_medpersam.datasets.hela import REFERENCE, tiles
    root = str(tmp_path / 'hela')
    with pytest.raises(OneShotDataError, match='not written there yet'):
        HeLaNucleiDataset(data_root=root, pipeline=LOAD)
    assert prepare_embedded_task(dict(type='HeLaNucleiDataset', data_root=root)) == root
    ds = HeLaNucleiDataset(data_root=root, pipeline=LOAD)
    assert len(ds) == len(tiles()) - 1 == 15
    assert ds.get_data_info(0)['references'].files[0].img_path.endswith(REFERENCE + '.png')
    assert ds.metainfo['classes'] == ('background', 'nucleus')
    ref = np.asarray(load_label_map(osp.join(root, 'masks', REFERENCE + '.png'), 2)) > 0
    for i in range(len(ds)):
        sample = ds[i]
        assert sample['img'].shape == (256, 256, 3) and sample['img'].dtype == np.uint8
        mask = sample['gt_seg_map'] > 0
        assert set(np.unique(sample['gt_seg_map']).tolist()) == {0, 1}
        assert 0.03 < mask.mean() < 0.35
        dice = 2 * (mask & ref).sum() / (mask.sum() + ref.sum())
        assert dice < 0.6, (i, dice)  # other nuclei at other places, not the reference's
    assert 'Cell Tracking Challenge' in open(osp.join(root, 'NOTICE.txt')).read()
    # Nuclei are brighter than background in the images (the mask is of these images).
    img = ds[0]['img'][..., 0]
    assert img[ds[0]['gt_seg_map'] == 1].mean() > img[ds[0]['gt_seg_map'] == 0].mean() + 20
    with pytest.raises(OneShotDataError, match='holds other data'):
        HeLaNucleiDataset.prepare(osp.join(root, 'images'))
