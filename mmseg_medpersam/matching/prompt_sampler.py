"""Matcher's robust prompt sampler: subsets of matched points as multi-point SAM prompts.

The matched target points (or their k-means centres) are noisy; prompting SAM with many small
subsets of them and scoring the resulting masks afterwards (instance-level matching) is more
robust than trusting any single point set. Defaults follow the FSS-1000 "one whole object"
preset: K = 8 k-means centres, subset sizes 4..6, all combinations (154 prompts).
"""
from __future__ import annotations

import itertools
import warnings
from typing import List, Sequence, Tuple

import numpy as np

#: SAM's label for a padding point that is not a prompt.
PAD_LABEL = -1
#: Up to this many points every combination is taken; above it, random subsets are drawn.
MAX_POINTS_FOR_ALL_COMBINATIONS = 8


def kmeans_centers(points: np.ndarray, num_centers: int, seed: int = 0,
                   max_reruns: int = 10) -> np.ndarray:
    """k-means++ centres (K, 2) of ``points`` (N, 2), K = min(num_centers, #distinct points).

    Re-run with a new seed until no cluster is empty, as Matcher does.
    """
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

    def sample(self, points_xy: np.ndarray) -> List[np.ndarray]:
        """Point subsets, each (k, 2) ``(x, y)`` in the frame of ``points_xy``; all positive."""
        points = self.prompt_points(points_xy)
        return [points[idx] for idx in self.subset_indices(len(points))]

    __call__ = sample


def pad_point_subsets(subsets: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """Stack subsets of unequal size into SAM batches.

    Returns coords (B, Kmax, 2) float32 (padding at (0, 0)) and labels (B, Kmax) int64:
    1 for a positive point, ``PAD_LABEL`` (-1, SAM's "not a point") for padding.
    """
    if len(subsets) == 0:
        return np.zeros((0, 0, 2), np.float32), np.zeros((0, 0), np.int64)
    kmax = max(len(s) for s in subsets)
    coords = np.zeros((len(subsets), kmax, 2), dtype=np.float32)
    labels = np.full((len(subsets), kmax), PAD_LABEL, dtype=np.int64)
    for i, s in enumerate(subsets):
        s = np.asarray(s, dtype=np.float32).reshape(-1, 2)
        coords[i, :len(s)] = s
        labels[i, :len(s)] = 1
    return coords, labels
