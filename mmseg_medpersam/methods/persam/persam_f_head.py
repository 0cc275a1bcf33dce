"""PerSAM-F: PerSAM with two learnable scalars fusing SAM's multimask outputs (Zhang et al.)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
from mmseg.registry import MODELS
from torch import Tensor

from ...prompts.context import PromptContext
from ...prompts.structures import decode_prompts
from ...sam.backend import SAMBackend
from ...utils.validate import check_number
from ..base import (
    BaseOneShotHead,
    FitState,
    HeadResult,
    ReferenceClasses,
    TargetImage,
    class_references,
)
from ..refinement import cascaded_refinement, to_image_logits
from .multimask_fusion import fit_multimask_fusion


@dataclass
class PerSAMFState(FitState):
    """PerSAM-F's fit: per class, the fusion weights of SAM's three masks and the loss curve."""

    weights: Dict[int, Tensor]
    losses: Dict[int, List[float]]

    @property
    def log(self) -> dict:
        return dict(fusion_weights={c: w.tolist() for c, w in self.weights.items()},
                    final_loss={c: v[-1] if v else None for c, v in self.losses.items()})


@MODELS.register_module()
class PerSAMFHead(BaseOneShotHead):
    """Fit the fusion on the reference, then fuse on each target and refine twice.

    As the official PerSAM-F: one positive point (no negative point, no decoder hooks), the
    prototype (mean + max)/2, the fusion fitted on the reference image alone (k references: on
    all of them together) (Dice + focal,
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

    @torch.no_grad()
    def fit(self, sam: SAMBackend, references: Sequence[ReferenceClasses],
            targets: Sequence[TargetImage] = (), init: Optional[FitState] = None) -> PerSAMFState:
        """Fit the fusion weights of every class on the references alone (k references: one
        loss over all of them, each prompted with the prototype of all)."""
        weights, losses = {}, {}
        for c, refs in class_references(references).items():
            logits = []
            for i, ref in enumerate(refs):
                ctx = PromptContext(reference=ref, target=ref.embedding, image=ref.image,
                                    more_references=tuple(refs[:i] + refs[i + 1:]))
                out = decode_prompts(sam, ref.embedding, self.location_prior(ctx),
                                     multimask=True)
                logits.append(out.logits()[0])
            weights[c], losses[c] = fit_multimask_fusion(logits, [r.mask for r in refs],
                                                         **self.fit_cfg)
        return PerSAMFState(weights, losses)

    def predict(self, sam: SAMBackend, ctx: PromptContext,
                state: Optional[PerSAMFState] = None) -> HeadResult:
        weights = state.weights[ctx.reference.label].to(ctx.target.features.device)
        prompts = self.location_prior(ctx)
        out = decode_prompts(sam, ctx.target, prompts, multimask=True)
        fused = torch.einsum('k,bkhw->bhw', weights, out.low_res_logits)[:, None]
        logits, iou = cascaded_refinement(sam, ctx.target, prompts, fused,
                                          steps=self.num_refinements, box_from_step=0)
        info = {'fusion_weights': weights.tolist()}
        if iou is not None:
            info['iou_prediction'] = float(iou[0])
        return HeadResult(to_image_logits(logits, ctx.target), prompts=prompts, info=info)
