"""Spread-out point prompts (``g_point``, Med-PerSAM's Figure 3).

A prototype (mean SAM feature of the reference under its mask) is compared with every target
feature. Erosion of the current mask gives an inner region (positive candidates) and a dilation
ring around it an outer band (negative candidates). Both are cut into sub-regions (angular
sectors around the mask's centroid, or a grid over its box); in every inner sub-region the
location most similar to the prototype becomes a positive point, in every band sub-region the
least similar one a negative point. Points are thus spread over the whole structure instead of
piling up at a single similarity peak.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import cv2
import numpy as np
import torch
from mmseg.registry import MODELS

from ..utils.validate import check_number
from .base import BasePromptGenerator, flat_index_to_xy
from .context import PromptContext
from .structures import Prompts


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def inner_and_band(mask: np.ndarray, erosion: float, dilation: float
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """Inner region (eroded mask) and outer band (dilated ring outside the mask).

    Radii are fractions of the mask's equivalent radius sqrt(area / pi), at least 1 pixel. When
    erosion would remove the whole (thin or tiny) mask, the mask itself is the inner region.
    """
    m = mask.astype(np.uint8)
    radius = math.sqrt(max(int(m.sum()), 1) / math.pi)
    r_in = max(1, int(round(erosion * radius)))
    r_out = max(1, int(round(dilation * radius)))
    inner = cv2.erode(m, _disk(r_in), borderType=cv2.BORDER_REPLICATE).astype(bool)
    if not inner.any():
        inner = mask.astype(bool)
    band = cv2.dilate(m, _disk(r_out)).astype(bool) & ~mask.astype(bool)
    return inner, band


def sub_regions(mask: np.ndarray, num_regions: int, partition: str) -> np.ndarray:
    """(H, W) int map of sub-region ids over the whole image.

    'sector': equal angles around the mask's centroid; 'grid': ``num_regions`` cells over the
    mask's bounding box, as gy x gx with gy the largest divisor <= sqrt(num_regions) (pixels
    outside the box are clamped to the nearest cell).
    """
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    yy, xx = np.mgrid[0:h, 0:w]
    if partition == 'sector':
        cy, cx = ys.mean(), xs.mean()
        angle = np.arctan2(yy - cy, xx - cx) + math.pi  # 0 .. 2pi
        return np.minimum((angle / (2 * math.pi) * num_regions).astype(int), num_regions - 1)
    if partition == 'grid':
        gy = max(d for d in range(1, int(math.sqrt(num_regions)) + 1) if num_regions % d == 0)
        gx = num_regions // gy
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        row = np.clip(((yy - y0) * gy) // max(y1 - y0, 1), 0, gy - 1)
        col = np.clip(((xx - x0) * gx) // max(x1 - x0, 1), 0, gx - 1)
        return row * gx + col
    raise ValueError(f"partition must be 'sector' or 'grid', got {partition!r}")


def extreme_per_region(score: np.ndarray, region: np.ndarray, ids: np.ndarray,
                       largest: bool) -> np.ndarray:
    """(K, 2) xy of the max (or min) of ``score`` inside ``region`` for every sub-region id."""
    points = []
    for r in np.unique(ids[region]):
        sel = region & (ids == r)
        vals = np.where(sel, score, -np.inf if largest else np.inf)
        idx = int(np.argmax(vals) if largest else np.argmin(vals))
        points.append(flat_index_to_xy(idx, score.shape[1]))
    return np.asarray(points, np.float32).reshape(-1, 2)


@MODELS.register_module()
class BandPointPrompt(BasePromptGenerator):
    """Positive points in the eroded mask and negative points in the outer band, per sub-region.

    Args:
        num_regions: sub-regions (sectors or grid cells) for positive points.
        num_negative_regions: sub-regions for negative points (None: as ``num_regions``;
            0: no negative points).
        erosion: inner-region erosion radius, as a fraction of the mask's equivalent radius.
        dilation: outer-band width, as a fraction of the mask's equivalent radius.
        partition: 'sector' (angles around the centroid) or 'grid' (cells over the box).
    """

    def __init__(self, num_regions: int = 8, num_negative_regions: Optional[int] = None,
                 erosion: float = 0.1, dilation: float = 0.15, partition: str = 'sector') -> None:
        super().__init__()
        name = type(self).__name__
        check_number(name, 'num_regions', num_regions, minimum=1, integer=True)
        if num_negative_regions is not None:
            check_number(name, 'num_negative_regions', num_negative_regions, minimum=0,
                         integer=True)
        check_number(name, 'erosion', erosion, minimum=0)
        check_number(name, 'dilation', dilation, minimum=0)
        if partition not in ('sector', 'grid'):
            raise ValueError(f"{name}: partition must be 'sector' or 'grid', got {partition!r}")
        self.num_regions = num_regions
        self.num_negative_regions = (num_regions if num_negative_regions is None
                                     else num_negative_regions)
        self.erosion = erosion
        self.dilation = dilation
        self.partition = partition

    def forward(self, ctx: PromptContext) -> Optional[Prompts]:
        if ctx.mask is None or not bool(ctx.mask.any()):
            return None
        mask = ctx.mask.cpu().numpy().astype(bool)
        sim = ctx.similarity_map().float().cpu().numpy()
        inner, band = inner_and_band(mask, self.erosion, self.dilation)
        pos = extreme_per_region(sim, inner, sub_regions(mask, self.num_regions, self.partition),
                                 largest=True)
        neg = np.zeros((0, 2), np.float32)
        if self.num_negative_regions > 0 and band.any():
            neg_ids = sub_regions(mask, self.num_negative_regions, self.partition)
            neg = extreme_per_region(sim, band, neg_ids, largest=False)
        coords = np.concatenate([pos, neg])
        labels = np.concatenate([np.ones(len(pos), np.int64), np.zeros(len(neg), np.int64)])
        device = ctx.mask.device
        return Prompts(point_coords=torch.from_numpy(coords)[None].to(device),
                       point_labels=torch.from_numpy(labels)[None].to(device))
