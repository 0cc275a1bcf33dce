"""Heads: PerSAM cascade, PerSAM-F fit, Med-PerSAM refinement loop, Matcher merging."""
import numpy as np
import pytest
import torch

from mmseg_medpersam.methods import (
    MatcherHead,
    MedPerSAMHead,
    PerSAMFHead,
    PerSAMHead,
)
from mmseg_medpersam.methods.base import HeadResult, RefinementRecord, TargetImage
from mmseg_medpersam.methods.medpersam import MedPerSAMState
from mmseg_medpersam.methods.persam import fit_multimask_fusion
from mmseg_medpersam.prompts import PromptContext, Prompts, ReferenceContext
from mmseg_medpersam.sam import DecoderOutput, FrameGeometry, ImageEmbedding


def ellipse(h, w, cy, cx, ry, rx):
    yy, xx = np.mgrid[0:h, 0:w]
    return torch.from_numpy(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1)


class ScriptedSAM:
    """Stands in for ``SAMBackend.decode``: returns the next scripted (H, W) mask as logits."""

    def __init__(self, masks):
        self.masks = list(masks)
        self.calls = []

    def decode(self, emb, point_coords=None, point_labels=None, boxes=None, mask_logits=None,
               multimask=True, decoder_hook=None):
        prompts = Prompts(point_coords, point_labels, boxes, mask_logits, decoder_hook)
        self.calls.append(prompts)
        mask = self.masks[min(len(self.calls) - 1, len(self.masks) - 1)]
        low = 20 * emb.geometry.image_to_frame(mask.float(), 256) - 10
        c = 3 if multimask else 1
        b = prompts.num_sets
        return DecoderOutput(low.expand(b, c, 256, 256).clone(), torch.ones(b, c),
                             emb.geometry)


def ctx_for(mask, image=None, sam=None):
    h, w = mask.shape
    image = image if image is not None else torch.rand(3, h, w) * 255
    if sam is not None:
        emb = sam.encode(image)
    else:
        emb = ImageEmbedding(torch.randn(1, 256, 64, 64), FrameGeometry((h, w), 1024))
    ref = ReferenceContext(image=image, mask=mask, embedding=emb, key='ref',
                           label_map=mask.long())
    return PromptContext(reference=ref, target=emb, image=image, target_key='target')


def with_prior(ctx, prior):
    """``ctx`` and a Med-PerSAM fit whose warped prior on its target is ``prior``."""
    return ctx, MedPerSAMState(None, {ctx.target_key: {ctx.reference.label: prior}}, {})


def test_persam_survives_an_empty_intermediate_mask():
    mask = ellipse(60, 70, 30, 35, 15, 20)
    empty = torch.zeros_like(mask)
    sam = ScriptedSAM([empty, empty, empty])
    result = PerSAMHead().predict(sam, ctx_for(mask))
    assert len(sam.calls) == 3
    hook = sam.calls[0].decoder_hook
    assert hook.attn_sim is not None and hook.target_embedding is not None
    assert sam.calls[1].decoder_hook is None and sam.calls[1].mask_logits is not None
    assert sam.calls[2].boxes is None  # no box from an empty mask
    assert result.logits.shape == mask.shape and not result.mask.any()


def test_persam_cascade_uses_box_of_best_mask(tiny_sam):
    mask = ellipse(60, 70, 30, 35, 15, 20)
    target = ellipse(60, 70, 28, 40, 12, 18)
    sam = ScriptedSAM([target, target, target])
    result = PerSAMHead().predict(sam, ctx_for(mask))
    ys, xs = torch.nonzero(target, as_tuple=True)
    box = sam.calls[2].boxes[0]
    assert abs(box[0] - xs.min()) <= 1 and abs(box[3] - ys.max()) <= 1
    dice = 2 * (result.mask & target).sum() / (result.mask.sum() + target.sum())
    assert dice > 0.9


def test_persam_f_fit_lowers_loss_and_leaves_sam_untouched(tiny_sam):
    mask = ellipse(64, 64, 30, 32, 14, 18)
    image = torch.rand(3, 64, 64) * 255
    before = {k: v.clone() for k, v in tiny_sam.model.state_dict().items()}
    ctx = ctx_for(mask, image=image, sam=tiny_sam)
    head = PerSAMFHead(iters=200)
    with torch.no_grad():  # as inside mmengine's TestLoop
        state = head.fit(tiny_sam, [{1: ctx.reference}])
    first, last = state.losses[1]
    assert last < first
    weights = state.weights[1]
    assert weights.shape == (3, ) and abs(float(weights.sum()) - 1) < 1e-5
    assert not ctx.reference.cache.get('persam_f_weights')  # a returned value, not a cache
    for k, v in tiny_sam.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(not p.requires_grad for p in tiny_sam.model.parameters())
    result = head.predict(tiny_sam, ctx, state)
    assert result.logits.shape == (64, 64)


