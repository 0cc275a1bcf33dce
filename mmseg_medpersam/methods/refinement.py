"""SAM decoding steps shared by the heads: cascaded post-refinement and mask helpers."""
from __future__ import annotations

from typing import Optional, Tuple

from torch import Tensor

from ..prompts.base import mask_bbox
from ..prompts.structures import Prompts, decode_prompts
from ..sam.backend import ImageEmbedding, SAMBackend


def logits_to_mask(low_res: Tensor, emb: ImageEmbedding) -> Tensor:
    """(1,1,256,256) low-res logits -> (H, W) bool mask on the image."""
    return to_image_logits(low_res, emb) > 0


def cascaded_refinement(sam: SAMBackend, emb: ImageEmbedding, points: Optional[Prompts],
                        logits: Tensor, steps: int = 2,
                        box_from_step: int = 1) -> Tuple[Tensor, Optional[Tensor]]:
    """PerSAM's post-refinement: re-prompt SAM with its own logits (and, later, their box).

    Each step decodes the same ``points`` plus ``mask_input = logits`` and, from step
    ``box_from_step`` on, the box of the current mask; SAM's three outputs are ranked by
    predicted IoU. An empty current mask gives no box (the step still runs with the points and
    logits), so an empty intermediate mask never crashes.

    Returns the final (1,1,256,256) logits and their predicted IoU (None if ``steps == 0``).
    """
    iou = None
    for step in range(steps):
        box = None
        if step >= box_from_step:
            box = mask_bbox(logits_to_mask(logits, emb))
        prompts = Prompts.merge([
            points,
            Prompts(mask_logits=logits,
                    boxes=None if box is None else box[None].to(logits.device)),
        ])
        logits, iou = decode_prompts(sam, emb, prompts, multimask=True).best()
    return logits, iou


def to_image_logits(low_res: Tensor, emb: ImageEmbedding) -> Tensor:
    """(1,1,256,256) low-res logits -> (H, W) float logits on the image."""
    return emb.geometry.frame_to_image(low_res[0, 0])


__all__ = ['logits_to_mask', 'cascaded_refinement', 'to_image_logits']
