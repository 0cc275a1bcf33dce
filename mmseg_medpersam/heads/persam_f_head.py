"""PerSAM-F: PerSAM with two learnable scalars fusing SAM's multimask outputs (Zhang et al.)."""
from __future__ import annotations

from typing import Optional

import torch
from mmseg.registry import MODELS

from ..prompts.context import PromptContext, ReferenceContext
from ..prompts.structures import decode_prompts
from ..sam.backend import SAMBackend
from ..utils.validate import check_number
from .base import BaseOneShotHead, HeadResult
from .multimask_fusion import fit_multimask_fusion
from .refinement import cascaded_refinement, to_image_logits

FUSION_KEY = 'persam_f_weights'


@MODELS.register_module()
class PerSAMFHead(BaseOneShotHead):
    """Fit the fusion on the reference, then fuse on each target and refine twice.

    As the official PerSAM-F: one positive point (no negative point, no decoder hooks), the
    prototype (mean + max)/2, the fusion fitted on the reference image alone (Dice + focal,
    AdamW lr 1e-3 eps 1e-4, cosine schedule, 1000 iterations, SAM's outputs computed once).
    On a target: fused logits and their box -> refinement 1 (points + box + fused logits) ->
    refinement 2 (points + box of the best mask + its logits).

    Args:
        location_prior: prompt generator config (default: PerSAM-F's positive point only).
        iters, lr, eps, weight_decay, focal_alpha, focal_gamma: the fit (PerSAM-F's values).
        num_refinements: refinement steps after the fused mask (2).
    """

    method_name = 'PerSAM-F'

    def __init__(self, location_prior: Optional[dict] = None, iters: int = 1000,
                 lr: float = 1e-3, eps: float = 1e-4, weight_decay: float = 0.01,
                 focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                 num_refinements: int = 2) -> None:
        super().__init__()
        name = type(self).__name__
        check_number(name, 'num_refinements', num_refinements, minimum=0, integer=True)
        check_number(name, 'iters', iters, minimum=0, integer=True)
        check_number(name, 'lr', lr, minimum=0, open_interval=True)
        self.location_prior = MODELS.build(location_prior or dict(
            type='PerSAMLocationPrior', negative=False, target_guided_attention=False,
            target_semantic_prompt=False, prototype='mean_max'))
        self.fit_cfg = dict(iters=iters, lr=lr, eps=eps, weight_decay=weight_decay,
                            alpha=focal_alpha, gamma=focal_gamma)
        self.num_refinements = num_refinements

    def prepare(self, sam: SAMBackend, reference: ReferenceContext) -> None:
        ctx = PromptContext(reference=reference, target=reference.embedding,
                            image=reference.image)
        out = decode_prompts(sam, reference.embedding, self.location_prior(ctx), multimask=True)
        weights, losses = fit_multimask_fusion(out.logits()[0], reference.mask, **self.fit_cfg)
        reference.cache[FUSION_KEY] = weights
        reference.cache['persam_f_loss'] = losses

    def predict(self, sam: SAMBackend, ctx: PromptContext) -> HeadResult:
        weights = ctx.reference.cache[FUSION_KEY].to(ctx.target.features.device)
        prompts = self.location_prior(ctx)
        out = decode_prompts(sam, ctx.target, prompts, multimask=True)
        fused = torch.einsum('k,bkhw->bhw', weights, out.low_res_logits)[:, None]
        logits, iou = cascaded_refinement(sam, ctx.target, prompts, fused,
                                          steps=self.num_refinements, box_from_step=0)
        info = {'fusion_weights': weights.tolist()}
        if iou is not None:
            info['iou_prediction'] = float(iou[0])
        return HeadResult(to_image_logits(logits, ctx.target), prompts=prompts, info=info)
