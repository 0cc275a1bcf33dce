"""SAM prompts: the ``Prompts`` structure, the generator context and registered generators."""
from .band_points import BandPointPrompt
from .base import BasePromptGenerator, argmax_xy, mask_bbox
from .box_prompt import BoxPrompt
from .context import PromptContext, ReferenceContext
from .mask_prompt import MaskPrompt
from .matcher import MatcherPromptSampler
from .persam import PerSAMLocationPrior
from .persam_decoder import PerSAMDecoderHook
from .structures import Prompts, decode_prompts, points_prompt

__all__ = ['Prompts', 'decode_prompts', 'points_prompt', 'PromptContext', 'ReferenceContext',
           'BasePromptGenerator', 'PerSAMLocationPrior', 'PerSAMDecoderHook',
           'MatcherPromptSampler', 'MaskPrompt', 'BoxPrompt', 'BandPointPrompt', 'mask_bbox',
           'argmax_xy']
