"""Heads: PerSAM cascade, PerSAM-F fit, Med-PerSAM refinement loop, Matcher merging."""
import numpy as np
import pytest
import torch

from mmseg_medpersam.heads import (
    MatcherHead,
    MedPerSAMHead,
    PerSAMFHead,
    PerSAMHead,
    fit_multimask_fusion,
)
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


def ctx_for(mask, image=None, prior=None, sam=None):
    h, w = mask.shape
    image = image if image is not None else torch.rand(3, h, w) * 255
    if sam is not None:
        emb = sam.encode(image)
    else:
        emb = ImageEmbedding(torch.randn(1, 256, 64, 64), FrameGeometry((h, w), 1024))
    ref = ReferenceContext(image=image, mask=mask, embedding=emb, key='ref',
                           label_map=mask.long())
    return PromptContext(reference=ref, target=emb, image=image, prior=prior)


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
        head.prepare(tiny_sam, ctx.reference)
    first, last = ctx.reference.cache['persam_f_loss']
    assert last < first
    weights = ctx.reference.cache['persam_f_weights']
    assert weights.shape == (3, ) and abs(float(weights.sum()) - 1) < 1e-5
    for k, v in tiny_sam.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(not p.requires_grad for p in tiny_sam.model.parameters())
    result = head.predict(tiny_sam, ctx)
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
    result = head.predict(sam, ctx_for(mask, prior=prior))
    assert result.info['iterations'] == 1 and len(sam.calls) == 1
    # a mask that keeps moving uses every iteration
    moving = [ellipse(60, 70, 30, 20 + 5 * i, 15, 15) for i in range(6)]
    sam = ScriptedSAM(moving)
    result = head.predict(sam, ctx_for(mask, prior=prior))
    assert result.info['iterations'] == 5 and len(sam.calls) == 5
    assert torch.equal(result.mask, moving[4])
    assert torch.equal(result.prompt_mask, mask)


def test_medpersam_guard_keeps_the_warp_when_sam_leaves_the_structure():
    mask = ellipse(60, 70, 30, 35, 15, 20)
    elsewhere = ellipse(60, 70, 10, 10, 6, 6)
    refined = ellipse(60, 70, 31, 35, 15, 19)  # a local correction of the warp
    head = MedPerSAMHead(num_iters=3, min_sam_agreement=0.8)
    sam = ScriptedSAM([elsewhere])
    result = head.predict(sam, ctx_for(mask, prior=mask.float()))
    assert torch.equal(result.mask, mask) and len(sam.calls) == 1
    assert result.info['stop'] == 'disagrees with warp' and not result.info['sam_used']
    assert torch.equal(result.info['step_masks'][0], elsewhere)  # what SAM said is recorded
    sam = ScriptedSAM([refined])
    result = head.predict(sam, ctx_for(mask, prior=mask.float()))
    assert torch.equal(result.mask, refined) and result.info['sam_used']
    # Without the guard, SAM's mask is taken whatever it is.
    result = MedPerSAMHead(num_iters=1, min_sam_agreement=0.0).predict(
        ScriptedSAM([elsewhere]), ctx_for(mask, prior=mask.float()))
    assert torch.equal(result.mask, elsewhere)


def test_medpersam_does_not_mutate_the_context():
    mask = ellipse(60, 70, 30, 35, 15, 20)
    ctx = ctx_for(mask, prior=mask.float())
    before = (ctx.mask, ctx.logits)
    MedPerSAMHead(num_iters=2, min_sam_agreement=0.0).predict(
        ScriptedSAM([ellipse(60, 70, 31, 36, 15, 20)]), ctx)
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
    result = MedPerSAMHead(num_iters=3).predict(sam, ctx_for(mask, prior=mask.float()))
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
    ctx = ctx_for(ref_mask, prior=prior, sam=tiny_sam)
    result = MedPerSAMHead(num_iters=2).predict(tiny_sam, ctx)
    assert result.logits.shape == (h, w) and torch.isfinite(result.logits).all()
    if kind == 'empty':
        assert not result.mask.any() and result.info['iterations'] == 0


def test_warp_only_head_returns_the_warped_mask():
    mask = ellipse(40, 50, 20, 25, 8, 10)
    result = MedPerSAMHead(use_sam=False).predict(None, ctx_for(mask, prior=mask.float() * 0.9))
    assert torch.equal(result.mask, mask)


