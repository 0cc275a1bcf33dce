"""Nothing is lost on the way out: checked atomic writes, outputs checked up front, unique
names, a resume that verifies, settings checked before any image (issue 18)."""
import errno
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import (
    REPO_ROOT,
    TINY_CONFIG,
    fast_warp,
    folder_options,
    load_tool,
    make_folder_task,
    write_png,
)

from mmseg_medpersam.utils import atomic

WARP_ONLY = osp.join(REPO_ROOT, 'configs', 'medpersam', 'warp-only_mni152-wm.py')
FAST = fast_warp()


def _full_disk_for(monkeypatch, name):
    """Writes of files called ``name`` fail as on a full disk (ENOSPC), others go through."""
    real = os.fdopen

    def fdopen(fd, *args, **kwargs):
        handle = real(fd, *args, **kwargs)
        if osp.basename(os.readlink(f'/proc/self/fd/{fd}')).startswith(f'.{name}.'):
            def write(_data):
                raise OSError(errno.ENOSPC, 'No space left on device')
            handle.write = write
        return handle

    monkeypatch.setattr(atomic.os, 'fdopen', fdopen)


# --------------------------------------------------------------------------- the report
def test_a_report_that_cannot_be_written_loses_nothing(tmp_path, folder_task, run_tool, capsys,
                                                       monkeypatch):
    report = tmp_path / 'metrics.json'
    report.write_text('{"mDice": 1.0, "earlier": true}')
    _full_disk_for(monkeypatch, 'metrics.json')
    code = load_tool('test').main([TINY_CONFIG, '--work-dir', str(tmp_path / 'w'),
                                   '--out-metrics', str(report), '--cfg-options',
                                   *[f'{k}={v}' for k, v in folder_options(folder_task).items()]])
    captured = capsys.readouterr()
    assert code == 5
    errors = [line for line in captured.err.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1 and str(report) in errors[0] and 'No space left' in errors[0]
    assert json.loads(report.read_text()) == {'mDice': 1.0, 'earlier': True}  # intact
    assert '"oneshot/mDice"' in captured.out  # the numbers were printed all the same
    lines = (tmp_path / 'metrics.per_image.jsonl').read_text().splitlines()
    assert sorted(json.loads(line)['name'] for line in lines) == ['t1', 't2']


def test_a_real_full_disk(tmp_path, folder_task):
    """The same on a full tmpfs (needs mount rights: skipped where there are none)."""
    disk = tmp_path / 'disk'
    disk.mkdir()
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip('cannot mount a tmpfs here')
    try:
        report = disk / 'm.json'
        report.write_text('{"earlier": true}')
        with open(disk / 'fill', 'wb') as f:  # fill the disk
            try:
                f.write(b'\0' * 100_000)
            except OSError:
                pass
        proc = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', 'test.py'),
                               TINY_CONFIG, '--work-dir', str(tmp_path / 'w'), '--out-metrics',
                               str(report), '--cfg-options',
                               *[f'{k}={v}' for k, v in folder_options(folder_task).items()]],
                              capture_output=True, text=True, cwd=REPO_ROOT)
        assert proc.returncode == 5, proc.stderr[-2000:]
        assert proc.stderr.strip().splitlines()[-1].startswith(f'error: {report}: cannot write')
        assert json.loads(report.read_text()) == {'earlier': True}
    finally:
        subprocess.run(['umount', str(disk)])


