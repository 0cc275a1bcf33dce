"""A DICOM series in: one volume with its geometry; out: a NIfTI label volume with that geometry
and a DICOM SEG object that references the source slices (issue 19)."""
import os
import os.path as osp

import numpy as np
import pytest
from conftest import (
    CT_COLS,
    CT_ROWS,
    REPO_ROOT,
    as_cli,
    ct_ras_affine,
    fast_warp,
    load_tool,
    write_ct_series,
)

pydicom = pytest.importorskip('pydicom')

WARP_ONLY = osp.join(REPO_ROOT, 'configs', 'medpersam', 'warp-only_mni152-wm.py')
FAST = as_cli(fast_warp())
ROWS, COLS, SLICES = CT_ROWS, CT_COLS, 5


def test_a_dicom_series_in_gives_a_nifti_volume_and_a_dicom_seg(tmp_path):
    import nibabel as nib
    yy, xx = np.mgrid[0:ROWS, 0:COLS]
    hu = np.full((SLICES, ROWS, COLS), -50.0)
    labels = np.zeros((SLICES, ROWS, COLS), np.uint8)
    for k in range(SLICES):
        blob = ((yy - 14 - k) / 7.0) ** 2 + ((xx - 30) / 9.0) ** 2 <= 1  # off-centre
        hu[k][blob], labels[k][blob] = 150.0, 1
    series = tmp_path / 'ct_series'
    uids = write_ct_series(str(series), hu)
    # The reference labels as a NIfTI volume on the series' grid: (columns, rows, slices).
    nib.save(nib.Nifti1Image(labels.transpose(2, 1, 0), ct_ras_affine()),
             str(tmp_path / 'ref_labels.nii.gz'))
    from mmseg_medpersam.datasets.loading import load_image, volume_shape
    assert volume_shape(str(series)) == (COLS, ROWS, SLICES)
    shown = load_image(str(series), 2)[..., 0]  # through the series' own window 40/400
    # HU 150 and -50 through the window 40 +- 200: 310/400 and 110/400 of 255
    assert set(np.unique(shown).tolist()) == {round(110 / 400 * 255), round(310 / 400 * 255)}
    out = tmp_path / 'out'
    code = load_tool('infer').main([
        WARP_ONLY, '--reference', f'{series}#2', '--reference-mask',
        f'{tmp_path}/ref_labels.nii.gz#2', '--images', str(series), '--out-dir', str(out),
        '--cfg-options', *FAST])
    assert code == 0
    volume = nib.load(str(out / 'volumes' / 'ct_series_seg.nii.gz'))
    assert volume.shape == (COLS, ROWS, SLICES)
    assert np.allclose(volume.affine, ct_ras_affine())  # the series' geometry
    predicted = np.asarray(volume.dataobj).transpose(2, 1, 0)  # (slices, rows, columns)
    assert np.array_equal(predicted[2], labels[2])  # the reference slice: its own labels
    for k in range(SLICES):
        inter = (predicted[k] & labels[k]).sum()
        assert 2 * inter / (predicted[k].sum() + labels[k].sum()) > 0.7, k
    seg = pydicom.dcmread(str(out / 'volumes' / 'ct_series_seg.dcm'))
    assert seg.Modality == 'SEG' and int(seg.NumberOfFrames) == SLICES
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == pydicom.dcmread(
        osp.join(series, os.listdir(series)[0])).SeriesInstanceUID
    referenced = [f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
                  for f in seg.PerFrameFunctionalGroupsSequence]
    assert sorted(referenced) == sorted(uids)  # every source slice, once
    frames = seg.pixel_array.astype(np.uint8)
    for frame, uid in zip(frames, referenced):  # each frame holds its own source slice's mask
        assert np.array_equal(frame, predicted[uids.index(uid)]), uid


