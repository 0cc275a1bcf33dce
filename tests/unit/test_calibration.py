"""Med-PerSAM's self-calibration: the choice rule, the refinement rule it shares with the head,
and the whole calibration with a SAM that finds the truth and one that does not."""
import numpy as np
import pytest
import torch

from mmseg_medpersam.methods.medpersam import MedPerSAMHead
from mmseg_medpersam.methods.medpersam.calibration import (
    SAMStep,
    StepTrace,
    augmented_cases,
    choose,
    refinement_outcome,
)
from mmseg_medpersam.methods.medpersam.warping.augment import RandomDeformation
from mmseg_medpersam.prompts import ReferenceContext
from mmseg_medpersam.sam import DecoderOutput, FrameGeometry, ImageEmbedding


def _step(agreement, change=0.5, empty=False):
    return StepTrace(torch.zeros(2, 2, dtype=torch.bool), agreement, change, empty)


def test_refinement_outcome_is_the_loops_rule():
    steps = [_step(0.96), _step(0.9), _step(0.97, change=0.99)]
    assert refinement_outcome(steps, 0.95, 3, 0.98) == (0, 'disagrees with warp')
    assert refinement_outcome(steps, 0.0, 3, 0.98) == (2, 'converged')
    assert refinement_outcome(steps, 0.0, 2, 0.98) == (1, 'iterations')
    assert refinement_outcome(steps[:1], 0.0, 3, 0.98) == (0, None)  # would go on
    assert refinement_outcome([_step(0.0, empty=True)], 0.0, 3, 0.98) == (-1, 'empty')


def test_choose_keeps_the_warp_unless_an_option_clearly_beats_it():
    a = SAMStep((0, 1), 1, 0.8)
    b = SAMStep((0, 1), 3, 0.9)
    c = SAMStep((1, ), 1, 0.9)
    assert choose({a: 0.905, b: 0.9}, warp=0.9, margin=0.01, tie=0.0025) == SAMStep(guard=None)
    # b and c tie with a (within 0.25 points): the highest guard, then the fewest SAM calls.
    assert choose({a: 0.95, b: 0.949, c: 0.9495}, 0.9, 0.01, 0.0025) == c
    assert choose({a: 0.95, b: 0.90}, 0.9, 0.01, 0.0025) == a
    assert choose({}, 0.9, 0.01, 0.0025) == SAMStep(guard=None)
    # An option ruled out (below the warp on the leave-one-out cases) is never chosen.
    assert choose({a: 0.95, b: 0.949, c: 0.9495}, 0.9, 0.01, 0.0025, vetoed={c}) == b
    assert choose({a: 0.95}, 0.9, 0.01, 0.0025, vetoed={a}) == SAMStep(guard=None)


def test_leave_one_out_cases_rule_out_options_below_the_warp_there():
    """Augmented copies flatter SAM; the leave-one-out cases are other images, as targets
    are: an option that wins on the copies but loses there is ruled out."""
    from mmseg_medpersam.methods.medpersam.calibration import Calibration, loo_vetoed
    flattered, steady = SAMStep((0,), 3, 0.7), SAMStep((0, 1), 1, 0.85)
    sources = ['augmented r1 #0', 'augmented r1 #1', 'leave-one-out r1', 'leave-one-out r2']
    warp = [0.80, 0.80, 0.85, 0.85]
    per_case = {flattered: [0.99, 0.99, 0.70, 0.80], steady: [0.84, 0.84, 0.86, 0.85]}
    assert loo_vetoed(per_case, warp, sources) == {flattered}
    assert loo_vetoed(per_case, warp, sources[:2] + ['augmented r2 #0'] * 2) == set()
    # Options are ranked on the augmented copies; leave-one-out cases only rule out.
    from mmseg_medpersam.methods.medpersam.calibration import selection
    assert selection(sources) == [0, 1] and selection(sources[2:]) == [0, 1]
    scores = {o: sum(v) / 4 for o, v in per_case.items()}
    vetoed = loo_vetoed(per_case, warp, sources)
    assert choose(scores, sum(warp) / 4, 0.01, 0.0025) == flattered  # the copies alone
    assert choose(scores, sum(warp) / 4, 0.01, 0.0025, vetoed) == steady
    calibration = Calibration(sources, warp, per_case)
    assert calibration.decide(0.01, 0.0025) == steady and calibration.vetoed == vetoed
    log = calibration.log(['mask', 'box'])
    assert log['warp_by_kind'] == {'augmented': 80.0, 'leave-one-out': 85.0}
    entry = next(o for o in log['options'] if o['option'].startswith('mask, K=3'))
    assert entry['vetoed'] and entry['by_kind'] == {'augmented': 99.0, 'leave-one-out': 75.0}