@pytest.mark.parametrize('where', ['--out-metrics', '--out-masks', '--show-dir', '--work-dir'])
def test_unusable_output_locations_stop_before_any_work(tmp_path, folder_task, capsys, where):
    blocker = tmp_path / 'a_file'
    blocker.write_text('x')
    target = str(tmp_path) if where == '--out-metrics' else str(blocker / 'sub')
    argv = [TINY_CONFIG] + [a for pair in {'--work-dir': str(tmp_path / 'w'),
                                          '--out-metrics': str(tmp_path / 'm.json'),
                                          where: target}.items() for a in pair]
    argv += ['--cfg-options', *[f'{k}={v}' for k, v in folder_options(folder_task).items()]]
    code = load_tool('test').main(argv)
    err = capsys.readouterr().err
    assert code == 5, err
    errors = [line for line in err.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1 and target in errors[0]
    assert not osp.exists(tmp_path / 'w' / 'vis_data')  # nothing ran


# --------------------------------------------------------------------------- settings
def test_a_bad_warping_setting_stops_before_any_image(tmp_path):
    """Exit 4, one line, before any image is loaded (the warping model is built with the head)."""
    proc = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', 'test.py'), WARP_ONLY,
                           '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                           'model.head.warping.schedule.iters=-1'], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=60)
    assert proc.returncode == 4
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error: ')]
    assert errors == [f'error: {WARP_ONLY}: WarpingModel: iters must be an integer >= 0, got -1']
    assert 'Iter(test)' not in proc.stdout + proc.stderr


@pytest.mark.parametrize('option, message', [
    ('model.head.warping.schedule.optimizer.lr=fast', "optimizer {'type': 'Adam', 'lr': 'fast'}"),
    ('model.head.warping.itres=5', "WarpingModel: unknown setting 'itres'"),
    ('model.head.warping.schedule.itres=5', "WarpingModel: unknown schedule settings ['itres']"),
    ('model.head.warping.schedule.iters=abc', "iters must be an integer >= 0, got 'abc'"),
])
def test_warping_settings_are_checked_when_built(tmp_path, folder_task, run_tool, capsys,
                                                 option, message):
    key, value = option.split('=')
    code, out = run_tool(WARP_ONLY, dict(folder_options(folder_task), **{key: value}))
    err = capsys.readouterr().err
    assert code == 4 and message in err, err
    assert not osp.exists(out)


def test_an_unknown_device_is_a_setting_error(folder_task, run_tool, capsys):
    code, _ = run_tool(TINY_CONFIG, folder_options(folder_task), extra=['--device', 'tpu'])
    assert code == 4 and "--device tpu: not a device" in capsys.readouterr().err


def test_interrupt_is_one_line_and_exit_130(capsys):
    from mmseg_medpersam.apis import run_tool

    def body():
        raise KeyboardInterrupt

    assert run_tool(body) == 130
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('interrupted:')


# --------------------------------------------------------------------------- names
def test_volumes_of_the_same_file_name_get_one_mask_per_target(tmp_path, run_tool):
    """case1/imaging.nii.gz and case2/imaging.nii.gz: every slice its own mask and entry."""
    import nibabel as nib
    for case in ('case1', 'case2'):
        (tmp_path / case).mkdir()
        img = np.full((40, 48, 4), 30, np.uint8)
        seg = np.zeros((40, 48, 4), np.uint8)
        img[10:30, 12:36] = 200
        seg[10:30, 12:36] = 1
        nib.save(nib.Nifti1Image(img, np.eye(4)), str(tmp_path / case / 'imaging.nii.gz'))
        nib.save(nib.Nifti1Image(seg, np.eye(4)), str(tmp_path / case / 'segmentation.nii.gz'))
    masks = tmp_path / 'masks'
    config = tmp_path / 'kits_like.py'
    volumes = [dict(img=f'{c}/imaging.nii.gz', seg=f'{c}/segmentation.nii.gz')
               for c in ('case1', 'case2')]
    config.write_text(f"_base_ = [{TINY_CONFIG!r}]\n"
                      f"test_dataloader = dict(dataset=dict(type='NiftiSliceDataset', "
                      f"data_root={str(tmp_path)!r}, volumes={volumes!r}, "
                      f"reference=dict(volume=0, slice=1)))\n")
    code, out = run_tool(str(config), extra=['--out-masks', str(masks)])
    assert code == 0
    report = json.load(open(out))
    names = [e['name'] for e in report['per_image']]
    assert len(names) == 7 == len(set(names))  # 2 x 4 slices, less the reference
    assert sorted(os.listdir(masks)) == sorted(f'{n}.png' for n in names)
    assert 'case2_imaging_0001' in names and 'case1_imaging_0001' not in names


# --------------------------------------------------------------------------- infer.py
def _infer(root, out, *extra):
    return load_tool('infer').main([
        WARP_ONLY, '--reference', osp.join(root, 'images', 'ref.png'), '--reference-mask',
        osp.join(root, 'masks', 'ref.png'), '--images', osp.join(root, 'images'),
        '--out-dir', str(out), '--cfg-options', *[f'{k}={v}' for k, v in FAST.items()],
        *extra])


def test_resume_redoes_damaged_outputs_and_refuses_other_settings(folder_task, tmp_path,
                                                                   capsys):
    out = tmp_path / 'out'
    assert _infer(folder_task, out) == 0
    summary = json.load(open(out / 'summary.json'))
    good = cv2.imread(str(out / 'masks' / 't1.png'), cv2.IMREAD_UNCHANGED)
    (out / 'masks' / 't1.png').write_bytes(open(out / 'masks' / 't1.png', 'rb').read()[:40])
    (out / 'panels' / 't2.png').write_bytes(b'')  # a 0-byte panel left by a kill
    assert _infer(folder_task, out, '--resume') == 0
    assert np.array_equal(cv2.imread(str(out / 'masks' / 't1.png'), cv2.IMREAD_UNCHANGED), good)
    assert os.path.getsize(out / 'panels' / 't2.png') > 0
    assert json.load(open(out / 'summary.json')) == summary
    capsys.readouterr()
    other = load_tool('infer').main([
        WARP_ONLY, '--reference', osp.join(folder_task, 'images', 't1.png'),
        '--reference-mask', osp.join(folder_task, 'masks', 't1.png'), '--images',
        osp.join(folder_task, 'images'), '--out-dir', str(out), '--resume', '--cfg-options',
        *[f'{k}={v}' for k, v in FAST.items()]])
    err = capsys.readouterr().err
    assert other == 4 and 'reference' in err and '--overwrite' in err
    assert json.load(open(out / 'summary.json')) == summary  # nothing of it touched


def test_panel_read_after_a_zero_byte_file_is_redone_even_if_the_mask_is_fine(folder_task,
                                                                               tmp_path):
    out = tmp_path / 'out'
    assert _infer(folder_task, out) == 0
    (out / 'panels' / 't1.png').write_bytes(b'')
    assert _infer(folder_task, out, '--resume') == 0
    assert cv2.imread(str(out / 'panels' / 't1.png')) is not None


def test_binary_255_volume_holds_class_indices(tmp_path):
    import nibabel as nib
    img = np.full((40, 48, 4), 30, np.uint8)
    seg = np.zeros((40, 48, 4), np.uint8)
    img[10:30, 12:36] = 200
    seg[10:30, 12:36] = 1
    nib.save(nib.Nifti1Image(img, np.eye(4)), str(tmp_path / 'vol.nii.gz'))
    nib.save(nib.Nifti1Image(seg, np.eye(4)), str(tmp_path / 'lab.nii.gz'))
    code = load_tool('infer').main([
        WARP_ONLY, '--reference', f'{tmp_path}/vol.nii.gz#1', '--reference-mask',
        f'{tmp_path}/lab.nii.gz#1', '--images', str(tmp_path / 'vol.nii.gz'), '--out-dir',
        str(tmp_path / 'out'), '--binary-255', '--cfg-options',
        *[f'{k}={v}' for k, v in FAST.items()]])
    assert code == 0
    labels = np.asarray(nib.load(str(tmp_path / 'out' / 'volumes' / 'vol_seg.nii.gz')).dataobj)
    assert set(np.unique(labels).tolist()) <= {0, 1} and labels.any()
    mask = cv2.imread(str(tmp_path / 'out' / 'masks' / 'vol_0000.png'), cv2.IMREAD_UNCHANGED)
    assert set(np.unique(mask).tolist()) <= {0, 255}  # the PNGs are 0/255 as asked


def test_a_truncated_volume_is_one_message_and_no_label_volume(tmp_path, folder_task, capsys):
    import nibabel as nib
    data = nib.Nifti1Image(np.full((40, 48, 8), 100, np.uint8), np.eye(4)).to_bytes()
    (tmp_path / 'cut.nii').write_bytes(data[:len(data) // 2])
    code = load_tool('infer').main([
        WARP_ONLY, '--reference', osp.join(folder_task, 'images', 'ref.png'),
        '--reference-mask', osp.join(folder_task, 'masks', 'ref.png'), '--images',
        str(tmp_path / 'cut.nii'), osp.join(folder_task, 'images', 't1.png'), '--out-dir',
        str(tmp_path / 'out'), '--cfg-options', *[f'{k}={v}' for k, v in FAST.items()]])
    err = capsys.readouterr().err
    assert code == 3
    assert err.count(f'{tmp_path / "cut.nii"}: its voxel data cannot be read') == 1
    summary = json.load(open(tmp_path / 'out' / 'summary.json'))
    assert summary['volumes'] == [] and [t['name'] for t in summary['targets']] == ['t1']


def test_num_classes_below_two_is_a_setting_error(folder_task, tmp_path, capsys):
    code = _infer(folder_task, tmp_path / 'out', '--num-classes', '0')
    assert code == 4 and '--num-classes 0' in capsys.readouterr().err


# --------------------------------------------------------------------------- inputs
def test_a_dangling_link_among_the_images_is_reported(tmp_path, run_tool, capsys):
    root = make_folder_task(str(tmp_path / 'task'), stems=('ref', 't1', 't2'))
    os.symlink(str(tmp_path / 'gone.png'), osp.join(root, 'images', 't3.png'))
    write_png(osp.join(root, 'masks', 't3.png'), np.zeros((64, 80), np.uint8))
    code, out = run_tool(TINY_CONFIG, folder_options(root))
    assert code == 3
    report = json.load(open(out))
    assert [e['name'] for e in report['per_image']] == ['t1', 't2']
    assert len(report['skipped']) == 1 and 't3.png' in report['skipped'][0]


def test_an_all_nan_image_is_refused_by_name(tmp_path):
    from mmseg_medpersam.datasets.loading import load_image
    from mmseg_medpersam.structures.errors import OneShotDataError
    path = str(tmp_path / 'nan.tif')
    cv2.imwrite(path, np.full((40, 40), np.nan, np.float32))
    with pytest.raises(OneShotDataError, match='nan.tif: no pixel has a finite value'):
        load_image(path)


def test_a_palette_png_mask_gives_its_indices(tmp_path):
    from PIL import Image

    from mmseg_medpersam.datasets.labels import load_label_map
    labels = np.zeros((20, 30), np.uint8)
    labels[5:10, 5:20] = 1
    labels[12:18, 3:9] = 2
    img = Image.fromarray(labels, mode='P')
    img.putpalette([0, 0, 0, 200, 30, 30, 30, 200, 30] + [0] * (256 * 3 - 9))
    path = str(tmp_path / 'palette.png')
    img.save(path)
    assert np.array_equal(load_label_map(path, 3), labels)


def test_random_bytes_as_a_checkpoint_are_called_what_they_are(tmp_path):
    from mmseg_medpersam.utils.checkpoint import CheckpointError, read_file
    path = tmp_path / 'weights.pth'
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match='not a PyTorch checkpoint: the file is damaged'):
        read_file(str(path), 'checkpoint')


def test_an_unreadable_target_mask_does_not_change_the_fit(tmp_path, run_tool):
    """The transductive fit loads no label file: a target whose ground truth is unreadable is
    left out of the scores only, and the others' predictions do not move."""
    root = make_folder_task(str(tmp_path / 'task'), stems=('ref', 't1', 't2', 't3'))
    masks = str(tmp_path / 'm1')
    options = dict(folder_options(root), **FAST)
    assert run_tool(WARP_ONLY, options, extra=['--out-masks', masks])[0] == 0
    with open(osp.join(root, 'masks', 't3.png'), 'wb') as f:
        f.write(b'not a png')
    masks2 = str(tmp_path / 'm2')
    code, out = run_tool(WARP_ONLY, options, extra=['--out-masks', masks2])
    assert code == 3 and 't3.png' in json.load(open(out))['skipped'][0]
    for name in ('t1.png', 't2.png'):
        assert np.array_equal(cv2.imread(osp.join(masks, name), cv2.IMREAD_UNCHANGED),
                              cv2.imread(osp.join(masks2, name), cv2.IMREAD_UNCHANGED)), name


def test_compare_keeps_the_row_of_a_run_that_scored_some_targets(tmp_path):
    root = make_folder_task(str(tmp_path / 'task'), stems=('ref', 't1', 't2'))
    with open(osp.join(root, 'masks', 't2.png'), 'wb') as f:
        f.write(b'broken')
    proc = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', 'compare.py'),
                           TINY_CONFIG, '--work-dir', str(tmp_path / 'cmp'), '--cfg-options',
                           *[f'{k}={v}' for k, v in folder_options(root).items()]],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '| PerSAM |' in proc.stdout and 'exit 3' in proc.stderr


def test_a_skipped_target_is_listed_once_with_dataloader_workers(tmp_path, run_tool):
    """A worker re-raises the target's error wrapped in its traceback: still one entry."""
    root = make_folder_task(str(tmp_path / 'task'), stems=('ref', 't1', 't2', 't3'))
    with open(osp.join(root, 'images', 't2.png'), 'wb') as f:
        f.write(b'not a png')
    options = dict(folder_options(root), **FAST, **{'test_dataloader.num_workers': 2,
                                                    'test_dataloader.persistent_workers': False})
    code, out = run_tool(WARP_ONLY, options)
    assert code == 3
    (skipped, ) = json.load(open(out))['skipped']
    assert skipped.startswith(osp.join(root, 'images', 't2.png')) and 'Traceback' not in skipped


# --------------------------------------------------------------------------- one run per folder
def _mask(out, name):
    return cv2.imread(str(out / 'masks' / f'{name}.png'), cv2.IMREAD_UNCHANGED)


def test_resume_redoes_exactly_the_targets_whose_input_changed(folder_task, tmp_path):
    """The record is of the inputs' pixels, not their paths: a changed target (same name and
    size) is segmented again, equal to a fresh run's; a changed reference redoes all."""
    from conftest import blob_pair, write_png
    out, fresh = tmp_path / 'out', tmp_path / 'fresh'
    assert _infer(folder_task, out) == 0
    before = {n: _mask(out, n) for n in ('t1', 't2')}
    img, _ = blob_pair(64, 80, cy=0.3, cx=0.35, labels=(1, ), seed=9)  # moved elsewhere
    write_png(osp.join(folder_task, 'images', 't2.png'), img)
    assert _infer(folder_task, out, '--resume') == 0
    assert _infer(folder_task, fresh) == 0
    assert np.array_equal(_mask(out, 't1'), before['t1'])
    assert not np.array_equal(_mask(out, 't2'), before['t2'])
    assert np.array_equal(_mask(out, 't2'), _mask(fresh, 't2'))
    ref_mask = osp.join(folder_task, 'masks', 'ref.png')  # the reference label is redrawn
    write_png(ref_mask, np.pad(cv2.imread(ref_mask, cv2.IMREAD_UNCHANGED)[4:], ((0, 4), (0, 0))))
    assert _infer(folder_task, out, '--resume') == 0
    assert _infer(folder_task, fresh, '--overwrite') == 0
    for n in ('t1', 't2'):
        assert np.array_equal(_mask(out, n), _mask(fresh, n)), n


def test_a_used_out_dir_belongs_to_its_run(folder_task, tmp_path, capsys):
    out = tmp_path / 'out'
    assert _infer(folder_task, out) == 0
    summary = (out / 'summary.json').read_text()
    capsys.readouterr()
    assert _infer(folder_task, out, '--binary-255') == 4  # other settings, no flag
    err = capsys.readouterr().err
    assert '--resume' in err and '--overwrite' in err and len(err.strip().splitlines()) == 1
    assert _infer(folder_task, out) == 4  # the same settings, no flag: still refused
    assert (out / 'summary.json').read_text() == summary
    assert set(np.unique(_mask(out, 't1'))) <= {0, 1}


def test_overwrite_leaves_nothing_of_the_earlier_run(folder_task, tmp_path):
    out = tmp_path / 'out'
    assert _infer(folder_task, out) == 0
    os.remove(osp.join(folder_task, 'images', 't2.png'))
    assert _infer(folder_task, out, '--overwrite', '--binary-255') == 0
    assert sorted(os.listdir(out / 'masks')) == ['t1.png']
    assert set(np.unique(_mask(out, 't1'))) == {0, 255}
    summary = json.load(open(out / 'summary.json'))
    assert [t['name'] for t in summary['targets']] == ['t1']


def test_a_second_run_into_a_folder_in_use_is_refused(folder_task, tmp_path, capsys):
    import fcntl
    out = tmp_path / 'out'
    out.mkdir()
    with open(out / '.medpersam.lock', 'w') as held:  # another run holds the folder
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        capsys.readouterr()
        assert _infer(folder_task, out) == 4
        assert 'another run is writing into this folder' in capsys.readouterr().err
    assert not (out / 'masks').exists()
    assert _infer(folder_task, out) == 0  # released: the folder can be used


def test_binary_255_with_several_classes_is_refused(tmp_path, capsys):
    from conftest import make_folder_task
    root = make_folder_task(str(tmp_path / 'task'), labels=(1, 2))
    assert _infer(root, tmp_path / 'out', '--binary-255') == 4
    assert '--binary-255' in capsys.readouterr().err


def test_a_reference_among_the_targets_is_noted(folder_task, tmp_path, capsys):
    out = tmp_path / 'out'
    assert _infer(folder_task, out) == 0  # the images folder holds ref.png too
    assert 'ref.png: a reference, not segmented' in capsys.readouterr().err
    summary = json.load(open(out / 'summary.json'))
    assert any('ref.png: a reference' in n for n in summary['notes'])


def test_label_volumes_are_byte_identical_across_identical_runs(tmp_path):
    import nibabel as nib
    img = np.full((30, 32, 3), 30, np.uint8)
    seg = np.zeros((30, 32, 3), np.uint8)
    img[8:20, 6:14], seg[8:20, 6:14] = 200, 1
    nib.save(nib.Nifti1Image(img, np.eye(4)), str(tmp_path / 'vol.nii.gz'))
    nib.save(nib.Nifti1Image(seg, np.eye(4)), str(tmp_path / 'lab.nii.gz'))
    outputs = []
    for run in ('a', 'b'):
        code = load_tool('infer').main([
            WARP_ONLY, '--reference', f'{tmp_path}/vol.nii.gz#1', '--reference-mask',
            f'{tmp_path}/lab.nii.gz', '--images', f'{tmp_path}/vol.nii.gz', '--out-dir',
            str(tmp_path / run), '--cfg-options', *[f'{k}={v}' for k, v in FAST.items()]])
        assert code == 0
        outputs.append((tmp_path / run / 'volumes' / 'vol_seg.nii.gz').read_bytes())
    assert outputs[0] == outputs[1]


def test_a_volume_with_no_usable_slice_gets_no_label_volume(tmp_path, folder_task):
    import nibabel as nib
    data = np.full((20, 24, 3), np.nan, np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / 'nan.nii.gz'))
    out = tmp_path / 'out'
    code = load_tool('infer').main([
        WARP_ONLY, '--reference', osp.join(folder_task, 'images', 'ref.png'),
        '--reference-mask', osp.join(folder_task, 'masks', 'ref.png'), '--images',
        osp.join(folder_task, 'images', 't1.png'), str(tmp_path / 'nan.nii.gz'), '--out-dir',
        str(out), '--cfg-options', *[f'{k}={v}' for k, v in FAST.items()]])
    assert code == 3
    summary = json.load(open(out / 'summary.json'))
    assert summary['volumes'] == [] and not (out / 'volumes' / 'nan_seg.nii.gz').exists()
    assert any('nan.nii.gz: no slice could be segmented' in s for s in summary['skipped'])


