"""Random known deformations of the reference pair, the supervision of ``L_aug``.

A deformation is a random affine map (rotation, scale, shear, translation about the image
centre) plus a smooth elastic field (random displacements on a coarse control grid, upsampled
bicubically). It is returned as a pixel flow (see :mod:`.spatial_transformer`), so the warping
model can be asked to recover it. Intensity jitter (gamma, contrast, brightness, noise) touches
the image only. Every random number comes from the given CPU ``torch.Generator``: a seed gives
the same deformations on any device.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .spatial_transformer import identity_grid, warp


def _uniform(gen: torch.Generator, n: int, lo: float, hi: float) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


class RandomDeformation:
    """Sample affine + elastic deformations and intensity changes of ``(N, 1, H, W)`` pairs.

    Args:
        rotation: maximum absolute rotation in degrees.
        scale: range of the isotropic scale factor.
        aspect: maximum relative anisotropy (x and y scales differ by up to this fraction).
        shear: maximum absolute shear angle in degrees.
        translation: maximum absolute shift as a fraction of the image size.
        elastic_magnitude: standard deviation of the elastic displacement, in pixels.
        elastic_grid: number of control points per axis of the elastic field.
        gamma: range of the gamma exponent (log-uniform).
        contrast: range of the contrast factor around the image mean.
        brightness: maximum absolute additive brightness change.
        noise: standard deviation of additive Gaussian noise.
    """

    def __init__(self,
                 rotation: float = 15.0,
                 scale: Sequence[float] = (0.85, 1.15),
                 aspect: float = 0.1,
                 shear: float = 5.0,
                 translation: float = 0.08,
                 elastic_magnitude: float = 3.0,
                 elastic_grid: int = 6,
                 gamma: Sequence[float] = (0.8, 1.25),
                 contrast: Sequence[float] = (0.85, 1.15),
                 brightness: float = 0.05,
                 noise: float = 0.01) -> None:
        self.rotation = float(rotation)
        self.scale = tuple(float(s) for s in scale)
        self.aspect = float(aspect)
        self.shear = float(shear)
        self.translation = float(translation)
        self.elastic_magnitude = float(elastic_magnitude)
        self.elastic_grid = int(elastic_grid)
        self.gamma = tuple(float(g) for g in gamma)
        self.contrast = tuple(float(c) for c in contrast)
        self.brightness = float(brightness)
        self.noise = float(noise)

    def sample_flow(self, n: int, size: Tuple[int, int], gen: torch.Generator) -> Tensor:
        """``n`` random deformation flows ``(n, 2, H, W)`` (CPU, pixels, sampling convention)."""
        h, w = size
        rot = _uniform(gen, n, -self.rotation, self.rotation) * math.pi / 180
        shear = _uniform(gen, n, -self.shear, self.shear) * math.pi / 180
        s = _uniform(gen, n, *self.scale)
        a = _uniform(gen, n, -self.aspect, self.aspect)
        sx, sy = s * (1 + a), s * (1 - a)
        tx = _uniform(gen, n, -self.translation, self.translation) * w
        ty = _uniform(gen, n, -self.translation, self.translation) * h
        cos, sin, tan = torch.cos(rot), torch.sin(rot), torch.tan(shear)
        # Sampling matrix M = R @ Sh @ S: output pixel p reads src at M (p - c) + c + t.
        m00 = sx * cos
        m01 = sy * (cos * tan - sin)
        m10 = sx * sin
        m11 = sy * (sin * tan + cos)
        grid = identity_grid(h, w)[0]  # (2, H, W)
        cx, cy = (w - 1) / 2, (h - 1) / 2
        px, py = grid[0] - cx, grid[1] - cy
        view = (n, 1, 1)
        src_x = m00.view(view) * px + m01.view(view) * py + cx + tx.view(view)
        src_y = m10.view(view) * px + m11.view(view) * py + cy + ty.view(view)
        flow = torch.stack((src_x - grid[0], src_y - grid[1]), dim=1)
        if self.elastic_magnitude > 0 and self.elastic_grid > 1:
            g = self.elastic_grid
            ctrl = torch.randn(n, 2, g, g, generator=gen) * self.elastic_magnitude
            flow = flow + F.interpolate(ctrl, size=(h, w), mode='bicubic',
                                        align_corners=True)
        return flow

    def jitter_intensity(self, image: Tensor, gen: torch.Generator) -> Tensor:
        """Gamma, contrast, brightness and noise on a ``[0, 1]`` image batch."""
        n = image.shape[0]
        view = (n, 1, 1, 1)
        lg = _uniform(gen, n, math.log(self.gamma[0]), math.log(self.gamma[1]))
        gamma = torch.exp(lg).view(view).to(image)
        contrast = _uniform(gen, n, *self.contrast).view(view).to(image)
        bright = _uniform(gen, n, -self.brightness, self.brightness).view(view).to(image)
        out = image.clamp(0, 1) ** gamma
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = (out - mean) * contrast + mean + bright
        if self.noise > 0:
            noise = torch.randn(image.shape, generator=gen) * self.noise
            out = out + noise.to(image)
        return out.clamp(0, 1)

    def __call__(self, image: Tensor, mask: Tensor, n: int,
                 gen: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor, Tensor]:
        """Deform one ``(1, 1, H, W)`` image/mask pair ``n`` times.

        Returns ``(aug_image, aug_mask, flow)``, each with batch ``n``; the mask is warped
        bilinearly, so it stays a soft ``[0, 1]`` map.
        """
        if gen is None:
            gen = torch.Generator().manual_seed(0)
        h, w = image.shape[-2:]
        flow = self.sample_flow(n, (h, w), gen).to(image.device, image.dtype)
        aug_image = warp(image, flow)
        aug_mask = warp(mask.to(image.dtype), flow)
        aug_image = self.jitter_intensity(aug_image, gen)
        return aug_image, aug_mask, flow