def test_augmented_cases_are_seeded_and_deform_image_and_masks_alike():
    h, w = 40, 50
    yy, xx = np.mgrid[0:h, 0:w]
    mask = torch.from_numpy(((yy - 20) / 8.0) ** 2 + ((xx - 25) / 10.0) ** 2 <= 1)
    image = torch.where(mask, 200.0, 30.0).expand(3, h, w).clone()
    first = augmented_cases(image, mask[None], 3, 7, RandomDeformation(), 48)
    again = augmented_cases(image, mask[None], 3, 7, RandomDeformation(), 48)
    for (i1, m1), (i2, m2) in zip(first, again):
        assert torch.equal(i1, i2) and torch.equal(m1, m2)
        assert m1.shape == (1, h, w) and not torch.equal(m1[0], mask)  # deformed
        bright = i1[0] > 115
        overlap = (bright & m1[0]).sum() / m1[0].sum()
        assert overlap > 0.9  # the mask moved with its image


class ThresholdSAM:
    """A stand-in SAM that answers every prompt with the bright part of the image it encoded
    (the truth on these images), or, ``wrong=True``, with a square in a corner."""

    def __init__(self, wrong=False):
        self.wrong = wrong
        self.masks = {}
        self.device = torch.device('cpu')

    def encode(self, image, key=None):
        emb = ImageEmbedding(torch.zeros(1, 256, 64, 64), FrameGeometry(tuple(image.shape[-2:]),
                                                                       1024))
        mask = image[0] > 115
        if self.wrong:
            mask = torch.zeros_like(mask)
            mask[:8, :8] = True
        self.masks[id(emb)] = mask
        return emb

    def decode(self, emb, point_coords=None, point_labels=None, boxes=None, mask_logits=None,
               multimask=True, decoder_hook=None):
        n = 1 if boxes is None else len(boxes)
        low = 20 * emb.geometry.image_to_frame(self.masks[id(emb)].float(), 256) - 10
        return DecoderOutput(low.expand(n, 3, 256, 256).clone(), torch.ones(n, 3),
                             emb.geometry)


@pytest.mark.parametrize('wrong', [False, True])
def test_calibration_uses_sam_only_where_it_finds_the_truth(wrong):
    """A SAM that answers with the truth beats a barely fitted warp on the augmented copies
    (SAM is chosen, with the highest guard that keeps it); one that answers elsewhere is
    never chosen (the warp alone)."""
    h, w = 48, 48
    yy, xx = np.mgrid[0:h, 0:w]
    mask = torch.from_numpy(((yy - 22) / 9.0) ** 2 + ((xx - 26) / 12.0) ** 2 <= 1)
    image = torch.where(mask, 200.0, 30.0).expand(3, h, w).clone()
    sam = ThresholdSAM(wrong)
    ref = ReferenceContext(image=image, mask=mask, embedding=sam.encode(image), key='ref',
                           label_map=mask.long())
    head = MedPerSAMHead(warping=dict(type='WarpingModel', schedule=dict(iters=2),
                                      network=dict(work_size=(48, 48))),
                         retrain_rounds=0, calibration=dict(cases=4))
    from mmseg_medpersam.methods.base import TargetImage
    state = head.fit(sam, [{1: ref}], [TargetImage(image.clone(), 't')])
    log = state.log['calibration']
    assert log['cases'] == 4 and len(log['options']) == len(head._prompt_sets()) * 2 * 6
    if wrong:
        assert not state.sam_step.uses_sam and log['choice'] == 'warp only'
    else:
        assert state.sam_step.uses_sam and log['options'][0]['mdice'] > log['warp'] + 1
        chosen = [o['mdice'] for o in log['options'] if o['option'] == log['choice']]
        assert chosen and chosen[0] >= log['options'][0]['mdice'] - 0.25
