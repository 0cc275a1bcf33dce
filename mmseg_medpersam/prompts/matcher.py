"""Matcher's robust prompt sampler as a prompt generator (Liu et al., ICLR 2024).

DINOv2 patch features of reference and target are matched both ways with the Hungarian
algorithm; the matched target patches are clustered (k-means) and random subsets of the
centres become many multi-point prompt sets, one SAM candidate each. The head scores and
merges the candidates (``heads.matcher_head``); the matching is left in ``ctx.cache`` for it.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Tuple

import numpy as np
import torch
from mmseg.registry import MODELS
from torch import Tensor

from ..matching import (
    RobustPromptSampler,
    bidirectional_matching,
    pad_point_subsets,
    patch_centers_xy,
    reference_patch_mask,
)
from .base import BasePromptGenerator
from .context import PromptContext
from .structures import Prompts

MATCH_KEY = 'matcher_match'


@MODELS.register_module()
class MatcherPromptSampler(BasePromptGenerator):
    """Multi-point prompt sets from bidirectional DINOv2 patch matching.

    Args:
        encoder: ``DINOv2Encoder`` config (ViT-L/14 at 518 px by default).
        num_centers, use_points_or_centers, sample_range, max_sample_iterations, seed: the
            sampler (defaults: Matcher's one-object FSS-1000 preset).
        max_pairs: above this many matches keep the more similar half (Matcher: 40).
        cache_size: target feature maps kept (one per image, reused by every class).
    """

    def __init__(self, encoder: Optional[dict] = None, num_centers: int = 8,
                 use_points_or_centers: bool = False, sample_range: Tuple[int, int] = (4, 6),
                 max_sample_iterations: int = 30, seed: int = 0, max_pairs: int = 40,
                 cache_size: int = 4) -> None:
        super().__init__()
        self.encoder = MODELS.build(encoder or dict(type='DINOv2Encoder', arch='vit_l14'))
        self.sampler = RobustPromptSampler(
            num_centers=num_centers, use_points_or_centers=use_points_or_centers,
            sample_range=tuple(sample_range), max_sample_iterations=max_sample_iterations,
            seed=seed)
        self.max_pairs = max_pairs
        self.cache_size = cache_size
        self._features: 'OrderedDict[str, Tensor]' = OrderedDict()

    @torch.no_grad()
    def features(self, image: Tensor, key: Optional[str] = None) -> Tensor:
        """(h*w, C) unit-norm DINOv2 patch features of a (3, H, W) image, cached by key."""
        if key is not None and key in self._features:
            return self._features[key]
        device = next(self.encoder.parameters()).device
        feats = self.encoder(image[None].to(device))[0][0]
        if key is not None and self.cache_size > 0:
            self._features[key] = feats
            while len(self._features) > self.cache_size:
                self._features.popitem(last=False)
        return feats

    def reference_features(self, ctx: PromptContext) -> Tuple[Tensor, np.ndarray]:
        """Reference features and its foreground patches (once per reference and class)."""
        ref = ctx.reference
        if 'matcher_ref' not in ref.cache:
            feats = self.features(ref.image, 'ref:' + ref.key)  # shared by the classes
            fg = reference_patch_mask(ref.mask.cpu().numpy(), self.encoder.grid_size)
            ref.cache['matcher_ref'] = (feats, fg)
        return ref.cache['matcher_ref']

    def forward(self, ctx: PromptContext) -> Prompts:
        ref_feats, ref_fg = self.reference_features(ctx)
        tgt_feats = self.features(ctx.image, ctx.target_key)
        match = bidirectional_matching(ref_feats.cpu().numpy(), tgt_feats.cpu().numpy(),
                                       ref_fg, max_pairs=self.max_pairs)
        points = patch_centers_xy(match.tgt_idx, self.encoder.grid_size, ctx.original_size,
                                  self.encoder.patch_size)
        centres = self.sampler.prompt_points(points)  # what the subsets are drawn from
        ctx.cache[MATCH_KEY] = (match, points, ref_fg, centres)
        subsets = [centres[idx] for idx in self.sampler.subset_indices(len(centres))]
        coords, labels = pad_point_subsets(subsets)
        device = ctx.target.features.device
        return Prompts(point_coords=torch.from_numpy(coords).to(device),
                       point_labels=torch.from_numpy(labels).to(device))
