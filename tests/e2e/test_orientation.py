"""Volumes: one slice layout for every 2D image of a slice (a DICOM series' pixel arrays, else the
radiological view), label volumes matched by geometry, outputs written back in each input's own
orientation, marked as label maps, windowed per volume (issues 19, 26)."""
import json
import os
import os.path as osp

import numpy as np
import pytest
from conftest import REPO_ROOT, as_cli, fast_warp, load_tool

WARP_ONLY = osp.join(REPO_ROOT, 'configs', 'medpersam', 'warp-only_mni152-wm.py')
FAST = as_cli(fast_warp())


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

    from mmseg_medpersam.datasets.loading import load_image
    data = np.zeros((32, 32, 2), np.float32)
    data[8:24, 8:24, 0] = 100.0   # a faint slice
    data[8:24, 8:24, 1] = 1000.0  # a bright one
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / 'v.nii.gz'))
    faint, bright = (load_image(str(tmp_path / 'v.nii.gz'), z) for z in (0, 1))
    assert bright.max() == 255 and faint.max() < 60  # per slice, both would reach 255
    fixed = load_image(str(tmp_path / 'v.nii.gz'), 0, window=(0, 100))
    assert fixed.max() == 255  # --window / the config's window wins


# --------------------------------------------------------------------------- the slice rule
# A CT series stored as scanners store it (column 0 = the patient's right), an object on the
# patient's right only, and the same data as NIfTI stored RAS and LPS: the reference mask drawn
# on the stored pixel array, or given as a label volume with its geometry, must give masks and
# label volumes on the object in every slice, never on its mirror image.
SLICES = 5


def one_sided_ct():
    """(hu, labels), each (slices, rows, columns) as stored: a blob at low columns only."""
    from conftest import CT_COLS, CT_ROWS
    yy, xx = np.mgrid[0:CT_ROWS, 0:CT_COLS]
    hu = np.full((SLICES, CT_ROWS, CT_COLS), -50.0)
    labels = np.zeros((SLICES, CT_ROWS, CT_COLS), np.uint8)
    for k in range(SLICES):
        blob = ((yy - 18 - 0.5 * k) / 8.0) ** 2 + ((xx - 13 - 0.5 * k) / 7.0) ** 2 <= 1
        hu[k][blob], labels[k][blob] = 200.0, 1
    return hu, labels


def dice(a, b):
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def assert_on_the_object(predicted, labels):
    """Every slice lies on the object (Dice >= 0.8), not on its left-right mirror image."""
    for k in range(SLICES):
        assert dice(predicted[k], labels[k]) >= 0.8, (k, dice(predicted[k], labels[k]))
        assert dice(predicted[k], labels[k][:, ::-1]) < 0.2, k


def run_infer(reference, mask, images, out, *extra):
    return load_tool('infer').main([WARP_ONLY, '--reference', reference, '--reference-mask',
                                    mask, '--images', images, '--out-dir', str(out),
                                    *extra, '--cfg-options', *FAST])


@pytest.fixture
def ct_series(tmp_path):
    """The one-sided CT as an anonymised series (no type-2 patient/study attributes), with
    its labels; the slice-2 mask drawn on the stored pixel array as a PNG."""
    from conftest import write_ct_series, write_png
    hu, labels = one_sided_ct()
    series = str(tmp_path / 'ct_series')
    uids = write_ct_series(series, hu, drop=('PatientBirthDate', 'AccessionNumber', 'StudyID',
                                             'ReferringPhysicianName', 'PatientSex'))
    png = write_png(str(tmp_path / 'slice2.png'), labels[2] * 255)
    return series, labels, png, uids


def read_stored_labels(path):
    """A written label volume as (slices, rows, columns) in the series' stored layout."""
    import nibabel as nib
    return np.asarray(nib.load(path).dataobj).transpose(2, 1, 0)


