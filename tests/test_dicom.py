"""A DICOM series in: one volume with its geometry; out: a NIfTI label volume with that geometry
and a DICOM SEG object that references the source slices (issue 19)."""
import os
import os.path as osp

import numpy as np
import pytest
from conftest import REPO_ROOT, load_tool

pydicom = pytest.importorskip('pydicom')

WARP_ONLY = osp.join(REPO_ROOT, 'configs', 'medpersam', 'warp-only_mni152-wm.py')
FAST = ['model.head.warping.iters=10', 'model.head.warping.work_long_side=64']
ROWS, COLS, SLICES = 40, 48, 5
SPACING = (0.8, 0.9)  # PixelSpacing: between rows, between columns
THICKNESS = 2.5
ORIGIN = np.array([-20.0, 30.0, 10.0])  # LPS of the first slice's first pixel


def write_series(folder, hu):
    """``hu`` (SLICES, ROWS, COLS) Hounsfield units as a CT series, files in shuffled order."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
    os.makedirs(folder)
    study, series, frame_of_ref = generate_uid(), generate_uid(), generate_uid()
    uids = []
    for k in np.random.default_rng(0).permutation(SLICES):
        uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = osp.join(folder, f'img_{uid[-6:]}.dcm')
        ds = FileDataset(path, {}, file_meta=meta, preamble=b'\0' * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, uid
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.FrameOfReferenceUID = frame_of_ref
        ds.Modality, ds.PatientID, ds.PatientName = 'CT', 'P1', 'Test^Patient'
        ds.PatientBirthDate, ds.PatientSex, ds.StudyID, ds.AccessionNumber = '', 'O', '1', ''
        ds.ReferringPhysicianName, ds.StudyDate, ds.StudyTime = '', '20260101', '120000'
        ds.SeriesNumber, ds.InstanceNumber = 1, int(k) + 1
        ds.ImageType = ['ORIGINAL', 'PRIMARY', 'AXIAL']
        ds.Rows, ds.Columns = ROWS, COLS
        ds.PixelSpacing = list(SPACING)
        ds.SliceThickness = THICKNESS
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = list(ORIGIN + [0, 0, THICKNESS * k])
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, 'MONOCHROME2'
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = (hu[k] + 1024).astype(np.int16).tobytes()
        ds.save_as(path, enforce_file_format=True)
        uids.append((int(k), uid))
    return [uid for _, uid in sorted(uids)]  # in slice order


def ras_affine():
    lps = np.eye(4)
    lps[:3, 0] = [SPACING[1], 0, 0]
    lps[:3, 1] = [0, SPACING[0], 0]
    lps[:3, 2] = [0, 0, THICKNESS]
    lps[:3, 3] = ORIGIN
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def test_a_dicom_series_in_gives_a_nifti_volume_and_a_dicom_seg(tmp_path):
    import nibabel as nib
    yy, xx = np.mgrid[0:ROWS, 0:COLS]
    hu = np.full((SLICES, ROWS, COLS), -50.0)
    labels = np.zeros((SLICES, ROWS, COLS), np.uint8)
    for k in range(SLICES):
        blob = ((yy - 14 - k) / 7.0) ** 2 + ((xx - 30) / 9.0) ** 2 <= 1  # off-centre
        hu[k][blob], labels[k][blob] = 150.0, 1
    series = tmp_path / 'ct_series'
    uids = write_series(str(series), hu)
    # The reference labels as a NIfTI volume on the series' grid: (columns, rows, slices).
    nib.save(nib.Nifti1Image(labels.transpose(2, 1, 0), ras_affine()),
             str(tmp_path / 'ref_labels.nii.gz'))
    from mmseg_medpersam.datasets.io import load_image, volume_shape
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
    assert np.allclose(volume.affine, ras_affine())  # the series' geometry
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


def test_a_multi_frame_file_is_a_volume(tmp_path):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    from mmseg_medpersam.datasets.io import is_volume, load_image, volume_shape
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = str(tmp_path / 'frames.dcm')
    ds = FileDataset(path, {}, file_meta=meta, preamble=b'\0' * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, generate_uid()
    ds.Modality, ds.Rows, ds.Columns, ds.NumberOfFrames = 'OT', ROWS, COLS, 3
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, 'MONOCHROME1'
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    frames = np.zeros((3, ROWS, COLS), np.uint8)
    frames[1, 10:20, 10:30] = 200
    ds.PixelData = frames.tobytes()
    ds.save_as(path, enforce_file_format=True)
    assert is_volume(path) and volume_shape(path) == (COLS, ROWS, 3)
    middle = load_image(path, 1)[..., 0]
    # MONOCHROME1: high stored values are dark, so the bright block shows as the dark part
    assert middle.min() < middle.max() and (middle == middle.min()).sum() == 10 * 20
