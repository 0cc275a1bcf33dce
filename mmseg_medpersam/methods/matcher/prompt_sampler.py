"""Matcher's robust prompt sampler as a prompt generator (Liu et al., ICLR 2024).

DINOv2 patch features of reference and target are matched both ways with the Hungarian
algorithm; the matched target patches are clustered (k-means) and random subsets of the
centres become many multi-point prompt sets, one SAM candidate each. The sampler returns the
prompt sets (grouped by size: SAM attends to every point token, so subsets are never padded)
together with the matching, which the head needs to score and merge the candidates
(``heads.matcher_head``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmseg.registry import MODELS
from torch import Tensor

from ...prompts.context import PromptContext, ReferenceContext
from ...prompts.structures import Prompts
from ...sam.backend import ImageEmbedding
from ...utils.cache import LRUCache
from ...utils.naming import reference_cache_key
from .patch_matching import (
    MAX_PAIRS_BEFORE_HALVING,
    MatchResult,
    bidirectional_matching,
    patch_centers_xy,
    reference_patch_mask,
)
from .robust_sampler import RobustPromptSampler, group_subsets_by_size


@dataclass
class MatcherReference:
    """Matcher's fit for one reference class: its patch features and foreground patches."""

    features: Tensor
    foreground: np.ndarray


@dataclass
class MatcherSample:
    """What Matcher's sampler found on one target.

    Attributes:
        groups: ``(indices, prompts)`` per subset size: the subsets' positions in sampling
            order and their prompt sets (all points positive, no padding).
        num_sets: number of prompt sets in all groups.
        match: the bidirectional patch matching (for EMD scoring).
        points: (N, 2) xy of the matched target patches.
        ref_fg: the reference's foreground patches.
        centres: (K, 2) xy the subsets were drawn from (k-means centres or the points).
        grid_size, patch_size: the feature grid the matching ran on (for scoring).
    """

    groups: List[Tuple[np.ndarray, Prompts]]
    num_sets: int
    match: MatchResult
    points: np.ndarray
    ref_fg: np.ndarray
    centres: np.ndarray
    grid_size: int
    patch_size: int


@MODELS.register_module()
class MatcherPromptSampler(torch.nn.Module):
    """Multi-point prompt sets from bidirectional DINOv2 patch matching.

    Args:
        encoder: ``DINOv2Encoder`` config (ViT-L/14 at 518 px by default), or
            ``SAMFeatureEncoder`` (the SAM embedding's features: a variant, not Matcher).
        num_centers, use_points_or_centers, sample_range, max_sample_iterations, seed: the
            sampler (defaults: Matcher's one-object FSS-1000 preset).
        max_pairs: above this many matches keep the more similar half (Matcher: 40).
        cache_size: target feature maps kept (one per image, reused by every class).
    """

    def __init__(self, encoder: Optional[dict] = None, num_centers: int = 8,
                 use_points_or_centers: bool = False, sample_range: Tuple[int, int] = (4, 6),
                 max_sample_iterations: int = 30, seed: int = 0,
                 max_pairs: int = MAX_PAIRS_BEFORE_HALVING,
                 cache_size: int = 4) -> None:
        super().__init__()
        self.encoder = MODELS.build(encoder or dict(type='DINOv2Encoder', arch='vit_l14'))
        self.sampler = RobustPromptSampler(
            num_centers=num_centers, use_points_or_centers=use_points_or_centers,
            sample_range=tuple(sample_range), max_sample_iterations=max_sample_iterations,
            seed=seed)
        self.max_pairs = max_pairs
        self.cache: LRUCache[Tensor] = LRUCache(cache_size)

    @torch.no_grad()
    def features(self, image: Tensor, embedding: Optional[ImageEmbedding] = None,
                 key: Optional[str] = None) -> Tensor:
        """(h*w, C) unit-norm patch features of a (3, H, W) image, cached by key (DINOv2's, or
        the SAM embedding's with ``SAMFeatureEncoder``)."""
        return self.cache.get_or_compute(key, lambda: self.encoder.patch_features(image,
                                                                                  embedding))

    def reference(self, refs: Sequence[ReferenceContext]) -> MatcherReference:
        """The references' features (each computed once for all its classes) and this class's
        foreground patches; k references are one bank of patches, matched together."""
        feats, fgs = [], []
        for ref in refs:
            feats.append(self.features(ref.image, ref.embedding, reference_cache_key(ref.key)))
            fgs.append(reference_patch_mask(ref.mask.cpu().numpy(), self.encoder.grid_size))
        if len(refs) == 1:
            return MatcherReference(feats[0], fgs[0])
        return MatcherReference(torch.cat(feats), np.concatenate([f.reshape(-1) for f in fgs]))

    def forward(self, ctx: PromptContext, reference: MatcherReference) -> MatcherSample:
        """Match ``reference`` to the target of ``ctx`` and sample the prompt sets."""
        tgt_feats = self.features(ctx.image, ctx.target, ctx.target_key)
        match = bidirectional_matching(reference.features.cpu().numpy(),
                                       tgt_feats.cpu().numpy(), reference.foreground,
                                       max_pairs=self.max_pairs)
        grid, patch = self.encoder.grid_size, self.encoder.patch_size
        points = patch_centers_xy(match.tgt_idx, grid, ctx.original_size, patch)
        centres, subsets = self.sampler.sample(points)
        device = ctx.target.features.device
        groups = [(idx, Prompts(point_coords=torch.from_numpy(coords).to(device),
                                point_labels=torch.from_numpy(labels).to(device)))
                  for idx, coords, labels in group_subsets_by_size(subsets)]
        return MatcherSample(groups, len(subsets), match, points, reference.foreground,
                             centres, grid, patch)
