"""Generic SAM prompts: the ``Prompts`` structure, the generator context and the generators
any method can compose (mask, box, band points). A method's own generators live with it in
``methods/`` (PerSAM's location prior, Matcher's sampler)."""
from .band_points import BandPointPrompt
from .base import BasePromptGenerator, argmax_xy, mask_bbox
from .box_prompt import BoxPrompt
from .context import PromptContext, ReferenceContext
from .mask_prompt import MaskPrompt
from .structures import Prompts, decode_prompts, points_prompt

__all__ = ['Prompts', 'decode_prompts', 'points_prompt', 'PromptContext', 'ReferenceContext',
           'BasePromptGenerator', 'MaskPrompt', 'BoxPrompt', 'BandPointPrompt', 'mask_bbox',
           'argmax_xy']
