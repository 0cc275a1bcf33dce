"""Matcher baseline parts: DINOv2 (or SAM-encoder) features, patch matching, prompt sampling,
mask scoring."""
from .dinov2 import (
    DINOV2_ARCHS,
    DINOv2Encoder,
    build_dinov2_vit,
    convert_dinov2_state_dict,
    load_dinov2_checkpoint,
)
from .instance_scoring import (
    ScoreConfig,
    emd_score,
    points_in_mask,
    purity_coverage,
    score_and_merge,
    score_candidates,
)
from .patch_matching import (
    MatchResult,
    bidirectional_matching,
    downsample_mask,
    patch_centers_xy,
    reference_patch_mask,
)
from .prompt_sampler import RobustPromptSampler, group_subsets_by_size, kmeans_centers
from .sam_features import SAMFeatureEncoder

__all__ = [
    'DINOV2_ARCHS', 'DINOv2Encoder', 'build_dinov2_vit', 'convert_dinov2_state_dict',
    'load_dinov2_checkpoint', 'MatchResult', 'bidirectional_matching', 'downsample_mask',
    'patch_centers_xy', 'reference_patch_mask', 'RobustPromptSampler', 'kmeans_centers',
    'group_subsets_by_size', 'ScoreConfig', 'emd_score', 'points_in_mask',
    'purity_coverage', 'score_and_merge', 'score_candidates', 'SAMFeatureEncoder'
]
