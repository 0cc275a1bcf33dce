"""Box prompt (``g_box``): the box of the current mask, or one box per connected component."""
from __future__ import annotations

from typing import Optional

import torch
from mmseg.registry import MODELS
from torch import Tensor

from ..utils.masks import component_boxes, mask_bbox
from ..utils.validate import check_number
from .base import BasePromptGenerator
from .context import PromptContext
from .structures import Prompts


def grow_boxes(boxes: Tensor, margin: float, size) -> Tensor:
    """(K, 4) xyxy boxes grown by ``margin`` (pixels if >= 1, else a fraction of each box's
    side) and clipped to an image of ``size`` (H, W)."""
    sides = torch.stack([boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1], 1)
    sides = sides.repeat(1, 2)
    grow = sides * margin if margin < 1 else torch.full_like(sides, float(margin))
    boxes = boxes + grow * boxes.new_tensor([-1, -1, 1, 1])
    h, w = size
    return torch.stack([boxes[:, 0].clamp(0, w - 1), boxes[:, 1].clamp(0, h - 1),
                        boxes[:, 2].clamp(0, w - 1), boxes[:, 3].clamp(0, h - 1)], 1)


@MODELS.register_module()
class BoxPrompt(BasePromptGenerator):
    """The current mask's xyxy box, grown by ``margin`` and clipped to the image.

    A structure in several pieces (the two lateral ventricles, a white-matter slice split by
    the ventricles) has one box around all of them, which asks SAM for everything in between.
    ``per_component`` gives one box per connected component instead: B prompt sets, which the
    head decodes in one batch and merges (``Prompts.restrict_to_boxes`` keeps each set's other
    prompts inside its box).

    Args:
        margin: growth on each side, in pixels when >= 1, else as a fraction of the box size.
        per_component: one box per connected component (largest first).
        min_component_fraction: a component smaller than this fraction of the mask's area gets
            no box of its own.
        max_components: at most this many boxes.
    """

    def __init__(self, margin: float = 0.0, per_component: bool = False,
                 min_component_fraction: float = 0.05, max_components: int = 8) -> None:
        super().__init__()
        name = type(self).__name__
        check_number(name, 'margin', margin, minimum=0)
        check_number(name, 'min_component_fraction', min_component_fraction, minimum=0,
                     maximum=1)
        check_number(name, 'max_components', max_components, minimum=1, integer=True)
        self.margin = margin
        self.per_component = per_component
        self.min_component_fraction = min_component_fraction
        self.max_components = max_components

    def forward(self, ctx: PromptContext) -> Optional[Prompts]:
        if ctx.mask is None:
            return None
        if self.per_component:
            boxes = component_boxes(ctx.mask, self.min_component_fraction, self.max_components)
        else:
            box = mask_bbox(ctx.mask)
            boxes = None if box is None else box[None]
        if boxes is None:
            return None
        return Prompts(boxes=grow_boxes(boxes, self.margin, ctx.original_size))
