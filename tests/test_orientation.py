"""Volumes are sliced in one canonical (RAS) orientation, windowed per volume, and written back
in each input's own orientation, marked as label maps (issue 19)."""
import os.path as osp

import numpy as np
from conftest import REPO_ROOT, load_tool

WARP_ONLY = osp.join(REPO_ROOT, 'configs', 'medpersam', 'warp-only_mni152-wm.py')
FAST = ['model.head.warping.iters=10', 'model.head.warping.work_long_side=64']


def _volumes(tmp_path):
    """A RAS volume with an off-centre blob, the same in LPS storage, and a RAS copy with
    labels as the reference (the same five targets in both runs)."""
    import nibabel as nib
    img = np.full((40, 48, 5), 30, np.uint8)
    seg = np.zeros((40, 48, 5), np.uint8)
    xx, yy = np.mgrid[0:40, 0:48]
    for z in range(5):
        blob = ((xx - 12 - z) / 7.0) ** 2 + ((yy - 30) / 9.0) ** 2 <= 1  # not symmetric
        img[..., z][blob] = 200
        seg[..., z][blob] = 1
    affine = np.diag([0.9, 0.8, 2.0, 1.0])
    affine[:3, 3] = [-20, 10, 5]
    ras = nib.Nifti1Image(img, affine)
    to_lps = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt('RAS'),
                                             nib.orientations.axcodes2ornt('LPS'))
    lps = ras.as_reoriented(to_lps)
    assert nib.aff2axcodes(lps.affine) == ('L', 'P', 'S')
    for name, image in (('ras', ras), ('lps', lps), ('ref', ras)):
        (tmp_path / name).mkdir()
        nib.save(image, str(tmp_path / name / 'vol.nii.gz'))
    nib.save(nib.Nifti1Image(seg, affine), str(tmp_path / 'ref' / 'lab.nii.gz'))
    return tmp_path


def test_a_target_stored_in_lps_gives_the_masks_of_its_ras_copy(tmp_path):
    import nibabel as nib
    root = _volumes(tmp_path)
    labels = {}
    for name in ('ras', 'lps'):
        out = root / f'out_{name}'
        code = load_tool('infer').main([
            WARP_ONLY, '--reference', f'{root}/ref/vol.nii.gz#2', '--reference-mask',
            f'{root}/ref/lab.nii.gz#2', '--images', str(root / name / 'vol.nii.gz'),
            '--out-dir', str(out), '--cfg-options', *FAST])
        assert code == 0
        written = nib.load(str(out / 'volumes' / 'vol_seg.nii.gz'))
        source = nib.load(str(root / name / 'vol.nii.gz'))
        assert written.shape == source.shape and np.allclose(written.affine, source.affine)
        assert int(written.header['intent_code']) == 1002  # NIFTI_INTENT_LABEL
        assert float(written.header['cal_min']) == float(written.header['cal_max']) == 0
        labels[name] = np.asarray(nib.as_closest_canonical(written).dataobj)
    assert labels['ras'].any()
    assert np.array_equal(labels['ras'], labels['lps'])  # the same world, voxel for voxel


def test_a_volume_is_windowed_once_not_per_slice(tmp_path):
    import nibabel as nib

    from mmseg_medpersam.datasets.io import load_image
    data = np.zeros((32, 32, 2), np.float32)
    data[8:24, 8:24, 0] = 100.0   # a faint slice
    data[8:24, 8:24, 1] = 1000.0  # a bright one
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / 'v.nii.gz'))
    faint, bright = (load_image(str(tmp_path / 'v.nii.gz'), z) for z in (0, 1))
    assert bright.max() == 255 and faint.max() < 60  # per slice, both would reach 255
    fixed = load_image(str(tmp_path / 'v.nii.gz'), 0, window=(0, 100))
    assert fixed.max() == 255  # --window / the config's window wins
