"""Matcher's instance-level matching: score SAM's candidate masks, then merge the best ones.

Each candidate is scored by how well its patches match the reference foreground as a whole
(EMD over the patch cost matrix) and by how the matched points fall in it (purity: points per
patch of mask; coverage: share of all matched points it contains):
``score = alpha * (1 - emd) + beta * purity * coverage ** exp``.
The top-scoring masks are merged by union.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from .patch_matching import MatchResult, downsample_mask, patch_centers_xy
from .requirements import require_matcher_package

EPS = 1e-6


def emd_score(cost: np.ndarray, ref_fg: np.ndarray, cand_patch_mask: np.ndarray) -> float:
    """``1 - EMD`` between the reference foreground patches and a candidate's patches.

    Uniform weights on both sides, ground cost ``cost[ref_fg][:, cand]`` (``(1 - S) / 2``).
    """
    ref_fg = np.asarray(ref_fg, dtype=bool).reshape(-1)
    cand = np.asarray(cand_patch_mask, dtype=bool).reshape(-1)
    if not ref_fg.any() or not cand.any():
        raise ValueError('emd_score needs a non-empty reference and candidate patch mask.')
    sub = np.ascontiguousarray(np.asarray(cost, dtype=np.float64)[ref_fg][:, cand])
    a = np.full(sub.shape[0], 1.0 / sub.shape[0])
    b = np.full(sub.shape[1], 1.0 / sub.shape[1])
    ot = require_matcher_package('ot')
    return float(1.0 - ot.emd2(a, b, sub))


def points_in_mask(points_xy: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(N,) bool: whether each pixel point (x, y) falls on the (H, W) mask (clipped inside)."""
    points = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    h, w = mask.shape
    x = np.clip(np.floor(points[:, 0]).astype(np.int64), 0, w - 1)
    y = np.clip(np.floor(points[:, 1]).astype(np.int64), 0, h - 1)
    return np.asarray(mask, dtype=bool)[y, x]


def purity_coverage(points_xy: np.ndarray, mask: np.ndarray,
                    mask_patch_area: int) -> Tuple[float, float]:
    """purity = points inside / mask area in patches; coverage = points inside / all points.

    Both get ``+1e-6`` as in Matcher.
    """
    n_points = len(np.asarray(points_xy).reshape(-1, 2))
    n_in = int(points_in_mask(points_xy, mask).sum()) if n_points else 0
    purity = n_in / max(float(mask_patch_area), 1.0) + EPS
    coverage = (n_in / n_points if n_points else 0.0) + EPS
    return purity, coverage


@dataclass
class ScoreConfig:
    """Scoring, filtering and merging settings (defaults: Matcher's FSS-1000 preset).

    ``*_filter`` > 0 keeps masks with metric >= min(threshold, best metric); 0 is off. Only the
    one-object FSS-1000 path is implemented end to end: Matcher's COCO/LVIS presets also need
    dense grid prompts, stability/IoU filters and box NMS, which this plugin does not have.
    """

    alpha: float = 0.8
    beta: float = 0.2
    exp: float = 1.0
    coverage_filter: float = 0.0
    emd_filter: float = 0.0
    purity_filter: float = 0.0
    num_merging_mask: int = 10
    topk_scores_threshold: float = 0.7


def score_candidates(candidates: np.ndarray,
                     cost: np.ndarray,
                     ref_fg: np.ndarray,
                     points_xy: np.ndarray,
                     grid: Tuple[int, int],
                     alpha: float = 0.8,
                     beta: float = 0.2,
                     exp: float = 1.0) -> Dict[str, np.ndarray]:
    """Per-candidate metrics: ``emd`` (the 1 - EMD score), ``purity``, ``coverage``, ``score``.

    Candidates whose patch mask is empty get NaN metrics and score ``-inf``.
    """
    candidates = np.asarray(candidates, dtype=bool)
    m = candidates.shape[0]
    out = {k: np.full(m, np.nan) for k in ('emd', 'purity', 'coverage')}
    out['score'] = np.full(m, -np.inf)
    for i in range(m):
        patches = downsample_mask(candidates[i], grid)
        if not patches.any():
            continue
        out['emd'][i] = emd_score(cost, ref_fg, patches)
        out['purity'][i], out['coverage'][i] = purity_coverage(
            points_xy, candidates[i], int(patches.sum()))
        out['score'][i] = (alpha * out['emd'][i]
                           + beta * out['purity'][i] * out['coverage'][i] ** exp)
    return out


