"""Patch features from the promptable model's own image embedding, for Matcher's pipeline.

Matcher matches DINOv2 patch features; DINOv2 weights are on no registry these machines reach.
``SAMFeatureEncoder`` hands Matcher's matching, prompt sampler and instance scoring the SAM
encoder's embedding instead (already computed for every image), so the pipeline runs on
trained weights everywhere. It is a variant, not Matcher: tables name it "Matcher pipeline,
SAM-encoder features". The embedding's cells that cover the image are resized to a square
``grid`` x ``grid`` map, so its patches tile the image exactly as DINOv2's square-resized
input does (what ``patch_centers_xy`` and ``reference_patch_mask`` assume).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import Tensor

from ...sam.backend import ImageEmbedding
from ...utils.validate import check_number


@MODELS.register_module()
class SAMFeatureEncoder(nn.Module):
    """L2-normalised (grid*grid, 256) features from a SAM-family image embedding.

    Args:
        grid: side of the square patch grid over the image (default 64: the embedding's own).
        patch_size: side of one patch in the virtual ``grid * patch_size`` square frame the
            coordinates are computed in (any value gives the same image coordinates).
    """

    feature_source = 'SAM encoder'

    def __init__(self, grid: int = 64, patch_size: int = 16) -> None:
        super().__init__()
        check_number(type(self).__name__, 'grid', grid, minimum=2, integer=True)
        self.grid = int(grid)
        self.patch_size = int(patch_size)

    @property
    def grid_size(self) -> Tuple[int, int]:
        return self.grid, self.grid

    def patch_features(self, image: Tensor, embedding: Optional[ImageEmbedding]) -> Tensor:
        """The image's patch features, from its embedding (the image itself is not used)."""
        if embedding is None:
            raise ValueError('SAMFeatureEncoder needs the SAM embedding of the image (a method '
                             'with a SAM backend)')
        rows, cols = embedding.geometry.valid_cells(embedding.features.shape[-1])
        cells = embedding.features[:, :, :rows, :cols].float()
        square = F.interpolate(cells, size=self.grid_size, mode='bilinear', align_corners=False)
        return F.normalize(square[0].flatten(1).T, dim=-1)


__all__ = ['SAMFeatureEncoder']