def test_fusion_fit_recovers_the_informative_output():
    target = ellipse(40, 40, 20, 20, 10, 10)
    good = torch.where(target, 5.0, -5.0)
    logits = torch.stack([-good, torch.full_like(good, -3.0), good])
    weights, (first, last) = fit_multimask_fusion(logits, target, iters=300, lr=1e-2)
    assert last < first and weights[2] > weights[0]


def test_medpersam_stops_on_convergence():
    mask = ellipse(60, 70, 30, 35, 15, 20)
    prior = mask.float()
    sam = ScriptedSAM([mask])  # SAM agrees with the warped mask at once
    head = MedPerSAMHead(num_iters=5, prompt_generators=[dict(type='MaskPrompt'),
                                                         dict(type='BoxPrompt')],
                         min_sam_agreement=0.0)
    result = head.predict(sam, *with_prior(ctx_for(mask), prior))
    assert result.refinement.iterations == 1 and len(sam.calls) == 1
    # a mask that keeps moving uses every iteration
    moving = [ellipse(60, 70, 30, 20 + 5 * i, 15, 15) for i in range(6)]
    sam = ScriptedSAM(moving)
    result = head.predict(sam, *with_prior(ctx_for(mask), prior))
    assert result.refinement.iterations == 5 and len(sam.calls) == 5
    assert torch.equal(result.mask, moving[4])
    assert torch.equal(result.prompt_mask, mask)


def test_medpersam_guard_keeps_the_warp_when_sam_leaves_the_structure():
    mask = ellipse(60, 70, 30, 35, 15, 20)
    elsewhere = ellipse(60, 70, 10, 10, 6, 6)
    refined = ellipse(60, 70, 31, 35, 15, 19)  # a local correction of the warp
    head = MedPerSAMHead(num_iters=3, min_sam_agreement=0.8)
    sam = ScriptedSAM([elsewhere])
    result = head.predict(sam, *with_prior(ctx_for(mask), mask.float()))
    assert torch.equal(result.mask, mask) and len(sam.calls) == 1
    assert result.refinement.stop == 'disagrees with warp' and not result.refinement.sam_used
    assert torch.equal(result.refinement.step_masks[0], elsewhere)  # what SAM said is recorded
    sam = ScriptedSAM([refined])
    result = head.predict(sam, *with_prior(ctx_for(mask), mask.float()))
    assert torch.equal(result.mask, refined) and result.refinement.sam_used
    # Without the guard, SAM's mask is taken whatever it is.
    result = MedPerSAMHead(num_iters=1, min_sam_agreement=0.0).predict(
        ScriptedSAM([elsewhere]), *with_prior(ctx_for(mask), mask.float()))
    assert torch.equal(result.mask, elsewhere)


def test_medpersam_does_not_mutate_the_context():
    mask = ellipse(60, 70, 30, 35, 15, 20)
    ctx = ctx_for(mask)
    before = (ctx.mask, ctx.logits)
    MedPerSAMHead(num_iters=2, min_sam_agreement=0.0).predict(
        ScriptedSAM([ellipse(60, 70, 31, 36, 15, 20)]), *with_prior(ctx, mask.float()))
    assert (ctx.mask, ctx.logits) == before


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_iters=-1), 'num_iters must be an integer >= 1, got -1'),
    (dict(num_iters=1.5), 'num_iters must be an integer'),
    (dict(retrain_rounds='abc'), "retrain_rounds must be an integer >= 0, got 'abc'"),
    (dict(min_sam_agreement=2), 'min_sam_agreement must be a number >= 0 and <= 1'),
    (dict(prior_threshold=1.0), 'prior_threshold must be a number > 0 and < 1'),
])
def test_medpersam_rejects_invalid_settings_when_built(kwargs, message):
    with pytest.raises(ValueError, match='MedPerSAMHead: ' + message):
        MedPerSAMHead(**kwargs)


def test_medpersam_keeps_last_mask_when_sam_returns_nothing():
    mask = ellipse(60, 70, 30, 35, 15, 20)
    sam = ScriptedSAM([torch.zeros_like(mask)])
    result = MedPerSAMHead(num_iters=3).predict(sam, *with_prior(ctx_for(mask), mask.float()))
    assert torch.equal(result.mask, mask)