def test_a_png_mask_drawn_on_a_dicom_pixel_array_segments_the_same_side(tmp_path, ct_series):
    import cv2
    import pydicom
    series, labels, png, uids = ct_series
    out = tmp_path / 'out'
    assert run_infer(f'{series}#2', png, series, out) == 0
    volume = read_stored_labels(str(out / 'volumes' / 'ct_series_seg.nii.gz'))
    assert np.array_equal(volume[2], labels[2])  # the reference slice keeps its own labels
    assert_on_the_object(volume, labels)
    for k in (0, 1, 3, 4):  # the 2D masks are in the stored layout too
        assert dice(cv2.imread(str(out / 'masks' / f'ct_series_{k:04d}.png'), 0),
                    labels[k]) >= 0.8
    seg = pydicom.dcmread(str(out / 'volumes' / 'ct_series_seg.dcm'))
    frames = seg.pixel_array
    for frame, group in zip(frames, seg.PerFrameFunctionalGroupsSequence):
        uid = group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k = uids.index(uid)
        assert dice(frame, labels[k]) >= 0.8 and dice(frame, labels[k][:, ::-1]) < 0.2, k
    assert seg.SegmentSequence[0].SegmentLabel == 'foreground'
    assert 'Warp only' in seg.SeriesDescription or 'warp' in seg.SeriesDescription.lower()
    import highdicom as hd
    assert hd.seg.segread(str(out / 'volumes' / 'ct_series_seg.dcm')).number_of_segments == 1


def test_a_reference_given_as_the_dicom_file_it_was_drawn_on(tmp_path, ct_series):
    """The slice's own DICOM file as the reference image: that slice of the series."""
    import pydicom
    series, labels, png, uids = ct_series
    file = next(osp.join(series, f) for f in os.listdir(series)
                if pydicom.dcmread(osp.join(series, f)).SOPInstanceUID == uids[2])
    out = tmp_path / 'out'
    assert run_infer(file, png, series, out) == 0
    summary = json.load(open(out / 'summary.json'))
    assert [t['slice'] for t in summary['targets']] == [0, 1, 3, 4]  # slice 2 is the reference
    assert_on_the_object(read_stored_labels(str(out / 'volumes' / 'ct_series_seg.nii.gz')),
                         labels)


@pytest.mark.parametrize('storage', ['RAS', 'LPS'])
def test_the_same_data_as_nifti_takes_the_same_png_mask(tmp_path, ct_series, storage):
    """A standard axial CT shows alike as DICOM and as NIfTI in any storage order."""
    import nibabel as nib
    from conftest import ct_ras_affine
    series, labels, png, _ = ct_series
    hu, _ = one_sided_ct()
    stored = nib.Nifti1Image(hu.transpose(2, 1, 0).astype(np.float32), ct_ras_affine())
    assert nib.aff2axcodes(stored.affine) == ('L', 'P', 'S')
    img = stored.as_reoriented(nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt('LPS'), nib.orientations.axcodes2ornt(storage)))
    path = str(tmp_path / f'ct_{storage}.nii.gz')
    nib.save(img, path)
    out = tmp_path / 'out'
    assert run_infer(f'{path}#2', png, path, out) == 0
    written = nib.load(str(out / 'volumes' / f'ct_{storage}_seg.nii.gz'))
    assert np.allclose(written.affine, img.affine) and written.shape == img.shape
    as_stored = written.as_reoriented(nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt(storage), nib.orientations.axcodes2ornt('LPS')))
    assert_on_the_object(np.asarray(as_stored.dataobj).transpose(2, 1, 0), labels)


def write_truth_as(kind, tmp_path, labels, series):
    """The reference labels as a label volume with its own geometry: a NIfTI label map stored
    RAS on a grid cropped and shifted from the series', a DICOM SEG, a Slicer .seg.nrrd."""
    import nibabel as nib
    from conftest import ct_ras_affine
    stored = labels.transpose(2, 1, 0)  # (columns, rows, slices) on the series' grid
    if kind == 'nifti':
        crop = stored[4:, 2:, :]  # another grid: its first voxel is 4 columns, 2 rows in
        affine = ct_ras_affine().copy()
        affine[:3, 3] = ct_ras_affine()[:3, :3] @ [4, 2, 0] + ct_ras_affine()[:3, 3]
        img = nib.Nifti1Image(crop, affine).as_reoriented(nib.orientations.ornt_transform(
            nib.orientations.axcodes2ornt('LPS'), nib.orientations.axcodes2ornt('RAS')))
        path = str(tmp_path / 'truth.nii.gz')
        nib.save(img, path)
        return path
    if kind == 'nrrd':
        import nrrd
        lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ct_ras_affine()
        path = str(tmp_path / 'truth.seg.nrrd')
        nrrd.write(path, stored, dict(
            space='left-posterior-superior', **{'space directions': lps[:3, :3].T,
                                                'space origin': lps[:3, 3]},
            Segment0_ID='Segment_1', Segment0_Name='lesion', Segment0_LabelValue='1',
            Segment0_Layer='0'))
        return path
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes
    sources = sorted((pydicom.dcmread(osp.join(series, f)) for f in os.listdir(series)),
                     key=lambda ds: float(ds.ImagePositionPatient[2]))
    for ds in sources:  # the anonymised series lacks them; a SEG must carry them (type 2)
        for key in ('PatientBirthDate', 'AccessionNumber', 'StudyID', 'ReferringPhysicianName',
                    'PatientSex'):
            setattr(ds, key, '')
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=labels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[hd.seg.SegmentDescription(
            1, 'lesion', codes.SCT.Tissue, codes.SCT.Tissue,
            hd.seg.SegmentAlgorithmTypeValues.MANUAL)],
        series_instance_uid=hd.UID(), series_number=2, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer='test', manufacturer_model_name='test',
        software_versions='0', device_serial_number='0')
    path = str(tmp_path / 'truth_seg.dcm')
    seg.save_as(path)
    return path


