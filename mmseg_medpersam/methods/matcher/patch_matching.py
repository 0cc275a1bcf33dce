"""Matcher's bidirectional patch-level matching between a reference and a target image.

Forward: each foreground reference patch is assigned (Hungarian, max similarity) to a distinct
target patch. Reverse: those target patches are assigned back to all reference patches. A pair
is kept only when the reverse partner of its target patch lies inside the reference mask, which
discards target patches whose best reference counterpart is background (outliers). All patch
indices are row-major over the (h, w) grid: ``index = row * w + col``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

ArrayLike = Union[np.ndarray, torch.Tensor]

#: Above this many kept pairs only the most similar half is kept (Matcher).
MAX_PAIRS_BEFORE_HALVING = 40


@dataclass
class MatchResult:
    """Kept matches, sorted by decreasing similarity.

    Attributes:
        tgt_idx: (K,) target patch indices (distinct).
        ref_idx: (K,) reference patch indices their forward match came from.
        similarity: (K,) cosine similarity of each kept pair.
        rev_ref_idx: (K,) reference patch each target patch is matched to in reverse.
        cost: (N_r, N_t) cost matrix ``C = (1 - S) / 2``, reused by the EMD score.
        mutual: False when no pair passed the reverse check and all forward pairs were kept.
    """

    tgt_idx: np.ndarray
    ref_idx: np.ndarray
    similarity: np.ndarray
    rev_ref_idx: np.ndarray
    cost: np.ndarray
    mutual: bool = True

    def __len__(self) -> int:
        return int(self.tgt_idx.shape[0])


def _as_numpy(x: ArrayLike, dtype=np.float64) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def downsample_mask(mask: np.ndarray, grid: Tuple[int, int]) -> np.ndarray:
    """(H, W) mask -> (h*w,) bool patch mask: a patch is on if its area-average is > 0.

    Uses ``cv2.resize(..., INTER_AREA) > 0`` as Matcher does, so any overlap counts.
    """
    h, w = int(grid[0]), int(grid[1])
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f'Expected an (H, W) mask, got shape {mask.shape}.')
    small = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    return (small > 0).reshape(-1)


def reference_patch_mask(mask: np.ndarray,
                         grid: Tuple[int, int],
                         empty_fallback: bool = False,
                         patch_size: int = 14) -> np.ndarray:
    """Foreground reference patches (h*w,) bool from a pixel mask (H, W).

    An empty mask raises ``ValueError`` unless ``empty_fallback``; then, as Matcher does, a
    ``patch_size`` square at the centre of the ``(h*patch, w*patch)`` frame is used instead.
    """
    mask = np.asarray(mask).astype(bool)
    if not mask.any():
        if not empty_fallback:
            raise ValueError(
                'The reference mask is empty: Matcher needs at least one foreground pixel '
                '(pass empty_fallback=True for its centre-square fallback).')
        h, w = int(grid[0]), int(grid[1])
        sh, sw = h * patch_size, w * patch_size
        mask = np.zeros((sh, sw), dtype=bool)
        half = patch_size // 2
        mask[sh // 2 - half:sh // 2 + half, sw // 2 - half:sw // 2 + half] = True
    return downsample_mask(mask, grid)


def bidirectional_matching(ref_feats: ArrayLike,
                           tgt_feats: ArrayLike,
                           ref_fg: ArrayLike,
                           max_pairs: int = MAX_PAIRS_BEFORE_HALVING) -> MatchResult:
    """Bidirectional Hungarian matching of L2-normalised patch features.

    Args:
        ref_feats: (N_r, C) reference patch features (several shots may be stacked).
        tgt_feats: (N_t, C) target patch features.
        ref_fg: (N_r,) bool, foreground reference patches.
        max_pairs: above this many kept pairs, keep the most similar half.
    """
    ref = _as_numpy(ref_feats)
    tgt = _as_numpy(tgt_feats)
    fg = _as_numpy(ref_fg, dtype=bool).reshape(-1)
    if ref.ndim != 2 or tgt.ndim != 2 or ref.shape[1] != tgt.shape[1]:
        raise ValueError(f'Feature shapes do not match: {ref.shape} vs {tgt.shape}.')
    if fg.shape[0] != ref.shape[0]:
        raise ValueError(f'ref_fg has {fg.shape[0]} entries for {ref.shape[0]} patches.')
    fg_idx = np.flatnonzero(fg)
    if fg_idx.size == 0:
        raise ValueError('The reference patch mask is empty: nothing to match.')

    sim = ref @ tgt.T
    cost = (1.0 - sim) / 2.0

    # Forward: foreground reference patches -> distinct target patches.
    rows, tgt_idx = linear_sum_assignment(sim[fg_idx], maximize=True)
    ref_idx = fg_idx[rows]
    pair_sim = sim[ref_idx, tgt_idx]

    # Reverse: matched target patches -> all reference patches.
    rev_rows, rev_cols = linear_sum_assignment(sim.T[tgt_idx], maximize=True)
    rev_ref_idx = np.empty_like(tgt_idx)
    rev_ref_idx[rev_rows] = rev_cols
    keep = fg[rev_ref_idx]
    mutual = bool(keep.any())
    if not mutual:
        keep = np.ones_like(keep)

    order = np.argsort(-pair_sim[keep], kind='stable')
    if order.size > max_pairs:
        order = order[:order.size // 2]
    sel = np.flatnonzero(keep)[order]
    return MatchResult(
        tgt_idx=tgt_idx[sel].astype(np.int64),
        ref_idx=ref_idx[sel].astype(np.int64),
        similarity=pair_sim[sel],
        rev_ref_idx=rev_ref_idx[sel].astype(np.int64),
        cost=cost,
        mutual=mutual)


def patch_centers_xy(patch_idx: Union[Sequence[int], np.ndarray],
                     grid: Tuple[int, int],
                     image_size: Tuple[int, int],
                     patch_size: int = 14) -> np.ndarray:
    """Pixel coordinates (K, 2) ``(x, y)`` of patch centres in an image of size (H, W).

    In the resized square frame of side ``grid * patch_size`` the centre of patch (row, col)
    is ``(patch_size*col + patch_size//2, patch_size*row + patch_size//2)``; it is then scaled
    to the original (H, W) (the encoder resized without keeping the aspect).
    """
    idx = np.asarray(patch_idx, dtype=np.int64).reshape(-1)
    h, w = int(grid[0]), int(grid[1])
    H, W = int(image_size[0]), int(image_size[1])
    rows, cols = idx // w, idx % w
    x = (patch_size * cols + patch_size // 2) * (W / (w * patch_size))
    y = (patch_size * rows + patch_size // 2) * (H / (h * patch_size))
    return np.stack([x, y], axis=1).astype(np.float64)