def test_matcher_head_end_to_end_and_empty_reference(tiny_sam):
    mask = ellipse(64, 72, 30, 36, 14, 18)
    image = torch.rand(3, 64, 72) * 255
    head = MatcherHead(prompt_sampler=dict(
        type='MatcherPromptSampler', num_centers=5,
        encoder=dict(type='DINOv2Encoder', arch='tiny', img_size=112)))
    ctx = ctx_for(mask, image=image, sam=tiny_sam)
    result = head.predict(tiny_sam, ctx)
    assert result.logits.shape == (64, 72)
    n = result.info['num_candidates']
    assert n == 6  # C(5,4) + C(5,5) subsets of the 5 k-means centres
    assert result.info['num_merged'] <= 10
    empty = ctx_for(torch.zeros_like(mask), image=image, sam=tiny_sam)
    with pytest.raises(ValueError, match='empty'):
        head.predict(tiny_sam, empty)


def test_medpersam_per_image_mode_fits_on_that_target(tiny_sam):
    """Without a transductive fit, the warping model is fitted on the reference + the target."""
    h, w = 64, 64
    ref_mask = ellipse(h, w, 30, 30, 12, 14)
    tgt_mask = ellipse(h, w, 34, 36, 12, 14)
    ref_img = torch.where(ref_mask, 200.0, 30.0).expand(3, h, w).clone()
    tgt_img = torch.where(tgt_mask, 200.0, 30.0).expand(3, h, w).clone()
    ctx = ctx_for(ref_mask, image=ref_img, sam=tiny_sam)
    ctx.image, ctx.target = tgt_img, tiny_sam.encode(tgt_img)
    head = MedPerSAMHead(use_sam=False, warping=dict(type='WarpingModel', iters=150,
                                                     work_size=(64, 64)))
    result = head.predict(None, ctx)
    assert head.warper(ctx.reference) is None  # no transductive fit happened
    (warper, ) = head._single.values()  # a model fitted on the reference + this target
    assert bool(warper.fitted)
    dice = lambda a, b: float(2 * (a & b).sum() / (a.sum() + b.sum()))  # noqa: E731
    assert dice(result.mask, tgt_mask) > dice(ref_mask, tgt_mask) + 0.05


@pytest.mark.parametrize('head_cfg', ['persam', 'matcher'])
def test_one_pixel_reference_mask_is_usable(tiny_sam, head_cfg):
    mask = torch.zeros(64, 72, dtype=torch.bool)
    mask[30, 40] = True
    image = torch.rand(3, 64, 72) * 255
    ctx = ctx_for(mask, image=image, sam=tiny_sam)
    assert int(ctx.reference.grid_mask.sum()) >= 1  # falls back to any covered cell
    if head_cfg == 'persam':
        head = PerSAMHead()
    else:
        head = MatcherHead(prompt_sampler=dict(
            type='MatcherPromptSampler', num_centers=4,
            encoder=dict(type='DINOv2Encoder', arch='tiny', img_size=112)))
    result = head.predict(tiny_sam, ctx)
    assert result.logits.shape == (64, 72) and torch.isfinite(result.logits).all()


def test_retraining_uses_only_pseudo_labels_that_agree_with_the_warp():
    h, w = 48, 48
    ref_mask = ellipse(h, w, 24, 24, 10, 12)
    image = torch.where(ref_mask, 200.0, 30.0).expand(3, h, w).clone()
    ctx = ctx_for(ref_mask, image=image)
    head = MedPerSAMHead(warping=dict(type='WarpingModel', iters=5, retrain_iters=3,
                                      work_size=(48, 48)), pseudo_min_dice=0.7)
    targets = [image.clone(), image.clone()]
    priors, log = head.fit_transductive(None, {1: ctx.reference}, targets)
    agreeing = (priors[0][1] > 0.5).long()
    elsewhere = torch.zeros(h, w, dtype=torch.long)
    elsewhere[:8, :8] = 1  # SAM latched onto something else
    _, log = head.fit_transductive(None, {1: ctx.reference}, targets, [agreeing, elsewhere])
    assert log['pseudo_labels_used'] == 1 and log['retrain']
    _, log = head.fit_transductive(None, {1: ctx.reference}, targets, [elsewhere, elsewhere])
    assert log['retrain_skipped'] and log['pseudo_labels_used'] == 0