def write_multi_frame(path, frames, photometric='MONOCHROME2', **attrs):
    """``frames`` (n, rows, columns) uint8 as one multi-frame secondary-capture file."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(path, {}, file_meta=meta, preamble=b'\0' * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, generate_uid()
    ds.Modality, ds.Rows, ds.Columns = 'OT', frames.shape[1], frames.shape[2]
    ds.NumberOfFrames = len(frames)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.PixelData = frames.astype(np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_a_multi_frame_file_is_a_volume(tmp_path):
    from mmseg_medpersam.datasets.loading import is_volume, load_image, volume_shape
    frames = np.zeros((3, ROWS, COLS), np.uint8)
    frames[1, 10:20, 10:30] = 200
    path = write_multi_frame(str(tmp_path / 'frames.dcm'), frames, 'MONOCHROME1')
    assert is_volume(path) and volume_shape(path) == (COLS, ROWS, 3)
    middle = load_image(path, 1)[..., 0]
    # MONOCHROME1: high stored values are dark, so the bright block shows as the dark part
    assert middle.min() < middle.max() and (middle == middle.min()).sum() == 10 * 20


# --------------------------------------------------------------------------- series checked
def _blob_ct(slices=4):
    yy, xx = np.mgrid[0:ROWS, 0:COLS]
    hu = np.full((slices, ROWS, COLS), -50.0)
    for k in range(slices):
        hu[k][((yy - 15) / 6.0) ** 2 + ((xx - 14) / 6.0) ** 2 <= 1] = 150.0
    return hu


def _read_error(path):
    from mmseg_medpersam.datasets.loading import check_volume_data
    from mmseg_medpersam.structures.errors import OneShotDataError
    with pytest.raises(OneShotDataError) as err:
        check_volume_data(str(path))
    return str(err.value)


def test_a_series_with_a_missing_slice_is_refused_in_one_line(tmp_path):
    series = tmp_path / 'gap'
    write_ct_series(str(series), _blob_ct(), positions=[0, 2, 6, 8])
    message = _read_error(series)
    assert 'not evenly spaced' in message and 'a missing slice' in message
    assert '\n' not in message and '.dcm' in message  # the files on either side of the gap


def test_two_slices_at_one_position_are_refused_by_name(tmp_path):
    series = tmp_path / 'dup'
    write_ct_series(str(series), _blob_ct(), positions=[0, 2, 2, 4])
    message = _read_error(series)
    assert 'two slices at one position' in message and message.count('.dcm') == 2


def test_a_slice_of_another_geometry_is_named(tmp_path):
    series = tmp_path / 'odd'
    write_ct_series(str(series), _blob_ct())
    odd = sorted(os.listdir(series))[1]
    ds = pydicom.dcmread(str(series / odd))
    ds.PixelSpacing = [0.5, 0.5]
    ds.save_as(str(series / odd))
    message = _read_error(series)
    assert odd in message and 'pixel spacing' in message


def test_a_folder_of_two_series_is_refused_naming_them(tmp_path):
    import shutil
    write_ct_series(str(tmp_path / 'a'), _blob_ct())
    write_ct_series(str(tmp_path / 'b'), _blob_ct(2))
    for f in os.listdir(tmp_path / 'b'):
        shutil.copy(tmp_path / 'b' / f, tmp_path / 'a' / ('b_' + f))
    message = _read_error(tmp_path / 'a')
    assert 'holds 2 DICOM series' in message and '4 files' in message and '2 files' in message


def test_a_non_image_object_beside_the_slices_is_skipped_with_a_note(tmp_path, capsys):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    series = tmp_path / 'with_sr'
    hu = _blob_ct()
    write_ct_series(str(series), hu)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = '1.2.840.10008.5.1.4.1.1.88.11'  # Basic Text SR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr = FileDataset(str(series / 'report.dcm'), {}, file_meta=meta, preamble=b'\0' * 128)
    sr.SOPClassUID, sr.SOPInstanceUID = meta.MediaStorageSOPClassUID, generate_uid()
    sr.Modality, sr.SeriesInstanceUID = 'SR', generate_uid()
    sr.save_as(str(series / 'report.dcm'), enforce_file_format=True)
    labels = (hu[1] > 0).astype(np.uint8)
    from conftest import write_png
    mask = write_png(str(tmp_path / 'm.png'), labels)
    out = tmp_path / 'out'
    code = load_tool('infer').main([WARP_ONLY, '--reference', f'{series}#1', '--reference-mask',
                                    mask, '--images', str(series), '--out-dir', str(out),
                                    '--cfg-options', *FAST])
    assert code == 0
    assert 'report.dcm: not an image (SR' in capsys.readouterr().err
    assert (out / 'volumes' / 'with_sr_seg.dcm').exists()


def test_a_one_slice_series_is_a_volume_with_a_seg(tmp_path):
    """One slice of a series (a folder holding one DICOM image) is still a volume: its label
    volume and DICOM SEG are written (the reference is another file)."""
    from conftest import write_png
    hu = _blob_ct(2)
    write_ct_series(str(tmp_path / 'ref'), hu[:1])
    write_ct_series(str(tmp_path / 'one'), hu[1:])
    mask = write_png(str(tmp_path / 'm.png'), (hu[0] > 0).astype(np.uint8))
    out = tmp_path / 'out'
    ref = next(str(tmp_path / 'ref' / f) for f in os.listdir(tmp_path / 'ref'))
    code = load_tool('infer').main([WARP_ONLY, '--reference', ref, '--reference-mask', mask,
                                    '--images', str(tmp_path / 'one'), '--out-dir', str(out),
                                    '--cfg-options', *FAST])
    assert code == 0
    seg = pydicom.dcmread(str(out / 'volumes' / 'one_seg.dcm'))
    assert int(seg.NumberOfFrames) == 1 and seg.pixel_array.sum() > 0


def test_monochrome1_slices_are_inverted_alike(tmp_path):
    """MONOCHROME1 is inverted over the stored bit range, the same for every slice (not each
    slice by its own min + max)."""
    from mmseg_medpersam.datasets.loading import open_volume
    hu = _blob_ct(2)
    hu[1] += 300.0  # a brighter second slice: its own min+max would shift it
    write_ct_series(str(tmp_path / 'm1'), hu, PhotometricInterpretation='MONOCHROME1')
    data = np.asarray(open_volume(str(tmp_path / 'm1')).dataobj)
    inverted = data.transpose(2, 1, 0)
    assert np.allclose(inverted[0] - inverted[1], 300.0)  # one mapping: the difference stays


def test_a_multi_frame_file_without_per_frame_geometry_takes_its_top_level_geometry(tmp_path):
    from mmseg_medpersam.datasets.loading import open_volume
    path = write_multi_frame(str(tmp_path / 'frames.dcm'), np.zeros((3, ROWS, COLS)),
                             ImageOrientationPatient=[1, 0, 0, 0, 1, 0], PixelSpacing=[0.7, 0.6],
                             ImagePositionPatient=[5, 6, 7], SpacingBetweenSlices=3.0)
    affine = open_volume(path).affine
    assert np.allclose(affine, [[-0.6, 0, 0, -5], [0, -0.7, 0, -6], [0, 0, 3, 7], [0, 0, 0, 1]])
