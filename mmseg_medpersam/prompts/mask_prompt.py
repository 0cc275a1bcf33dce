"""Mask prompt: the current (warped or refined) mask as SAM's low-resolution mask input."""
from __future__ import annotations

from typing import Optional

from mmseg.registry import MODELS

from ..sam.image import image_to_frame
from .base import BasePromptGenerator
from .context import PromptContext
from .structures import Prompts

MASK_INPUT_SIZE = 256


@MODELS.register_module()
class MaskPrompt(BasePromptGenerator):
    """The current mask as (1, 1, 256, 256) signed logits in SAM's padded frame.

    The mask is resized with the image into SAM's 1024 frame, zero-padded like the image, and
    area-pooled to 256x256; coverage c in [0, 1] becomes ``logit_scale * (2c - 1)`` (padding is
    background). After the first SAM call, SAM's own low-res logits can be passed back instead
    (``use_sam_logits``), as SAM's interactive loop does.

    Args:
        logit_scale: magnitude of the logits for a fully covered / empty cell.
        use_sam_logits: when SAM produced the current mask, pass its logits unchanged.
    """

    def __init__(self, logit_scale: float = 8.0, use_sam_logits: bool = True) -> None:
        super().__init__()
        self.logit_scale = logit_scale
        self.use_sam_logits = use_sam_logits

    def forward(self, ctx: PromptContext) -> Optional[Prompts]:
        if self.use_sam_logits and ctx.logits is not None:
            return Prompts(mask_logits=ctx.logits)
        if ctx.mask is None or not bool(ctx.mask.any()):
            return None
        coverage = image_to_frame(ctx.mask.float(), ctx.original_size, MASK_INPUT_SIZE)
        return Prompts(mask_logits=(self.logit_scale * (2 * coverage - 1))[None, None])
