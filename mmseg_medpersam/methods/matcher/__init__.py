"""Matcher (Liu et al., ICLR 2024): DINOv2 (or SAM-encoder) features (``dinov2.py``,
``sam_features.py``), bidirectional patch matching (``patch_matching.py``), the robust prompt
sampler (``robust_sampler.py``, wrapped as the registered ``MatcherPromptSampler`` in
``prompt_sampler.py``), instance-level scoring (``instance_scoring.py``) and the head."""
from .dinov2 import (
    DINOV2_ARCHS,
    DINOv2Encoder,
    build_dinov2_vit,
    convert_dinov2_state_dict,
    load_dinov2_checkpoint,
)
from .head import MatcherHead
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
from .prompt_sampler import MatcherPromptSampler, MatcherSample
from .robust_sampler import RobustPromptSampler, group_subsets_by_size, kmeans_centers
from .sam_features import SAMFeatureEncoder

__all__ = [
    'DINOV2_ARCHS', 'DINOv2Encoder', 'build_dinov2_vit', 'convert_dinov2_state_dict',
    'load_dinov2_checkpoint', 'MatchResult', 'bidirectional_matching', 'downsample_mask',
    'patch_centers_xy', 'reference_patch_mask', 'RobustPromptSampler', 'kmeans_centers',
    'group_subsets_by_size', 'ScoreConfig', 'emd_score', 'points_in_mask',
    'purity_coverage', 'score_and_merge', 'score_candidates', 'SAMFeatureEncoder',
    'MatcherHead', 'MatcherPromptSampler', 'MatcherSample'
]
