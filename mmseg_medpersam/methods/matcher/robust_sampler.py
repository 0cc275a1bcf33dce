"""Matcher's robust prompt sampler: subsets of matched points as multi-point SAM prompts.

The matched target points (or their k-means centres) are noisy; prompting SAM with many small
subsets of them and scoring the resulting masks afterwards (instance-level matching) is more
robust than trusting any single point set. Defaults follow Matcher's FSS-1000 "one whole
object" preset (its scripts/fss.sh): K = 8 k-means centres, subset sizes 4..6, all
combinations (154 prompts). Matcher's COCO/LVIS presets (dense grid prompts, stability and IoU
filters, box NMS) are not implemented.
"""
from __future__ import annotations

import itertools
import warnings
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .requirements import require_matcher_package

#: Up to this many points every combination is taken; above it, random subsets are drawn.
MAX_POINTS_FOR_ALL_COMBINATIONS = 8


def kmeans_centers(points: np.ndarray, num_centers: int, seed: int = 0,
                   max_reruns: int = 10) -> np.ndarray:
    """k-means++ centres (K, 2) of ``points`` (N, 2), K = min(num_centers, #distinct points).

    Re-run with a new seed until no cluster is empty, as Matcher does.
    """
    require_matcher_package('sklearn')
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    k = min(int(num_centers), len(np.unique(points, axis=0)))
    if k <= 0:
        return np.zeros((0, 2), dtype=np.float64)
    for attempt in range(max_reruns):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', ConvergenceWarning)
            km = KMeans(n_clusters=k, init='k-means++', n_init=1,
                        random_state=seed + attempt).fit(points)
        if np.unique(km.labels_).size == k:
            break
    return km.cluster_centers_


class RobustPromptSampler:
    """Sample multi-point prompts from the matched target points.

    Args:
        num_centers: K of the k-means clustering of the matched points.
        use_points_or_centers: Matcher's flag: True uses the raw matched points, False their
            k-means centres.
        sample_range: (min, max) subset size, clamped to the number of points.
        max_sample_iterations: random subsets per size when there are more than 8 points.
        seed: seed of the subset draws and of k-means.
    """

    def __init__(self,
                 num_centers: int = 8,
                 use_points_or_centers: bool = False,
                 sample_range: Tuple[int, int] = (4, 6),
                 max_sample_iterations: int = 30,
                 seed: int = 0) -> None:
        lo, hi = int(sample_range[0]), int(sample_range[1])
        if lo < 1 or hi < lo:
            raise ValueError(f'sample_range must satisfy 1 <= min <= max, got {sample_range}.')
        self.num_centers = int(num_centers)
        self.use_points_or_centers = bool(use_points_or_centers)
        self.sample_range = (lo, hi)
        self.max_sample_iterations = int(max_sample_iterations)
        self.seed = int(seed)

    def prompt_points(self, points_xy: np.ndarray) -> np.ndarray:
        """Points the subsets are drawn from: raw matched points or their k-means centres."""
        points_xy = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
        if self.use_points_or_centers or len(points_xy) == 0:
            return points_xy
        return kmeans_centers(points_xy, self.num_centers, seed=self.seed)

    def subset_indices(self, num_points: int) -> List[np.ndarray]:
        """Index subsets (each (k,)) over ``num_points`` points, smallest size first."""
        rng = np.random.default_rng(self.seed)
        lo = min(self.sample_range[0], num_points)
        hi = min(self.sample_range[1], num_points)
        subsets: List[np.ndarray] = []
        if num_points == 0:
            return subsets
        for size in range(lo, hi + 1):
            if num_points > MAX_POINTS_FOR_ALL_COMBINATIONS:
                subsets.extend(rng.choice(num_points, size=size, replace=False)
                               for _ in range(self.max_sample_iterations))
            else:
                subsets.extend(np.asarray(c) for c in
                               itertools.combinations(range(num_points), size))
        return [s.astype(np.int64) for s in subsets]

    def sample(self, points_xy: np.ndarray) -> Tuple[np.ndarray, List[np.ndarray]]:
        """The points drawn from (``prompt_points``) and the subsets: each (k, 2) ``(x, y)``
        in the frame of ``points_xy``, all positive."""
        points = self.prompt_points(points_xy)
        return points, [points[idx] for idx in self.subset_indices(len(points))]

    __call__ = sample


def group_subsets_by_size(subsets: Sequence[np.ndarray]
                          ) -> List[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Batch point subsets by size, without padding: SAM attends to every token it is given,
    so a padded (label -1) subset decodes differently from the same subset alone.

    Returns, per size in order of first appearance, ``(indices, coords, labels)``: the
    subsets' positions in ``subsets`` (B,), their points (B, k, 2) float32 and all-positive
    labels (B, k) int64.
    """
    groups: Dict[int, List[int]] = {}
    for i, s in enumerate(subsets):
        groups.setdefault(len(s), []).append(i)
    out = []
    for size, idx in groups.items():
        coords = np.stack([np.asarray(subsets[i], np.float32).reshape(size, 2) for i in idx])
        out.append((np.asarray(idx, np.int64), coords, np.ones((len(idx), size), np.int64)))
    return out