def _apply_metric_filters(metrics: Dict[str, np.ndarray], valid: np.ndarray,
                          cfg: ScoreConfig) -> np.ndarray:
    """Drop masks below min(threshold, best) for coverage, emd, purity (in that order)."""
    keep = valid.copy()
    for name, thr in (('coverage', cfg.coverage_filter), ('emd', cfg.emd_filter),
                      ('purity', cfg.purity_filter)):
        if thr > 0 and keep.any():
            values = metrics[name]
            cut = min(thr, values[keep].max())
            keep &= np.where(keep, values, -np.inf) >= cut
    return keep


def _select(scores: np.ndarray, keep: np.ndarray, cfg: ScoreConfig) -> np.ndarray:
    """Indices of the masks to merge among ``keep`` (best first)."""
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        return idx
    idx = idx[np.argsort(-scores[idx], kind='stable')]
    s = scores[idx]
    idx, s = idx[:cfg.num_merging_mask], s[:cfg.num_merging_mask]
    if cfg.topk_scores_threshold > 0 and s.max() > 0:
        s = s / s.max()
    return idx[s > cfg.topk_scores_threshold]


def score_and_merge(candidates: np.ndarray,
                    match: Optional[MatchResult],
                    cost: Optional[np.ndarray],
                    ref_fg: np.ndarray,
                    points_xy: Optional[np.ndarray],
                    grid: Tuple[int, int],
                    cfg: Optional[ScoreConfig] = None,
                    patch_size: int = 14,
                    **cfg_overrides) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score candidate masks and return their merged union.

    Args:
        candidates: (M, H, W) bool candidate masks in the target image frame.
        match: the patch matching result; gives ``cost`` / ``points_xy`` when those are None.
        cost: (N_r, N_t) ``(1 - S) / 2`` cost matrix.
        ref_fg: (N_r,) bool foreground reference patches.
        points_xy: (P, 2) matched points (x, y) in pixels of the (H, W) frame.
        grid: target patch grid (h, w).
        cfg: scoring settings; keyword overrides (e.g. ``alpha=1.0``) replace its fields.

    Returns:
        merged (H, W) bool mask (all False if no candidate is usable), scores (M,) (``-inf``
        for empty candidates), and the kept candidate indices (best first).
    """
    cfg = ScoreConfig(**{**(cfg.__dict__ if cfg else {}), **cfg_overrides})
    candidates = np.asarray(candidates, dtype=bool)
    if candidates.ndim != 3:
        raise ValueError(f'Expected (M, H, W) candidates, got shape {candidates.shape}.')
    if cost is None:
        if match is None:
            raise ValueError('score_and_merge needs a cost matrix or a MatchResult.')
        cost = match.cost
    if points_xy is None:
        if match is None:
            raise ValueError('score_and_merge needs points_xy or a MatchResult.')
        points_xy = patch_centers_xy(match.tgt_idx, grid, candidates.shape[1:], patch_size)

    metrics = score_candidates(candidates, cost, ref_fg, points_xy, grid,
                               cfg.alpha, cfg.beta, cfg.exp)
    scores = metrics['score']
    keep = _apply_metric_filters(metrics, np.isfinite(scores), cfg)
    kept = _select(scores, keep, cfg)
    merged = np.zeros(candidates.shape[1:], dtype=bool)
    if kept.size:
        merged = candidates[kept].any(axis=0)
    return merged, scores, kept.astype(np.int64)
