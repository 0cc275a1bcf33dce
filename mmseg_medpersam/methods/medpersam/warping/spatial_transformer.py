"""Spatial transformer: warp images and masks with a dense displacement field.

Flow convention (used by every module of :mod:`mmseg_medpersam.methods.medpersam.warping`):

* a flow is a ``(N, 2, H, W)`` tensor of displacements in PIXELS of its own ``H x W`` grid,
  channel 0 is ``dx`` (columns), channel 1 is ``dy`` (rows);
* it is a *backward* (sampling) field: ``out[y, x] = src[y + dy, x + dx]``;
* coordinates follow ``align_corners=True``: pixel centres of the first and last row/column sit
  on the normalised coordinates -1 and +1. An integer flow therefore moves a mask exactly, and
  a flow defined on one grid samples a source of another size through normalised coordinates
  (the corner pixels of both grids coincide).
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor


def identity_grid(height: int, width: int, device=None,
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """Pixel coordinates ``(1, 2, H, W)`` of a grid: channel 0 = x, channel 1 = y."""
    ys = torch.arange(height, device=device, dtype=dtype)
    xs = torch.arange(width, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing='ij')
    return torch.stack((gx, gy))[None]


def flow_to_grid(flow: Tensor) -> Tensor:
    """Turn a pixel flow ``(N, 2, H, W)`` into a ``grid_sample`` grid ``(N, H, W, 2)``."""
    _, _, h, w = flow.shape
    pos = identity_grid(h, w, flow.device, flow.dtype) + flow
    # align_corners=True: pixel 0 -> -1, pixel size-1 -> +1. A 1-pixel axis maps to 0.
    sx = 2.0 / (w - 1) if w > 1 else 0.0
    sy = 2.0 / (h - 1) if h > 1 else 0.0
    gx = pos[:, 0] * sx - (1.0 if w > 1 else 0.0)
    gy = pos[:, 1] * sy - (1.0 if h > 1 else 0.0)
    return torch.stack((gx, gy), dim=-1)


def warp(src: Tensor, flow: Tensor, mode: str = 'bilinear',
         padding_mode: str = 'border') -> Tensor:
    """Sample ``src (N, C, Hs, Ws)`` at the positions given by ``flow (N, 2, H, W)``.

    The output has the flow's size ``(N, C, H, W)``. When ``src`` and ``flow`` share a size this
    is ``out[y, x] = src[y + dy, x + dx]`` in pixels; otherwise the positions are mapped to the
    source through normalised (corner-aligned) coordinates. ``src`` may have batch 1 and be
    broadcast over the flow's batch.
    """
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f'flow must be (N, 2, H, W), got {tuple(flow.shape)}')
    if src.dim() != 4:
        raise ValueError(f'src must be (N, C, H, W), got {tuple(src.shape)}')
    n = flow.shape[0]
    if src.shape[0] == 1 and n > 1:
        src = src.expand(n, -1, -1, -1)
    if not src.is_floating_point():
        src = src.to(flow.dtype if flow.is_floating_point() else torch.float32)
    grid = flow_to_grid(flow.to(src.dtype))
    return F.grid_sample(src, grid, mode=mode, padding_mode=padding_mode,
                         align_corners=True)


def size2(size) -> Tuple[int, int]:
    """``(h, w)`` from an int or an (h, w) pair."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def resize_flow(flow: Tensor, size: Union[Sequence[int], int]) -> Tensor:
    """Resample a pixel flow onto a grid of ``size = (H, W)``, rescaling the displacements.

    The resized flow describes the same geometric mapping, in pixels of the new grid, so a flow
    predicted at a working resolution warps full-resolution images.
    """
    h, w = size2(size)
    h0, w0 = flow.shape[-2:]
    if (h, w) == (h0, w0):
        return flow
    out = F.interpolate(flow, size=(h, w), mode='bilinear', align_corners=True)
    sx = (w - 1) / (w0 - 1) if w0 > 1 else 1.0
    sy = (h - 1) / (h0 - 1) if h0 > 1 else 1.0
    return torch.stack((out[:, 0] * sx, out[:, 1] * sy), dim=1)


def resize_image(img: Tensor, size: Union[Sequence[int], int], mode: str = 'bilinear') -> Tensor:
    """Resize ``(N, C, H, W)`` with corner-aligned geometry (matches :func:`resize_flow`).

    Downsampling is antialiased so fine structures are averaged rather than aliased.
    """
    h, w = size2(size)
    if tuple(img.shape[-2:]) == (h, w):
        return img
    if mode == 'nearest':
        return warp(img, torch.zeros(img.shape[0], 2, h, w, device=img.device,
                                     dtype=torch.float32), mode='nearest')
    down = h < img.shape[-2] or w < img.shape[-1]
    return F.interpolate(img, size=(h, w), mode=mode, align_corners=True,
                         antialias=down)


def integrate_velocity(velocity: Tensor, steps: int) -> Tensor:
    """Scaling and squaring: the displacement of ``exp(velocity)`` (a diffeomorphism).

    ``steps = 0`` returns the velocity unchanged (a plain displacement field).
    """
    if steps <= 0:
        return velocity
    flow = velocity / (2 ** steps)
    for _ in range(steps):
        flow = flow + warp(flow, flow)
    return flow
