"""Losses of the warping model: image similarity, flow smoothness and mask overlap.

All losses take ``(N, C, H, W)`` tensors and return a scalar (mean over the batch).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ....utils.masks import soft_dice_loss


def box_mean(x: Tensor, window: int) -> Tensor:
    """Local mean over a ``window x window`` box (zero padding, true-count normalised).

    Box sums are differences of running sums (rows, then columns; the true counts factorise
    too): the cost per pixel does not grow with the window, and a 9 x 9 mean with its
    gradient takes a third of the time of two 1D average poolings on these CPUs (the local
    NCC calls it 15 times per fitting step). In float32 at least, whatever the autocast:
    running sums in bfloat16 would lose the differences.
    """
    r = window // 2
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    return _running_mean(_running_mean(x, r, dim=-1), r, dim=-2)


def _running_mean(x: Tensor, r: int, dim: int) -> Tensor:
    """Mean over ``[i - r, i + r]`` along ``dim`` (clipped at the borders) for every ``i``."""
    n = x.shape[dim]
    pad = (1, 0) if dim == -1 else (0, 0, 1, 0)
    sums = F.pad(torch.cumsum(x, dim), pad)  # sums[i] = x[0] + ... + x[i - 1]
    index = torch.arange(n, device=x.device)
    hi = (index + r + 1).clamp(max=n)
    lo = (index - r).clamp(min=0)
    count = (hi - lo).to(x.dtype)
    shape = (n, 1) if dim == -2 else (n, )
    return (sums.index_select(dim, hi) - sums.index_select(dim, lo)) / count.reshape(shape)


def local_ncc_loss(pred: Tensor, target: Tensor, window: int = 9,
                   eps: float = 1e-5) -> Tensor:
    """``1 - mean(local NCC^2)``: intensity-scale invariant, the usual registration loss.

    Squared NCC in windows of ``window`` pixels (odd), as in VoxelMorph.
    """
    if window % 2 == 0:
        raise ValueError(f'NCC window must be odd, got {window}')
    mu_p = box_mean(pred, window)
    mu_t = box_mean(target, window)
    var_p = (box_mean(pred * pred, window) - mu_p * mu_p).clamp_min(0)
    var_t = (box_mean(target * target, window) - mu_t * mu_t).clamp_min(0)
    cross = box_mean(pred * target, window) - mu_p * mu_t
    ncc = cross * cross / (var_p * var_t + eps)
    return 1.0 - ncc.mean()


def mse_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared intensity difference (for images of the same modality and scale)."""
    return F.mse_loss(pred, target)


def similarity_loss(pred: Tensor, target: Tensor, kind: str = 'ncc',
                    window: int = 9) -> Tensor:
    """Dispatch on ``kind`` in ``{'ncc', 'mse'}``."""
    if kind == 'ncc':
        return local_ncc_loss(pred, target, window)
    if kind == 'mse':
        return mse_loss(pred, target)
    raise ValueError(f"similarity must be 'ncc' or 'mse', got {kind!r}")


def smoothness_loss(flow: Tensor) -> Tensor:
    """Mean squared forward difference of the flow along x and y (diffusion regulariser)."""
    dx = flow[..., :, 1:] - flow[..., :, :-1]
    dy = flow[..., 1:, :] - flow[..., :-1, :]
    loss = flow.new_zeros(())
    if dx.numel():
        loss = loss + dx.pow(2).mean()
    if dy.numel():
        loss = loss + dy.pow(2).mean()
    return loss


def mask_loss(prob: Tensor, target: Tensor, dice_weight: float = 1.0,
              bce_weight: float = 1.0) -> Tensor:
    """Soft Dice + binary cross-entropy between a warped mask probability and a mask."""
    prob = prob.clamp(1e-6, 1 - 1e-6)
    target = target.to(prob.dtype)
    loss = prob.new_zeros(())
    if dice_weight:
        loss = loss + dice_weight * soft_dice_loss(prob, target)
    if bce_weight:
        loss = loss + bce_weight * F.binary_cross_entropy(prob, target)
    return loss