@pytest.mark.parametrize('kind', ['pixel', 'border', 'components', 'full', 'empty'])
def test_medpersam_degenerate_priors_with_tiny_sam(tiny_sam, kind):
    h, w = 48, 56
    prior = torch.zeros(h, w)
    if kind == 'pixel':
        prior[20, 25] = 1
    elif kind == 'border':
        prior[:, :6] = 1
    elif kind == 'components':
        prior[4:10, 4:10] = 1
        prior[30:40, 30:50] = 1
    elif kind == 'full':
        prior[:] = 1
    ref_mask = ellipse(h, w, 24, 28, 10, 12)
    ctx = ctx_for(ref_mask, sam=tiny_sam)
    result = MedPerSAMHead(num_iters=2).predict(tiny_sam, *with_prior(ctx, prior))
    assert result.logits.shape == (h, w) and torch.isfinite(result.logits).all()
    if kind == 'empty':
        assert not result.mask.any() and result.refinement.iterations == 0


def test_warp_only_head_returns_the_warped_mask():
    mask = ellipse(40, 50, 20, 25, 8, 10)
    ctx = ctx_for(mask)
    result = MedPerSAMHead(use_sam=False).predict(None, *with_prior(ctx, mask.float() * 0.9))
    assert torch.equal(result.mask, mask)


def test_matcher_head_end_to_end_and_empty_reference(tiny_sam):
    mask = ellipse(64, 72, 30, 36, 14, 18)
    image = torch.rand(3, 64, 72) * 255
    head = MatcherHead(prompt_sampler=dict(
        type='MatcherPromptSampler', num_centers=5,
        encoder=dict(type='DINOv2Encoder', arch='tiny', img_size=112)))
    ctx = ctx_for(mask, image=image, sam=tiny_sam)
    result = head.predict(tiny_sam, ctx, head.fit(tiny_sam, [{1: ctx.reference}]))
    assert result.logits.shape == (64, 72)
    n = result.info['num_candidates']
    assert n == 6  # C(5,4) + C(5,5) subsets of the 5 k-means centres
    assert result.info['num_merged'] <= 10
    empty = ctx_for(torch.zeros_like(mask), image=image, sam=tiny_sam)
    with pytest.raises(ValueError, match='empty'):
        head.predict(tiny_sam, empty, head.fit(tiny_sam, [{1: empty.reference}]))


def test_medpersam_fit_on_one_target(tiny_sam):
    """Fitted on the reference and one target alone, the warp moves the mask onto it."""
    h, w = 64, 64
    ref_mask = ellipse(h, w, 30, 30, 12, 14)
    tgt_mask = ellipse(h, w, 34, 36, 12, 14)
    ref_img = torch.where(ref_mask, 200.0, 30.0).expand(3, h, w).clone()
    tgt_img = torch.where(tgt_mask, 200.0, 30.0).expand(3, h, w).clone()
    ctx = ctx_for(ref_mask, image=ref_img, sam=tiny_sam)
    ctx.image, ctx.target = tgt_img, tiny_sam.encode(tgt_img)
    head = MedPerSAMHead(use_sam=False, warping=dict(type='WarpingModel', schedule=dict(iters=150),
                                                     network=dict(work_size=(64, 64))))
    state = head.fit(None, [{1: ctx.reference}], [TargetImage(tgt_img, ctx.target_key)])
    assert bool(state.warper.fitted) and state.covers(ctx.target_key)
    assert not state.covers('another target')
    result = head.predict(None, ctx, state)
    dice = lambda a, b: float(2 * (a & b).sum() / (a.sum() + b.sum()))  # noqa: E731
    assert dice(result.mask, tgt_mask) > dice(ref_mask, tgt_mask) + 0.05


@pytest.mark.parametrize('head_cfg', ['persam', 'matcher'])
def test_one_pixel_reference_mask_is_usable(tiny_sam, head_cfg):
    mask = torch.zeros(64, 72, dtype=torch.bool)
    mask[30, 40] = True
    image = torch.rand(3, 64, 72) * 255
    ctx = ctx_for(mask, image=image, sam=tiny_sam)
    # falls back to any covered cell
    assert int(ctx.reference.foreground_cells('coverage').sum()) >= 1
    if head_cfg == 'persam':
        head = PerSAMHead()
    else:
        head = MatcherHead(prompt_sampler=dict(
            type='MatcherPromptSampler', num_centers=4,
            encoder=dict(type='DINOv2Encoder', arch='tiny', img_size=112)))
    result = head.predict(tiny_sam, ctx, head.fit(tiny_sam, [{1: ctx.reference}]))
    assert result.logits.shape == (64, 72) and torch.isfinite(result.logits).all()