def test_usage_errors_exit_with_the_setting_code(capsys):
    with pytest.raises(SystemExit) as exit_:
        load_tool('infer').parse_args(['cfg.py', '--reference', 'a.png'])
    assert exit_.value.code == 4
    with pytest.raises(SystemExit) as exit_:  # no abbreviations: --out is not --out-dir
        load_tool('infer').parse_args(['cfg.py', '--reference', 'a', '--reference-mask', 'b',
                                       '--images', 'c', '--out', 'd'])
    assert exit_.value.code == 4


def test_a_full_disk_for_every_file_still_shows_every_score(tmp_path, folder_task, capsys,
                                                              monkeypatch):
    """Neither the report nor its per-image sidecar can be written: each target's score is
    printed as it finishes, so nothing computed is lost."""
    _full_disk_for(monkeypatch, 'metrics.json')
    _full_disk_for(monkeypatch, 'metrics.per_image.jsonl')
    code = load_tool('test').main([TINY_CONFIG, '--work-dir', str(tmp_path / 'w'),
                                   '--out-metrics', str(tmp_path / 'metrics.json'),
                                   '--cfg-options',
                                   *[f'{k}={v}' for k, v in folder_options(folder_task).items()]])
    err = capsys.readouterr().err
    assert code == 5
    scores = [json.loads(line.split('per-image score: ', 1)[1]) for line in err.splitlines()
              if line.startswith('per-image score: ')]
    assert sorted(s['name'] for s in scores) == ['t1', 't2']
    assert all(s['dice'] is not None for s in scores)
