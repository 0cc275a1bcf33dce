"""PerSAM-F's learnable fusion of SAM's three multimask outputs, fitted on the reference."""
from __future__ import annotations

from typing import List, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor
from torchvision.ops import sigmoid_focal_loss

from ...utils.masks import soft_dice_loss


class MultimaskFusion(nn.Module):
    """Two free scalars w1, w2 giving weights (1 - w1 - w2, w1, w2) over SAM's 3 masks."""

    def __init__(self) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.full((2, ), 1 / 3))

    def full_weights(self) -> Tensor:
        """(3,) weights of the three outputs (they sum to one)."""
        return torch.cat([1 - self.weights.sum(dim=0, keepdim=True), self.weights])

    def forward(self, logits: Tensor) -> Tensor:
        """(3, ...) logits -> (...) weighted sum."""
        return torch.einsum('k,k...->...', self.full_weights(), logits)


def dice_loss(logits: Tensor, target: Tensor) -> Tensor:
    """PerSAM-F's smoothed soft Dice (+1 on both sides) on sigmoid probabilities."""
    return soft_dice_loss(logits.sigmoid()[None], target.float()[None], eps=1.0)


def fit_multimask_fusion(logits: Union[Tensor, Sequence[Tensor]],
                         target: Union[Tensor, Sequence[Tensor]], iters: int = 1000,
                         lr: float = 1e-3,
                         eps: float = 1e-4, weight_decay: float = 0.01, alpha: float = 0.25,
                         gamma: float = 2.0) -> Tuple[Tensor, List[float]]:
    """Fit the fusion weights so the fused logits of the 3 outputs match ``target``.

    The SAM outputs are fixed (computed once), so only 2 scalars are optimised: Dice + sigmoid
    focal loss, AdamW with a cosine schedule, as PerSAM-F. Runs with gradients enabled even
    inside mmengine's no-grad test loop.

    Args:
        logits: (3, H, W) SAM logits of the reference image (no gradient needed), or one
            such tensor per reference (k references: the loss is their mean).
        target: (H, W) reference mask, or one per reference.

    Returns:
        the (3,) fitted weights and the loss before and after fitting.
    """
    logits_list = [logits] if isinstance(logits, Tensor) else list(logits)
    targets = [target] if isinstance(target, Tensor) else list(target)
    if len(logits_list) != len(targets) or not logits_list:
        raise ValueError(f'{len(logits_list)} logits for {len(targets)} reference masks')
    logits_list = [x.detach().float() for x in logits_list]
    device = logits_list[0].device
    targets = [t.float().to(device) for t in targets]
    fusion = MultimaskFusion().to(device)
    with torch.enable_grad():
        opt = torch.optim.AdamW(fusion.parameters(), lr=lr, eps=eps, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(iters, 1))

        def one_loss(logits: Tensor, target: Tensor) -> Tensor:
            fused = fusion(logits)
            return dice_loss(fused, target) + sigmoid_focal_loss(
                fused, target, alpha=alpha, gamma=gamma, reduction='mean')

        def loss_fn() -> Tensor:
            if len(targets) == 1:
                return one_loss(logits_list[0], targets[0])
            return sum(one_loss(x, t) for x, t in zip(logits_list, targets)) / len(targets)

        losses = [loss_fn().item()]
        for _ in range(iters):
            loss = loss_fn()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        losses.append(loss_fn().item())
    return fusion.full_weights().detach(), losses
