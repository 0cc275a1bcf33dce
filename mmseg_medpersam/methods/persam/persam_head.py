"""PerSAM: training-free personalisation of SAM from one reference (Zhang et al., 2023)."""
from __future__ import annotations

from typing import Optional

from mmseg.registry import MODELS

from ...prompts.context import PromptContext
from ...prompts.structures import Prompts, decode_prompts
from ...sam.backend import SAMBackend
from ...utils.validate import check_number
from ..base import BaseOneShotHead, HeadResult
from ..refinement import cascaded_refinement, to_image_logits


@MODELS.register_module()
class PerSAMHead(BaseOneShotHead):
    """Location prior + decoder hooks, then two cascaded refinements.

    1. the location prior's two points with target-guided attention and the target-semantic
       prompt, one mask;
    2. the same points + that mask's logits, best of three by predicted IoU;
    3. the same points + the box of the best mask + its logits, best of three.

    Args:
        location_prior: a prompt generator config (default ``PerSAMLocationPrior``).
        num_refinements: cascaded refinement steps after the first call (PerSAM: 2).
    """

    method_name = 'PerSAM'

    def __init__(self, location_prior: Optional[dict] = None, num_refinements: int = 2) -> None:
        super().__init__()
        check_number(type(self).__name__, 'num_refinements', num_refinements, minimum=0,
                     integer=True)
        self.location_prior = MODELS.build(location_prior or dict(type='PerSAMLocationPrior'))
        self.num_refinements = num_refinements

    def predict(self, sam: SAMBackend, ctx: PromptContext, state: None = None) -> HeadResult:
        prompts = self.location_prior(ctx)
        first = decode_prompts(sam, ctx.target, prompts, multimask=False)
        points = Prompts(point_coords=prompts.point_coords, point_labels=prompts.point_labels)
        logits, iou = cascaded_refinement(sam, ctx.target, points, first.low_res_logits,
                                          steps=self.num_refinements)
        info = {'iou_prediction': float(iou[0]) if iou is not None
                else float(first.iou_predictions[0, 0])}
        return HeadResult(to_image_logits(logits, ctx.target), prompts=prompts, info=info)
