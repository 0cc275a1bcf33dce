"""Multi-atlas label fusion: k warped reference masks become one, weighted by local similarity.

Each reference is warped onto the target with its image; where a warped reference image looks
like the target (small local squared difference of the standardised intensities), its warped
masks get more weight: locally weighted voting, the classic multi-atlas rule (Artaechevarria et
al., IEEE TMI 2009). Weights are a softmax over the references of ``-d / h``, with ``h`` the
temperature times the mean local difference on that target, so the rule is free of the
intensity scale of the images.
"""
from __future__ import annotations

import torch
from mmseg.registry import MODELS
from torch import Tensor

from ...utils.validate import check_number
from .warping.losses import box_mean


def standardise(image: Tensor) -> Tensor:
    """Zero mean, unit standard deviation over the pixels of each (.., H, W) image."""
    flat = image.flatten(-2)
    mean = flat.mean(-1, keepdim=True)[..., None]
    std = flat.std(-1, keepdim=True)[..., None] if flat.shape[-1] > 1 else torch.ones_like(mean)
    return (image - mean) / (std + 1e-6)


@MODELS.register_module()
class LocallyWeightedVoting(torch.nn.Module):
    """Fuse per-reference warped maps by the local similarity of the warped images.

    Args:
        window: side of the local window as a fraction of the target's longest side (odd in
            pixels, at least 3): local enough to follow the anatomy, large enough to average
            noise, the same for every image size.
        temperature: scales ``h`` (larger: weights closer to a plain average; smaller: the
            locally best reference wins).
    """

    def __init__(self, window: float = 0.05, temperature: float = 1.0) -> None:
        super().__init__()
        check_number(type(self).__name__, 'window', window, minimum=0, maximum=1,
                     open_interval=True)
        check_number(type(self).__name__, 'temperature', temperature, minimum=0,
                     open_interval=True)
        self.window = window
        self.temperature = temperature

    def window_pixels(self, size) -> int:
        side = max(3, int(round(self.window * max(size))))
        return side if side % 2 else side + 1

    def weights(self, warped_images: Tensor, target: Tensor) -> Tensor:
        """(k, H, W) per-pixel weights (summing to one over k) of the k references."""
        diff = (standardise(warped_images) - standardise(target)[None]) ** 2
        d = box_mean(diff[:, None], self.window_pixels(target.shape[-2:]))[:, 0]
        h = self.temperature * d.mean() + 1e-6
        return torch.softmax(-d / h, dim=0)

    def forward(self, maps: Tensor, warped_images: Tensor, target: Tensor) -> Tensor:
        """(C, H, W) fused maps from (k, C, H, W) warped maps, their (k, H, W) warped
        reference images and the (H, W) target image (one reference: its maps as they are)."""
        if maps.shape[0] == 1:
            return maps[0]
        w = self.weights(warped_images.float(), target.float().to(warped_images.device))
        # A convex combination of probabilities, but weights summing to one only up to
        # rounding can carry it a float step past 1: it stays a probability.
        return (w[:, None] * maps).sum(dim=0).clamp(0, 1)


__all__ = ['LocallyWeightedVoting', 'standardise']
