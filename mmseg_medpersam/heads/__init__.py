"""One-shot heads: each method's procedure from prompts to a mask (PerSAM, PerSAM-F, ...)."""
from .base import BaseOneShotHead, HeadResult
from .persam_head import PerSAMHead
from .refinement import cascaded_refinement, logits_to_mask, to_image_logits

__all__ = ['BaseOneShotHead', 'HeadResult', 'PerSAMHead', 'cascaded_refinement',
           'logits_to_mask', 'to_image_logits']
