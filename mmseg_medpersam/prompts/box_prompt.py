"""Box prompt (``g_box``): the bounding box of the current mask, with an optional margin."""
from __future__ import annotations

from typing import Optional

import torch
from mmseg.registry import MODELS

from ..utils.validate import check_number
from .base import BasePromptGenerator, mask_bbox
from .context import PromptContext
from .structures import Prompts


@MODELS.register_module()
class BoxPrompt(BasePromptGenerator):
    """The current mask's xyxy box, grown by ``margin`` and clipped to the image.

    Args:
        margin: growth on each side, in pixels when >= 1, else as a fraction of the box size.
        jitter: random shift of each side as a fraction of the box size (0: none), seeded, for
            robustness studies.
        seed: seed of the jitter.
    """

    def __init__(self, margin: float = 0.0, jitter: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        check_number(type(self).__name__, 'margin', margin, minimum=0)
        check_number(type(self).__name__, 'jitter', jitter, minimum=0)
        self.margin = margin
        self.jitter = jitter
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, ctx: PromptContext) -> Optional[Prompts]:
        if ctx.mask is None:
            return None
        box = mask_bbox(ctx.mask)
        if box is None:
            return None
        size = torch.stack([box[2] - box[0] + 1, box[3] - box[1] + 1]).repeat(2)
        grow = size * self.margin if self.margin < 1 else torch.full_like(size, self.margin)
        box = box + grow * box.new_tensor([-1, -1, 1, 1])
        if self.jitter > 0:
            noise = torch.empty(4).uniform_(-1, 1, generator=self.generator).to(box.device)
            box = box + noise * size * self.jitter
        h, w = ctx.original_size
        box = torch.stack([box[0].clamp(0, w - 1), box[1].clamp(0, h - 1),
                           box[2].clamp(0, w - 1), box[3].clamp(0, h - 1)])
        return Prompts(boxes=box[None])