def test_retraining_uses_only_pseudo_labels_that_agree_with_the_warp():
    """The whole pseudo-label rule lives in the head: SAM must have refined the target, and
    the refinement must agree with the warp; a round without any is skipped."""
    h, w = 48, 48
    ref_mask = ellipse(h, w, 24, 24, 10, 12)
    image = torch.where(ref_mask, 200.0, 30.0).expand(3, h, w).clone()
    ctx = ctx_for(ref_mask, image=image)
    head = MedPerSAMHead(warping=dict(type='WarpingModel', schedule=dict(iters=5, retrain_iters=3),
                                      network=dict(work_size=(48, 48))), pseudo_min_dice=0.7)
    targets = [TargetImage(image.clone(), 'a'), TargetImage(image.clone(), 'b')]
    state = head.fit(None, [{1: ctx.reference}], targets)  # no SAM: no rounds
    assert state.log['rounds'] == [] and state.results == {}
    warped = state.priors['a'][1] > 0.5
    elsewhere = torch.zeros(h, w, dtype=torch.bool)
    elsewhere[:8, :8] = True  # SAM latched onto something else

    def results(mask_a, mask_b, used=True):
        return {k: {1: HeadResult(torch.where(m, 1.0, -1.0),
                                  refinement=RefinementRecord(1, 'iterations', used))}
                for k, m in (('a', mask_a), ('b', mask_b))}

    pseudo = head._pseudo_labels(state, targets, results(warped, elsewhere))
    assert torch.equal(pseudo[0], warped) and pseudo[1] is None
    assert head._pseudo_labels(state, targets, results(elsewhere, elsewhere)) == [None, None]
    # A mask the guard kept from the warp (SAM not used) is no pseudo-label either.
    assert head._pseudo_labels(state, targets, results(warped, warped, used=False)) == [
        None, None]


def test_fit_skips_a_round_without_pseudo_labels_and_predicts_no_target_twice(tiny_sam):
    h, w = 48, 48
    ref_mask = ellipse(h, w, 24, 24, 10, 12)
    image = torch.where(ref_mask, 200.0, 30.0).expand(3, h, w).clone()
    ctx = ctx_for(ref_mask, image=image, sam=tiny_sam)
    head = MedPerSAMHead(warping=dict(type='WarpingModel', schedule=dict(iters=5, retrain_iters=3),
                                      network=dict(work_size=(48, 48))), retrain_rounds=2,
                         min_sam_agreement=1.0)  # the guard never lets SAM's mask through
    targets = [TargetImage(image.clone(), 'a'), TargetImage(image.clone(), 'b')]
    state = head.fit(tiny_sam, [{1: ctx.reference}], targets)
    assert [r['retrain_skipped'] for r in state.log['rounds']] == [True]  # then stopped
    assert set(state.results) == {'a', 'b'}
    calls = []
    tiny_sam.decode = lambda *a, **k: calls.append(1)  # predict must not decode again
    try:
        tgt = PromptContext(reference=ctx.reference, target=tiny_sam.encode(image, 'a'),
                            image=image, target_key='a')
        assert head.predict(tiny_sam, tgt, state) is state.results['a'][1] and not calls
    finally:
        del tiny_sam.decode


def test_med_persam_builds_its_warping_model_once_and_fits_copies(monkeypatch):
    """The head builds the warping model from its config once (a bad setting fails then);
    each fit copies it, so fits never share a network, and the unfitted prototype holds no
    weights of the model's state dict."""
    from mmseg.registry import MODELS

    from mmseg_medpersam.methods.base import TargetImage
    from mmseg_medpersam.methods.medpersam.warping import WarpingModel
    with pytest.raises(ValueError, match='WarpingModel: iters must be an integer >= 0'):
        MedPerSAMHead(warping=dict(type='WarpingModel', schedule=dict(iters=-2)))
    builds = []
    real_build = MODELS.build
    monkeypatch.setattr(MODELS, 'build', lambda cfg, *a, **k: builds.append(
        cfg.get('type')) or real_build(cfg, *a, **k))
    head = MedPerSAMHead(use_sam=False, warping=dict(type='WarpingModel', schedule=dict(iters=3),
                                                     network=dict(work_size=(32, 32))))
    assert builds.count('WarpingModel') == 1
    assert not any(k.startswith('warping') for k in head.state_dict())
    h = w = 32
    ref_mask = torch.zeros(h, w, dtype=torch.bool)
    ref_mask[10:20, 8:22] = True
    image = torch.where(ref_mask, 200.0, 30.0).expand(3, h, w).clone()
    ctx = ctx_for(ref_mask, image=image)
    states = [head.fit(None, [{1: ctx.reference}], [TargetImage(image.clone(), 't')])
              for _ in range(2)]
    assert builds.count('WarpingModel') == 1
    assert isinstance(states[0].warper, WarpingModel) and states[0].warper.fitted
    assert states[0].warper is not states[1].warper and not head.warping.fitted
