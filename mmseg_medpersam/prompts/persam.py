"""PerSAM's location prior: one positive and one negative point from a similarity map.

The prototype (mean SAM feature of the reference under its mask) is compared by cosine
similarity with every target feature; the maximum becomes the positive point, the minimum the
negative one. The same map, standardised and squashed by a sigmoid, is the target-guided
attention bias, and the prototype itself the target-semantic prompt (``persam_decoder``).

Unlike PerSAM's code, which stretches the image-sized map over the whole 64x64 token grid, the
attention bias is computed on the grid in SAM's padded frame, so it stays aligned with the image
tokens for non-square images (for square images the two agree).
"""
from __future__ import annotations

import torch
from mmseg.registry import MODELS

from ..sam.geometry import FrameGeometry
from .base import BasePromptGenerator, argmax_xy
from .context import PromptContext
from .persam_decoder import PerSAMDecoderHook
from .structures import Prompts


def reference_prototype(ctx: PromptContext, kind: str) -> torch.Tensor:
    """PerSAM's 'mean' prototype, or PerSAM-F's 'mean_max' = (mean + channel max) / 2."""
    if kind == 'mean':
        return ctx.reference.prototype
    if kind == 'mean_max':
        feats = ctx.reference.foreground_features()
        return (feats.mean(dim=0) + feats.max(dim=0).values) / 2
    raise ValueError(f"prototype must be 'mean' or 'mean_max', got {kind!r}")


def attention_bias(sim_grid: torch.Tensor, geometry: FrameGeometry) -> torch.Tensor:
    """(1,1,1,g*g) sigmoid of the grid similarity standardised over the image's cells."""
    rows, cols = geometry.valid_cells(sim_grid.shape[-1])
    valid = sim_grid[:rows, :cols]
    std = valid.std() if valid.numel() > 1 else sim_grid.new_tensor(1.0)
    z = (sim_grid - valid.mean()) / (std + 1e-6)
    return torch.sigmoid(z).reshape(1, 1, 1, -1)


@MODELS.register_module()
class PerSAMLocationPrior(BasePromptGenerator):
    """PerSAM's positive/negative point pair and, optionally, its two decoder hooks.

    Args:
        negative: add the negative point at the similarity minimum (PerSAM-F omits it).
        target_guided_attention: emit the attention bias hook.
        target_semantic_prompt: emit the target embedding hook.
        prototype: 'mean' (PerSAM) or 'mean_max' (PerSAM-F).
    """

    def __init__(self, negative: bool = True, target_guided_attention: bool = True,
                 target_semantic_prompt: bool = True, prototype: str = 'mean') -> None:
        super().__init__()
        self.negative = negative
        self.target_guided_attention = target_guided_attention
        self.target_semantic_prompt = target_semantic_prompt
        self.prototype = prototype

    def forward(self, ctx: PromptContext) -> Prompts:
        proto = reference_prototype(ctx, self.prototype)
        sim = ctx.similarity_map(None if self.prototype == 'mean' else proto)
        coords = [argmax_xy(sim)]
        labels = [1]
        if self.negative:
            coords.append(argmax_xy(-sim))
            labels.append(0)
        hook = None
        if self.target_guided_attention or self.target_semantic_prompt:
            hook = PerSAMDecoderHook()
            if self.target_guided_attention:
                grid = ctx.similarity_grid(None if self.prototype == 'mean' else proto)
                hook.attn_sim = attention_bias(grid, ctx.target.geometry)
            if self.target_semantic_prompt:
                hook.target_embedding = proto.reshape(1, 1, -1)
        return Prompts(point_coords=torch.stack(coords)[None],
                       point_labels=torch.tensor([labels], device=sim.device),
                       decoder_hook=hook)
