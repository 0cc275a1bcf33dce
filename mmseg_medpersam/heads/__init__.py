"""One-shot heads: each method's procedure from prompts to a mask (PerSAM, PerSAM-F, ...)."""
from .base import BaseOneShotHead, HeadResult
from .matcher_head import MatcherHead
from .medpersam_head import MedPerSAMHead
from .multimask_fusion import MultimaskFusion, fit_multimask_fusion
from .persam_f_head import PerSAMFHead
from .persam_head import PerSAMHead
from .refinement import cascaded_refinement, logits_to_mask, to_image_logits

__all__ = ['BaseOneShotHead', 'HeadResult', 'PerSAMHead', 'PerSAMFHead', 'MatcherHead',
           'MedPerSAMHead', 'MultimaskFusion', 'fit_multimask_fusion', 'cascaded_refinement',
           'logits_to_mask', 'to_image_logits']
