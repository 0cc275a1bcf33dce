"""PerSAM's location prior: one positive and one negative point from a similarity map.

The prototype (mean SAM feature of the reference under its mask) is compared by cosine
similarity with every target feature; the maximum becomes the positive point, the minimum the
negative one. The same map, standardised and squashed by a sigmoid, is the target-guided
attention bias, and the prototype itself the target-semantic prompt (``persam_decoder``).

By default the geometry follows PerSAM's code exactly (``official_geometry``): the image-sized
map is standardised and stretched over the whole 64x64 token grid, which for non-square images
shifts the bias against the tokens (on the 233x197 MNI slices the peaks differ by 7 tokens).
``official_geometry=False`` computes the bias on the grid of the padded frame instead, aligned
with the image tokens.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

from ...prompts.base import BasePromptGenerator, argmax_xy
from ...prompts.context import PromptContext
from ...prompts.structures import Prompts
from ...sam.geometry import FrameGeometry
from .decoder_hook import PerSAMDecoderHook


def reference_prototype(ctx: PromptContext, kind: str, cells: str = 'coverage') -> torch.Tensor:
    """PerSAM's 'mean' prototype, or PerSAM-F's 'mean_max' = (mean + channel max) / 2.

    With k references the statistics run over the foreground features of all of them
    together (every foreground cell counts once, whichever reference it is in).
    """
    if kind not in ('mean', 'mean_max'):
        raise ValueError(f"prototype must be 'mean' or 'mean_max', got {kind!r}")
    if len(ctx.references) == 1:  # as PerSAM: one reference's features, reduced as they are
        if kind == 'mean':
            return ctx.reference.mean_feature(cells)
        feats = ctx.reference.foreground_features(cells)
    else:
        feats = torch.cat([r.foreground_features(cells) for r in ctx.references])
    if kind == 'mean':
        return feats.mean(dim=0)
    return (feats.mean(dim=0) + feats.max(dim=0).values) / 2


def attention_bias(sim_grid: torch.Tensor, geometry: FrameGeometry) -> torch.Tensor:
    """(1,1,1,g*g) sigmoid of the grid similarity standardised over the image's cells.

    Aligned with the image tokens for any aspect ratio: the padding cells of the frame are
    left out of the statistics and keep their own similarity.
    """
    rows, cols = geometry.valid_cells(sim_grid.shape[-1])
    valid = sim_grid[:rows, :cols]
    std = valid.std() if valid.numel() > 1 else sim_grid.new_tensor(1.0)
    z = (sim_grid - valid.mean()) / (std + 1e-6)
    return torch.sigmoid(z).reshape(1, 1, 1, -1)


def official_attention_bias(sim_map: torch.Tensor, grid_size: int) -> torch.Tensor:
    """(1,1,1,g*g) as PerSAM's code: the image-sized map standardised, resized to the grid.

    The resize stretches the image over the whole token grid, padding included, so for
    non-square images the bias is shifted against the tokens (kept for faithfulness).
    """
    std = sim_map.std() if sim_map.numel() > 1 else sim_map.new_tensor(1.0)
    z = (sim_map - sim_map.mean()) / std
    z = F.interpolate(z[None, None], size=(grid_size, grid_size), mode='bilinear',
                      align_corners=False)
    return torch.sigmoid(z).reshape(1, 1, 1, -1)


@MODELS.register_module()
class PerSAMLocationPrior(BasePromptGenerator):
    """PerSAM's positive/negative point pair and, optionally, its two decoder hooks.

    Args:
        negative: add the negative point at the similarity minimum (PerSAM-F omits it).
        target_guided_attention: emit the attention bias hook.
        target_semantic_prompt: emit the target embedding hook.
        prototype: 'mean' (PerSAM) or 'mean_max' (PerSAM-F).
        official_geometry: True follows PerSAM's code: reference cells by bilinear
            point-sampling of the mask (``ReferenceContext.foreground_cells('persam')``) and
            the attention bias from the image-sized map stretched over the token grid. False
            uses half-covered cells and a bias aligned with the image's tokens in the padded
            frame (the two agree for square images).
    """

    def __init__(self, negative: bool = True, target_guided_attention: bool = True,
                 target_semantic_prompt: bool = True, prototype: str = 'mean',
                 official_geometry: bool = True) -> None:
        super().__init__()
        if prototype not in ('mean', 'mean_max'):
            raise ValueError(f"PerSAMLocationPrior: prototype must be 'mean' or 'mean_max', "
                             f'got {prototype!r}')
        self.negative = negative
        self.target_guided_attention = target_guided_attention
        self.target_semantic_prompt = target_semantic_prompt
        self.prototype = prototype
        self.official_geometry = official_geometry

    def forward(self, ctx: PromptContext) -> Prompts:
        cells = 'persam' if self.official_geometry else 'coverage'
        proto = reference_prototype(ctx, self.prototype, cells)
        sim = ctx.similarity_map(proto)
        coords = [argmax_xy(sim)]
        labels = [1]
        if self.negative:
            coords.append(argmax_xy(-sim))
            labels.append(0)
        hook = None
        if self.target_guided_attention or self.target_semantic_prompt:
            hook = PerSAMDecoderHook()
            if self.target_guided_attention:
                geo = ctx.target.geometry
                hook.attn_sim = (official_attention_bias(sim, geo.grid_size)
                                 if self.official_geometry
                                 else attention_bias(ctx.similarity_grid(proto), geo))
            if self.target_semantic_prompt:
                hook.target_embedding = proto.reshape(1, 1, -1)
        return Prompts(point_coords=torch.stack(coords)[None],
                       point_labels=torch.tensor([labels], device=sim.device),
                       decoder_hook=hook)
