"""What a prompt generator may look at: the reference, the target, the current mask."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..sam.backend import ImageEmbedding
from ..utils.imagenet import IMAGENET_MEAN

#: PerSAM thresholds SAM's pixel-normalised mask at 0: (v - mean) / std > 0, i.e. v > the red
#: channel's mean, for a mask of 0..255 resized as a 0..1 map.
PERSAM_MASK_THRESHOLD = IMAGENET_MEAN[0] / 255


@dataclass
class ReferenceContext:
    """The labelled reference for ONE foreground class.

    Attributes:
        image: (3, H, W) float RGB 0..255.
        mask: (H, W) bool mask of the class.
        embedding: SAM's embedding of ``image`` (None when a method runs without SAM).
        key: identifies the reference image (its file) for caches shared by its classes.
        label: the class this context is about.
        label_map: (H, W) long map of every labelled class of the reference.
        cache: per-reference state a head or generator computes once (fitted weights, ...).
    """

    image: Tensor
    mask: Tensor
    embedding: Optional[ImageEmbedding]
    key: str
    label: int = 1
    label_map: Optional[Tensor] = None
    cache: Dict[str, Any] = field(default_factory=dict)

    @property
    def grid_coverage(self) -> Tensor:
        """(g, g) fraction of each embedding cell covered by the mask (the padded frame)."""
        if 'grid_coverage' not in self.cache:
            geo = self.embedding.geometry
            self.cache['grid_coverage'] = geo.image_to_frame(self.mask.float(), geo.grid_size)
        return self.cache['grid_coverage']

    def foreground_cells(self, rule: str = 'coverage') -> Tensor:
        """(g, g) bool: the embedding cells that count as the reference's foreground.

        'coverage': cells at least half covered by the mask. 'persam': PerSAM's code: the
        mask, resized into the frame and padded, is bilinearly point-sampled at the grid
        (``F.interpolate``, no averaging); a cell counts where the sample exceeds
        123.675 / 255 (PerSAM thresholds SAM's pixel-normalised 0/255 mask at 0). Either rule
        falls back to any covered cell for masks smaller than a cell.
        """
        key = f'cells_{rule}'
        if key not in self.cache:
            cov = self.grid_coverage
            if rule == 'coverage':
                cells = cov >= 0.5
            elif rule == 'persam':
                geo = self.embedding.geometry
                framed = geo.image_to_frame(self.mask.float(), geo.frame_size)
                sampled = F.interpolate(framed[None, None], size=cov.shape, mode='bilinear',
                                        align_corners=False)[0, 0]
                cells = sampled > PERSAM_MASK_THRESHOLD
            else:
                raise ValueError(f"cell rule must be 'coverage' or 'persam', got {rule!r}")
            self.cache[key] = cells if cells.any() else cov > 0
        return self.cache[key]

    def foreground_features(self, rule: str = 'coverage') -> Tensor:
        """(N, 256) features of the reference's foreground cells (``foreground_cells``)."""
        feats = self.embedding.features[0]  # (256, g, g)
        return feats[:, self.foreground_cells(rule)].T

    def mean_feature(self, rule: str = 'coverage') -> Tensor:
        """(256,) mean reference feature under the mask (PerSAM's target embedding)."""
        key = f'prototype_{rule}'
        if key not in self.cache:
            self.cache[key] = self.foreground_features(rule).mean(dim=0)
        return self.cache[key]

    @property
    def prototype(self) -> Tensor:
        """(256,) mean reference feature under the mask, by the 'coverage' cell rule."""
        return self.mean_feature('coverage')


@dataclass
class PromptContext:
    """One target image being segmented for one class, at one refinement step.

    Attributes:
        reference: the class's (first) reference.
        more_references: the class in the other labelled references (k references:
            ``references`` is all of them, ``reference`` first).
        target: SAM's embedding of the target image (None when a method runs without SAM).
        image: (3, H, W) float RGB 0..255 target image.
        mask: (H, W) bool current mask (warped reference, or SAM's last output), if any.
        logits: (1, 1, 256, 256) SAM low-res logits of ``mask`` when it came from SAM.
        target_key: identifies the target image (its file), for generators' own caches.
        cache: per-target values shared by generators (similarity maps, ...).
    """

    reference: ReferenceContext
    target: Optional[ImageEmbedding]
    image: Tensor
    more_references: Tuple[ReferenceContext, ...] = ()
    mask: Optional[Tensor] = None
    logits: Optional[Tensor] = None
    target_key: Optional[str] = None
    cache: Dict[str, Any] = field(default_factory=dict)

    @property
    def references(self) -> Tuple[ReferenceContext, ...]:
        """Every labelled reference of this class (``reference`` first)."""
        return (self.reference, *self.more_references)

    @property
    def original_size(self):
        return tuple(self.image.shape[-2:])

    def similarity_grid(self, prototype: Optional[Tensor] = None) -> Tensor:
        """(g, g) cosine similarity of each target cell to the reference prototype."""
        key = 'similarity_grid' if prototype is None else None
        if key and key in self.cache:
            return self.cache[key]
        proto = self.reference.prototype if prototype is None else prototype
        feats = F.normalize(self.target.features[0], dim=0)
        sim = torch.einsum('c,chw->hw', F.normalize(proto, dim=0), feats)
        if key:
            self.cache[key] = sim
        return sim

    def similarity_map(self, prototype: Optional[Tensor] = None) -> Tensor:
        """(H, W) cosine similarity on the target image (through the model's frame, as PerSAM)."""
        key = 'similarity_map' if prototype is None else None
        if key and key in self.cache:
            return self.cache[key]
        grid = self.similarity_grid(prototype)
        # Grid -> mask-logit size as PerSAM does, then SAM's own postprocessing to the image.
        geo = self.target.geometry
        sim = geo.frame_to_image(geo.grid_to_mask_size(grid))
        if key:
            self.cache[key] = sim
        return sim
