"""The simulated inter-subject variation tasks: seeded, documented magnitudes, aligned masks."""
import os
import os.path as osp

import cv2
import numpy as np
import pytest

from mmseg_medpersam.datasets.mni152 import MNI152_TASKS, axial_slice, load_template, slice_name
from mmseg_medpersam.datasets.variation import (
    Variation,
    apply_variation,
    draws_for,
    prepare_variation,
)


def _files(root):
    return {f'{sub}/{f}': cv2.imread(osp.join(root, sub, f), cv2.IMREAD_UNCHANGED)
            for sub in ('images', 'masks') for f in sorted(os.listdir(osp.join(root, sub)))}


@pytest.fixture(scope='module')
def ventricles_var(tmp_path_factory):
    return prepare_variation(str(tmp_path_factory.mktemp('vvar')), 'ventricles', 1.0, 0)


def test_generation_is_deterministic_under_the_seed(ventricles_var, tmp_path):
    again = _files(prepare_variation(str(tmp_path / 'again'), 'ventricles', 1.0, 0))
    first = _files(ventricles_var)
    assert first.keys() == again.keys()
    assert all(np.array_equal(first[k], again[k]) for k in first)
    other = _files(prepare_variation(str(tmp_path / 'seed1'), 'ventricles', 1.0, 1))
    assert not np.array_equal(other['images/z076.png'], first['images/z076.png'])
    # The reference slice is never deformed.
    assert np.array_equal(other['images/z088.png'], first['images/z088.png'])


@pytest.mark.parametrize('severity', [1.0, 2.0])
def test_displacement_magnitudes_are_the_documented_ones(severity):
    v = Variation()
    draws = draws_for('brain', severity, seed=3)
    assert len(draws) == len(MNI152_TASKS['brain'].slices) - 1
    for d in draws.values():
        rms = np.sqrt((d.elastic ** 2).sum(0).mean())
        assert rms == pytest.approx(v.elastic_mm * severity, rel=1e-6)
        assert abs(d.angle_deg) <= v.rotation_deg * severity
        assert abs(np.log(d.scale)) <= -np.log(1 - v.scale * severity) + 1e-12
        assert np.hypot(*d.shift) <= v.shift_mm * severity + 1e-9
        assert d.bias_field.min() >= np.exp(-v.bias * severity) - 1e-9
        assert d.bias_field.max() <= np.exp(v.bias * severity) + 1e-9
    angles = [d.angle_deg for d in draws.values()]
    assert max(np.abs(angles)) > 0.5 * v.rotation_deg * severity  # the range is used
    assert draws_for('brain', 0.0, seed=3)[60].elastic.max() == 0  # severity 0: no change


def test_masks_are_each_targets_own_slice_deformed_with_its_image(ventricles_var):
    spec = MNI152_TASKS['ventricles']
    volumes = load_template()
    labels = spec.label(volumes)
    draws = draws_for('ventricles', 1.0, seed=0)
    files = _files(ventricles_var)
    rng = np.random.default_rng(0)
    for z in (spec.slices[0], spec.slices[-1]):
        image = np.clip(np.rint(axial_slice(volumes['t1'], z)), 0, 255).astype(np.uint8)
        mask = axial_slice(labels, z).astype(np.uint8)
        stored_mask = files[f'masks/{slice_name(z)}.png']
        expected_image, expected_mask = apply_variation(image, mask, draws[z], 0.0, rng)
        assert np.array_equal(stored_mask, expected_mask)  # the same map as the image
        assert not np.array_equal(stored_mask, mask)  # deformed, not a copy
        stored = files[f'images/{slice_name(z)}.png'].astype(float)
        brain = expected_image > 0
        assert np.abs(stored - expected_image)[brain].mean() < 0.05 * 255  # only noise differs
        # The mask sits on the dark CSF of its own image.
        assert stored[stored_mask > 0].mean() < stored[brain & (stored_mask == 0)].mean() - 40
    ref = spec.reference
    assert np.array_equal(files[f'masks/{slice_name(ref)}.png'], axial_slice(labels, ref))


def test_a_folder_with_other_data_is_refused(tmp_path):
    from mmseg_medpersam.structures.errors import OneShotDataError
    (tmp_path / 'mine.txt').write_text('x')
    with pytest.raises(OneShotDataError, match='holds other data'):
        prepare_variation(str(tmp_path), 'brain')