@pytest.mark.parametrize('kind', ['nifti', 'seg', 'nrrd'])
def test_a_label_volume_reference_is_matched_by_geometry(tmp_path, ct_series, kind):
    series, labels, _, _ = ct_series
    truth = write_truth_as(kind, tmp_path, labels, series)
    out = tmp_path / 'out'
    assert run_infer(f'{series}#2', truth, series, out) == 0
    assert_on_the_object(read_stored_labels(str(out / 'volumes' / 'ct_series_seg.nii.gz')),
                         labels)
    if kind != 'nifti':  # the file's segment name names the class
        summary = json.load(open(out / 'summary.json'))
        assert summary['classes'] == ['background', 'lesion']


def test_slice_layouts_name_the_patient_directions(tmp_path, ct_series):
    """A DICOM series' own slices: its pixel array (R on the left, A at the top for this
    one); NIfTI slices: the radiological view, whatever the storage order."""
    import nibabel as nib

    from mmseg_medpersam.datasets.loading import open_volume
    series = ct_series[0]
    assert open_volume(series).layout().letters == ('R', 'L', 'A', 'P')
    data = np.zeros((4, 5, 6), np.float32)
    for codes in ('RAS', 'LPS', 'PIR'):
        img = nib.Nifti1Image(data, np.eye(4)).as_reoriented(nib.orientations.ornt_transform(
            nib.orientations.axcodes2ornt('RAS'), nib.orientations.axcodes2ornt(codes)))
        nib.save(img, str(tmp_path / f'{codes}.nii.gz'))
        volume = open_volume(str(tmp_path / f'{codes}.nii.gz'))
        assert [volume.layout(a).letters for a in (2, 1, 0)] == [
            ('R', 'L', 'A', 'P'), ('R', 'L', 'S', 'I'), ('A', 'P', 'S', 'I')], codes


def test_classes_come_from_the_reference_mask_and_name_the_seg_segments(tmp_path):
    """A 0/1/2 mask without --num-classes: three classes, said on the console; the SEG's
    segments carry --class-names."""
    import pydicom
    from conftest import write_ct_series, write_png
    hu, labels = one_sided_ct()
    two = labels.copy()
    two[labels[:, :, ::-1] > 0] = 2  # a second object on the other side
    hu[two == 2] = 120.0
    series = str(tmp_path / 'ct')
    write_ct_series(series, hu)
    png = write_png(str(tmp_path / 'm.png'), two[2])
    out = tmp_path / 'out'
    code = run_infer(f'{series}#2', png, series, out, '--class-names', 'right lesion,left lesion')
    assert code == 0
    volume = read_stored_labels(str(out / 'volumes' / 'ct_seg.nii.gz'))
    for k in range(SLICES):
        assert dice(volume[k] == 1, two[k] == 1) >= 0.8 and dice(volume[k] == 2, two[k] == 2) >= 0.8
    seg = pydicom.dcmread(str(out / 'volumes' / 'ct_seg.dcm'))
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ['right lesion', 'left lesion']
    description = (out / 'volumes' / 'ct_seg.label.txt').read_text()
    assert '"right lesion"' in description and '"left lesion"' in description


def test_a_written_seg_passes_dciodvfy(tmp_path, ct_series):
    """DICOM's own validator (Debian's dicom3tools), where it is installed (CI installs it)."""
    import shutil
    import subprocess
    if shutil.which('dciodvfy') is None:
        pytest.skip('dciodvfy (dicom3tools) is not installed')
    series, labels, png, _ = ct_series
    out = tmp_path / 'out'
    assert run_infer(f'{series}#2', png, series, out) == 0
    proc = subprocess.run(['dciodvfy', str(out / 'volumes' / 'ct_series_seg.dcm')],
                          capture_output=True, text=True)
    errors = [line for line in (proc.stdout + proc.stderr).splitlines()
              if line.startswith('Error')]
    assert not errors, errors
