"""SAM prompts: the ``Prompts`` structure, the generator context and registered generators."""
from .base import BasePromptGenerator, argmax_xy, mask_bbox
from .context import PromptContext, ReferenceContext
from .persam import PerSAMLocationPrior
from .structures import Prompts, points_prompt

__all__ = ['Prompts', 'points_prompt', 'PromptContext', 'ReferenceContext',
           'BasePromptGenerator', 'PerSAMLocationPrior', 'mask_bbox', 'argmax_xy']
