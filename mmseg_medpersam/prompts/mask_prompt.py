"""Mask prompt: the current (warped or refined) mask as SAM's low-resolution mask input."""
from __future__ import annotations

from typing import Optional

from mmseg.registry import MODELS

from ..utils.validate import check_number
from .base import BasePromptGenerator
from .context import PromptContext
from .structures import Prompts


@MODELS.register_module()
class MaskPrompt(BasePromptGenerator):
    """The current mask as (1, 1, 256, 256) signed logits over the model's padded frame.

    The mask is resized with the image into the model's frame (1024 for SAM, 256 for
    LiteMedSAM), zero-padded like the image, and area-pooled to the mask-logit size; coverage
    c in [0, 1] becomes ``logit_scale * (2c - 1)`` (padding is background). After the first
    SAM call, SAM's own low-res logits can be passed back instead (``use_sam_logits``), as
    SAM's interactive loop does.

    Args:
        logit_scale: magnitude of the logits for a fully covered / empty cell.
        use_sam_logits: when SAM produced the current mask, pass its logits unchanged.
    """

    def __init__(self, logit_scale: float = 8.0, use_sam_logits: bool = True) -> None:
        super().__init__()
        check_number(type(self).__name__, 'logit_scale', logit_scale, minimum=0,
                     open_interval=True)
        self.logit_scale = logit_scale
        self.use_sam_logits = use_sam_logits

    def forward(self, ctx: PromptContext) -> Optional[Prompts]:
        if self.use_sam_logits and ctx.logits is not None:
            return Prompts(mask_logits=ctx.logits)
        if ctx.mask is None or not bool(ctx.mask.any()):
            return None
        geo = ctx.target.geometry
        coverage = geo.image_to_frame(ctx.mask.float(), geo.mask_size)
        return Prompts(mask_logits=(self.logit_scale * (2 * coverage - 1))[None, None])
