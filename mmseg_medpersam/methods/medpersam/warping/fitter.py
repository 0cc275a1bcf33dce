"""WarpFitter: how the warping network is fitted on one task, in three explicit operations.

* ``fit``: a first fit from a fresh network: ``L_warp`` (image similarity between the warped
  reference and every unlabeled target, plus flow smoothness) and ``L_aug`` (the flow from the
  reference to a randomly deformed copy of it must warp the reference mask onto the deformed
  mask: the only supervised signal).
* ``refit``: a fitted network goes on with ``L_pseudo`` added: its warped reference mask must
  match pseudo-labels, SAM's refined predictions on the targets.
* ``warm_start``: a fitted network goes on, briefly, on a new pair (volume propagation).

The network, its working resolution and its inference are :class:`WarpingModel`'s; the fitter
owns the losses, the augmentation and the schedule.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.registry import OPTIMIZERS
from torch import Tensor

from .augment import RandomDeformation
from .intensity import ArrayLike, to_gray, to_mask
from .losses import mask_loss, similarity_loss, smoothness_loss
from .settings import LossSettings, ScheduleSettings
from .spatial_transformer import warp

if TYPE_CHECKING:
    from .warping_model import WarpingModel

#: A fit's record: final losses (``loss_*``, the mean of its last tenth), ``iters``,
#: ``seconds`` and ``retrain`` (1.0 for a refit).
FitLog = Dict[str, float]


class WarpFitter:
    """Fits a :class:`WarpingModel`'s flow network; deterministic under ``schedule.seed``.

    Args:
        losses: what a fit minimises.
        schedule: steps, batches, optimizer and learning-rate schedule of each operation.
        augment: the deformations and intensity changes of ``L_aug``'s reference copies.
    """

    def __init__(self, losses: LossSettings, schedule: ScheduleSettings,
                 augment: RandomDeformation) -> None:
        self.losses = losses
        self.schedule = schedule
        self.augment = augment

    # ------------------------------------------------------------------ operations
    def fit(self, model: 'WarpingModel', references: Sequence[ArrayLike],
            masks: Sequence[ArrayLike], targets: Sequence[ArrayLike],
            iters: Optional[int] = None) -> FitLog:
        """A first fit: the network is initialised under the seed and trained for
        ``schedule.iters`` steps (or until converged, ``schedule.convergence``)."""
        until = iters is None and self.schedule.convergence is not None
        if iters is None:
            iters = self.schedule.convergence['max_iters'] if until else self.schedule.iters
        return self._run(model, references, masks, targets, None, iters, 'warping fit',
                         fresh=True, convergence=self.schedule.convergence if until else None)

    def refit(self, model: 'WarpingModel', references: Sequence[ArrayLike],
              masks: Sequence[ArrayLike], targets: Sequence[ArrayLike],
              pseudo_labels: Sequence[Optional[ArrayLike]]) -> FitLog:
        """A fitted network trained ``schedule.retrain_iters`` more steps with the
        pseudo-label loss (one 0/1 mask or None per target)."""
        self._require_fitted(model, 'refit')
        if len(pseudo_labels) != len(targets):
            raise ValueError(f'{len(pseudo_labels)} pseudo-labels for {len(targets)} targets')
        return self._run(model, references, masks, targets, pseudo_labels,
                         self.schedule.retrain_iters, 'warping refit', seed_offset=1)

    def warm_start(self, model: 'WarpingModel', references: Sequence[ArrayLike],
                   masks: Sequence[ArrayLike], targets: Sequence[ArrayLike]) -> FitLog:
        """A fitted network trained ``schedule.warm_start_iters`` more steps on a new pair."""
        self._require_fitted(model, 'warm_start')
        return self._run(model, references, masks, targets, None,
                         self.schedule.warm_start_iters, 'warping warm start')

    @staticmethod
    def _require_fitted(model: 'WarpingModel', what: str) -> None:
        if not model.fitted:
            raise ValueError(f'WarpingModel.{what} continues a fitted network: fit it first')

    # ------------------------------------------------------------------ one run
    def _run(self, model: 'WarpingModel', references: Sequence[ArrayLike],
             masks: Sequence[ArrayLike], targets: Sequence[ArrayLike],
             pseudo_labels: Optional[Sequence[Optional[ArrayLike]]], iters: int, what: str,
             fresh: bool = False, seed_offset: int = 0,
             convergence: Optional[dict] = None) -> FitLog:
        start = time.perf_counter()
        if len(references) != len(masks):
            raise ValueError(f'{len(references)} reference images for {len(masks)} masks')
        ref_w, tgt_w, shapes, size = model.prepare(references[0], targets)
        if len(references) > 1:
            ref_w = torch.cat([ref_w] + [model.to_work(to_gray(r), size)
                                         for r in references[1:]])
        mask_w = torch.cat([model.to_work(to_mask(m), size) for m in masks])
        pl_w, pl_valid = self._pseudo_label_batch(model, pseudo_labels, shapes, size, ref_w)
        if tgt_w.shape[0] == 0 and not self.losses.weights['aug'] > 0:
            iters = 0
        device = model.device
        cuda = [device.index or 0] if device.type == 'cuda' else []
        seed = self.schedule.seed + seed_offset
        was_training = model.training
        model.train()
        # enable_grad: fits also run inside mmengine's no-grad test loop and inference tools.
        with torch.random.fork_rng(devices=cuda), torch.enable_grad():
            torch.manual_seed(seed)
            if fresh:
                model.reset_network()
            history = self._optimise(model, ref_w, mask_w, tgt_w, pl_w, pl_valid, iters,
                                     torch.Generator().manual_seed(seed), what, start,
                                     convergence)
        model.train(was_training)
        if iters > 0:
            model.fitted_flag.fill_(True)
        tail = history[-max(1, len(history) // 10):]
        result: FitLog = {f'loss_{k}': float(np.mean([h[k] for h in tail if k in h]))
                          for k in (tail[0] if tail else {})}
        result.update(iters=len(history), seconds=time.perf_counter() - start,
                      retrain=float(pseudo_labels is not None))
        return result

    @staticmethod
    def _pseudo_label_batch(model: 'WarpingModel',
                            pseudo_labels: Optional[Sequence[Optional[ArrayLike]]],
                            shapes: List[Tuple[int, int]], size: Tuple[int, int],
                            ref_w: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """Pseudo-labels at working size (zeros where None) and which targets have one."""
        if pseudo_labels is None:
            return None, None
        valid = torch.tensor([p is not None for p in pseudo_labels], device=model.device)
        if not shapes:
            return None, valid
        return torch.cat([model.to_work(to_mask(p), size) if p is not None
                          else ref_w.new_zeros((1, 1) + size) for p in pseudo_labels]), valid

    def _similarity(self, warped: Tensor, target: Tensor) -> Tensor:
        """Image similarity averaged over the pyramid levels of ``similarity['scales']``."""
        sim = self.losses.similarity
        total = warped.new_zeros(())
        for k in sim['scales']:
            w, t = (warped, target) if k == 1 else (F.avg_pool2d(warped, k, ceil_mode=True),
                                                   F.avg_pool2d(target, k, ceil_mode=True))
            total = total + similarity_loss(w, t, sim['type'], sim['window'])
        return total / len(sim['scales'])

    def _loss_step(self, model: 'WarpingModel', ref_w: Tensor, mask_w: Tensor, tgt: Tensor,
                   pl: Optional[Tensor], pl_valid: Optional[Tensor], gen: torch.Generator,
                   with_aug: bool) -> Dict[str, Tensor]:
        """Losses of one step on a batch of targets (and augmented reference copies).

        ``ref_w``, ``mask_w``: ``(k, 1, h, w)`` references; with k > 1 each target of the
        batch is paired with a reference drawn at random, and so is the augmented copy.
        """
        weights = self.losses.weights
        n_t = tgt.shape[0]
        k = ref_w.shape[0]
        pick = (torch.randint(k, (n_t,), generator=gen).to(ref_w.device) if k > 1
                else torch.zeros(n_t, dtype=torch.long, device=ref_w.device))
        moving, moving_mask = ref_w[pick], mask_w[pick]
        fixed = [tgt]
        aug_mask = None
        if with_aug:
            a = int(torch.randint(k, (1,), generator=gen)) if k > 1 else 0
            aug_img, aug_mask, _ = self.augment(ref_w[a:a + 1], mask_w[a:a + 1],
                                                self.schedule.aug_batch_size, gen)
            fixed.append(aug_img)
            aug_moving = ref_w[a:a + 1].expand(aug_img.shape[0], -1, -1, -1)
            moving = torch.cat([moving, aug_moving])
            moving_mask = torch.cat([moving_mask, mask_w[a:a + 1].expand_as(aug_moving)])
        fixed = torch.cat(fixed)
        flow = model(moving, fixed)
        losses: Dict[str, Tensor] = {}
        total = flow.new_zeros(())
        if n_t:
            losses['sim'] = self._similarity(warp(moving[:n_t], flow[:n_t]), tgt)
            total = total + weights['similarity'] * losses['sim']
        if weights['smooth']:
            losses['smooth'] = smoothness_loss(flow)
            total = total + weights['smooth'] * losses['smooth']
        if aug_mask is not None:
            losses['aug'] = mask_loss(warp(moving_mask[n_t:], flow[n_t:]), aug_mask.clamp(0, 1),
                                      bce_weight=weights['mask_bce'])
            total = total + weights['aug'] * losses['aug']
        if pl is not None and pl_valid is not None and bool(pl_valid.any()):
            warped_mask = warp(moving_mask[:n_t][pl_valid], flow[:n_t][pl_valid])
            losses['pseudo'] = mask_loss(warped_mask, pl[pl_valid],
                                         bce_weight=weights['mask_bce'])
            total = total + weights['pseudo'] * losses['pseudo']
        losses['total'] = total
        return losses

    def make_optimizer(self, model: 'WarpingModel') -> torch.optim.Optimizer:
        params = [p for p in model.flow_net.parameters() if p.requires_grad]
        return OPTIMIZERS.build(dict(self.schedule.optimizer, params=params))

    def _optimise(self, model: 'WarpingModel', ref_w: Tensor, mask_w: Tensor, tgt_w: Tensor,
                  pl_w: Optional[Tensor], pl_valid: Optional[Tensor], iters: int,
                  gen: torch.Generator, what: str, start: float,
                  convergence: Optional[dict] = None) -> List[Dict[str, float]]:
        """Steps over shuffled target batches: ``iters`` under a cosine learning-rate
        schedule, or (``convergence``) until the loss has converged, ``iters`` at most."""
        optim = self.make_optimizer(model)
        base_lr = optim.param_groups[0]['lr']
        min_lr = base_lr * self.schedule.min_lr_ratio
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            optim, T_max=max(iters, 1), eta_min=min_lr) if convergence is None else None
        plateau: Dict[str, float] = {}
        with_aug = self.losses.weights['aug'] > 0
        n_targets = tgt_w.shape[0]
        log_every = max(1, iters // 10)
        history: List[Dict[str, float]] = []
        order: List[int] = []
        for it in range(iters):
            bs = min(self.schedule.batch_size, n_targets)
            if len(order) < bs:
                order += torch.randperm(n_targets, generator=gen).tolist()
            idx, order = order[:bs], order[bs:]
            idx_t = torch.tensor(idx, dtype=torch.long, device=model.device)
            losses = self._loss_step(
                model, ref_w, mask_w, tgt_w[idx_t], pl_w[idx_t] if pl_w is not None else None,
                pl_valid[idx_t] if pl_valid is not None else None, gen, with_aug)
            optim.zero_grad(set_to_none=True)
            if losses['total'].requires_grad:
                losses['total'].backward()
                optim.step()
            history.append({k: float(v.detach()) for k, v in losses.items()})
            if convergence is None:
                sched.step()
            elif plateau_converged(optim, plateau, history, convergence, min_lr):
                print_log(f'{what}: converged at step {it + 1} (loss '
                          f'{history[-1]["total"]:.4f}, {time.perf_counter() - start:.1f} s)',
                          logger='current')
                break
            if (it + 1) % log_every == 0 or it + 1 == iters:
                elapsed = time.perf_counter() - start
                eta = elapsed / (it + 1) * (iters - it - 1)
                print_log(f'{what} {it + 1}/{iters}{" at most" if convergence else ""}: loss '
                          f'{history[-1]["total"]:.4f}, {elapsed:.1f} s, ETA {eta:.0f} s',
                          logger='current')
        return history


def plateau_converged(optim: torch.optim.Optimizer, plateau: Dict[str, float],
                      history: List[Dict[str, float]], convergence: dict,
                      min_lr: float) -> bool:
    """The convergence rule, at the end of each window: a window whose mean loss is not below
    the best by ``tol`` (relative to its size) lowers the rate by ``factor`` (not under
    ``min_lr``); such a window at the smallest rate means the fit has converged."""
    window = convergence['window']
    if len(history) % window:
        return False
    mean = float(np.mean([h['total'] for h in history[-window:]]))
    best = plateau.get('best')
    if best is None or mean < best - convergence['tol'] * abs(best):
        plateau['best'] = mean
        return False
    lr = optim.param_groups[0]['lr']
    if lr <= min_lr * (1 + 1e-6):
        return len(history) >= convergence['min_iters']
    for group in optim.param_groups:
        group['lr'] = max(group['lr'] * convergence['factor'], min_lr)
    return False


__all__ = ['FitLog', 'WarpFitter', 'plateau_converged']
