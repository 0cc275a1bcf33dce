"""WarpingModel: fit a flow network per task and warp the reference mask onto each target.

Med-PerSAM's first stage. The network is trained transductively on one task:

* ``L_warp``: image similarity between the warped reference and every unlabeled target plus
  a smoothness penalty on the flow;
* ``L_aug``: the flow from the reference to a randomly deformed copy of it must warp the
  reference mask onto the deformed mask (Dice + BCE), the only supervised signal;
* ``L_pseudo`` (retraining): the warped reference mask must match pseudo-labels, SAM's refined
  predictions on the targets.

Images are converted to grayscale ``[0, 1]`` and resized to a working resolution; predicted
flows are resized back (:func:`resize_flow`), so the full-resolution reference mask is warped
to each target's original size, whatever the sizes of reference and targets.
"""
from __future__ import annotations

import math
import time
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import Tensor

from .augment import RandomDeformation
from .flow_net import FlowUNet
from .losses import mask_loss, similarity_loss, smoothness_loss
from .spatial_transformer import resize_flow, resize_image, warp

ArrayLike = Union[np.ndarray, Tensor]
_RGB_WEIGHTS = (0.299, 0.587, 0.114)


def to_gray(image: ArrayLike) -> Tensor:
    """A ``(H, W)`` float32 CPU tensor in ``[0, 1]`` from a grayscale or RGB image.

    Accepts ``(H, W)``, ``(1|3, H, W)`` or ``(H, W, 1|3)`` arrays or tensors. Scaling: bool images
    are 0/1; integer images and float images within ``[0, 255]`` (but not ``[0, 1]``) are
    divided by 255; other float images (e.g. raw MRI) are min-max normalised.
    """
    x = image.detach().cpu() if isinstance(image, Tensor) else torch.as_tensor(
        np.asarray(image))
    if x.dim() == 3:
        if x.shape[0] not in (1, 3):
            if x.shape[-1] not in (1, 3):
                raise ValueError(f'cannot read an image of shape {tuple(x.shape)}')
            x = x.permute(2, 0, 1)
    elif x.dim() != 2:
        raise ValueError(f'expected a 2D grayscale or RGB image, got {tuple(x.shape)}')
    kind = 'bool' if x.dtype == torch.bool else 'float' if x.is_floating_point() else 'int'
    x = x.float()
    if x.dim() == 3:
        x = x[0] if x.shape[0] == 1 else sum(w * c for w, c in zip(_RGB_WEIGHTS, x))
    if kind == 'bool':
        return x
    if kind == 'int':
        return (x / 255.0).clamp(0, 1)
    lo, hi = (float(x.min()), float(x.max())) if x.numel() else (0.0, 0.0)
    if lo >= 0 and hi <= 1:
        return x
    if lo >= 0 and hi <= 255:
        return x / 255.0
    return (x - lo) / max(hi - lo, 1e-8)


def to_mask(mask: ArrayLike) -> Tensor:
    """A ``(H, W)`` float32 CPU map from a bool / 0-1 mask or any float map (kept as is)."""
    m = mask.detach().cpu() if isinstance(mask, Tensor) else torch.as_tensor(np.asarray(mask))
    while m.dim() > 2 and m.shape[0] == 1:
        m = m[0]
    if m.dim() != 2:
        raise ValueError(f'expected a (H, W) mask, got {tuple(m.shape)}')
    return m.float()


def _pair(size: Union[int, Sequence[int], None]) -> Optional[Tuple[int, int]]:
    if size is None:
        return None
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[1])


@MODELS.register_module()
class WarpingModel(nn.Module):
    """Per-task flow network with the fit / warp API used by the Med-PerSAM segmentor.

    Args:
        flow_net: config of the flow network (``type`` defaults to ``'FlowUNet'``).
        work_size: ``(H, W)`` (or an int) the images are resized to for the network; ``None``
            uses the reference size rounded up to a multiple of 16.
        similarity: ``'ncc'`` (local NCC, any modality scaling) or ``'mse'``.
        ncc_window: window of the local NCC, in working pixels (odd).
        sim_scales: the similarity is averaged over these downsampling factors of the warped
            and target images (e.g. ``(1, 2, 4)``); coarse scales widen the capture range.
        smooth_weight: weight of the flow-gradient penalty in ``L_warp``.
        aug_weight: weight of ``L_aug``; 0 disables it.
        pseudo_weight: weight of the pseudo-label mask loss (used when pseudo-labels are given).
        mask_bce_weight: weight of BCE beside soft Dice in the mask losses (``L_aug`` and the
            pseudo-label loss). BCE on warped binary masks has steep gradients at the
            boundary that can swamp ``L_warp``.
        iters: optimisation steps of a first fit.
        retrain_iters: steps of a retraining (fit with pseudo-labels on a fitted model).
        lr: learning rate; decays with a cosine schedule to ``min_lr_ratio * lr``.
        min_lr_ratio: final fraction of the learning rate (1 keeps it constant).
        optimizer: ``'adam'`` or ``'adamw'`` (``weight_decay`` for the latter).
        weight_decay: weight decay of AdamW.
        batch_size: unlabeled targets per step.
        aug_batch_size: augmented reference copies per step (``L_aug``).
        seed: seeds the initialisation, the target sampling and the augmentations of a fit.
        augmentation: kwargs of :class:`RandomDeformation`.
        infer_batch_size: targets per forward pass at inference.
    """

    def __init__(self,
                 flow_net: Optional[dict] = None,
                 work_size: Union[int, Sequence[int], None] = (224, 192),
                 similarity: str = 'ncc',
                 ncc_window: int = 9,
                 sim_scales: Sequence[int] = (1, 2, 4),
                 smooth_weight: float = 0.01,
                 aug_weight: float = 0.1,
                 pseudo_weight: float = 1.0,
                 mask_bce_weight: float = 0.0,
                 iters: int = 1000,
                 retrain_iters: int = 300,
                 lr: float = 3e-3,
                 min_lr_ratio: float = 0.1,
                 optimizer: str = 'adam',
                 weight_decay: float = 0.0,
                 batch_size: int = 4,
                 aug_batch_size: int = 1,
                 seed: int = 0,
                 augmentation: Optional[dict] = None,
                 infer_batch_size: int = 8) -> None:
        super().__init__()
        if similarity not in ('ncc', 'mse'):
            raise ValueError(f"similarity must be 'ncc' or 'mse', got {similarity!r}")
        if optimizer not in ('adam', 'adamw'):
            raise ValueError(f"optimizer must be 'adam' or 'adamw', got {optimizer!r}")
        self.flow_net = self._build_flow_net(flow_net)
        self.work_size = _pair(work_size)
        self.similarity = similarity
        self.ncc_window = ncc_window
        self.sim_scales = tuple(int(k) for k in sim_scales)
        self.smooth_weight = smooth_weight
        self.aug_weight = aug_weight
        self.pseudo_weight = pseudo_weight
        self.mask_bce_weight = mask_bce_weight
        self.iters = iters
        self.retrain_iters = retrain_iters
        self.lr = lr
        self.min_lr_ratio = min_lr_ratio
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.aug_batch_size = aug_batch_size
        self.seed = seed
        self.augment = RandomDeformation(**(augmentation or {}))
        self.infer_batch_size = infer_batch_size
        # A buffer, so a saved state dict remembers that the network was fitted.
        self.register_buffer('fitted_flag', torch.zeros((), dtype=torch.bool))

    @staticmethod
    def _build_flow_net(cfg: Optional[dict]) -> nn.Module:
        if isinstance(cfg, nn.Module):
            return cfg
        cfg = dict(cfg or {})
        kind = cfg.pop('type', 'FlowUNet')
        if kind in ('FlowUNet', FlowUNet):
            return FlowUNet(**cfg)
        return MODELS.build(dict(type=kind, **cfg))

    def forward(self, reference: Tensor, target: Tensor) -> Tensor:
        """Flow ``(N, 2, h, w)`` between ``(N, 1, h, w)`` working-resolution images."""
        return self.flow_net(reference, target)

    @property
    def device(self) -> torch.device:
        """Device of the parameters: fitting and inference run there."""
        return next(self.parameters()).device

    @property
    def fitted(self) -> bool:
        return bool(self.fitted_flag)

    # ------------------------------------------------------------------ inputs
    def _work_size(self, ref: Tensor) -> Tuple[int, int]:
        if self.work_size is not None:
            return self.work_size
        h, w = ref.shape[-2:]
        return int(math.ceil(h / 16) * 16), int(math.ceil(w / 16) * 16)

    def _to_work(self, img: Tensor, size: Tuple[int, int]) -> Tensor:
        """``(H, W)`` CPU tensor -> ``(1, 1, h, w)`` on the model's device."""
        return resize_image(img[None, None].to(self.device), size)

    def _prepare(self, ref_image: ArrayLike, targets: Sequence[ArrayLike]
                 ) -> Tuple[Tensor, Tensor, List[Tuple[int, int]], Tuple[int, int]]:
        ref = to_gray(ref_image)
        size = self._work_size(ref)
        ref_w = self._to_work(ref, size)
        tgts = [to_gray(t) for t in targets]
        shapes = [tuple(t.shape) for t in tgts]
        if tgts:
            tgt_w = torch.cat([self._to_work(t, size) for t in tgts])
        else:
            tgt_w = ref_w.new_zeros((0, 1) + size)
        return ref_w, tgt_w, shapes, size

    # ------------------------------------------------------------------ training
    def _make_optimizer(self, lr: float) -> torch.optim.Optimizer:
        params = [p for p in self.flow_net.parameters() if p.requires_grad]
        if self.optimizer == 'adamw':
            return torch.optim.AdamW(params, lr=lr, weight_decay=self.weight_decay)
        return torch.optim.Adam(params, lr=lr)

    def _reset_flow_net(self) -> None:
        if hasattr(self.flow_net, 'init_weights'):
            self.flow_net.init_weights()
            return
        for m in self.flow_net.modules():
            if hasattr(m, 'reset_parameters') and m is not self.flow_net:
                m.reset_parameters()

    def _similarity(self, warped: Tensor, target: Tensor) -> Tensor:
        """Image similarity averaged over the pyramid levels ``sim_scales``."""
        total = warped.new_zeros(())
        for k in self.sim_scales:
            w, t = (warped, target) if k == 1 else (F.avg_pool2d(warped, k, ceil_mode=True),
                                                   F.avg_pool2d(target, k, ceil_mode=True))
            total = total + similarity_loss(w, t, self.similarity, self.ncc_window)
        return total / len(self.sim_scales)

    def _loss_step(self, ref_w: Tensor, mask_w: Tensor, tgt: Tensor, pl: Optional[Tensor],
                   pl_valid: Optional[Tensor], gen: torch.Generator,
                   with_aug: bool) -> Dict[str, Tensor]:
        """Losses of one step on a batch of targets (and augmented reference copies)."""
        n_t = tgt.shape[0]
        fixed = [tgt]
        aug_mask = None
        if with_aug:
            aug_img, aug_mask, _ = self.augment(ref_w, mask_w, self.aug_batch_size, gen)
            fixed.append(aug_img)
        fixed = torch.cat(fixed)
        moving = ref_w.expand(fixed.shape[0], -1, -1, -1)
        flow = self.flow_net(moving, fixed)
        losses: Dict[str, Tensor] = {}
        total = flow.new_zeros(())
        if n_t:
            warped = warp(ref_w, flow[:n_t])
            losses['sim'] = self._similarity(warped, tgt)
            total = total + losses['sim']
        if self.smooth_weight:
            losses['smooth'] = smoothness_loss(flow)
            total = total + self.smooth_weight * losses['smooth']
        if aug_mask is not None:
            losses['aug'] = mask_loss(warp(mask_w, flow[n_t:]), aug_mask.clamp(0, 1),
                                      bce_weight=self.mask_bce_weight)
            total = total + self.aug_weight * losses['aug']
        if pl is not None and pl_valid is not None and bool(pl_valid.any()):
            warped_mask = warp(mask_w, flow[:n_t][pl_valid])
            losses['pseudo'] = mask_loss(warped_mask, pl[pl_valid],
                                         bce_weight=self.mask_bce_weight)
            total = total + self.pseudo_weight * losses['pseudo']
        losses['total'] = total
        return losses

    def fit(self,
            ref_image: ArrayLike,
            ref_mask: ArrayLike,
            targets: Sequence[ArrayLike],
            pseudo_labels: Optional[Sequence[Optional[ArrayLike]]] = None,
            iters: Optional[int] = None) -> Dict[str, float]:
        """Fit the flow network on one task; returns final losses, seconds and iterations.

        A first fit (re)initialises the network under ``seed``. With ``pseudo_labels``
        (one 0/1 mask or ``None`` per target) on a fitted model, training continues for
        ``retrain_iters`` with the extra pseudo-label loss. Deterministic under ``seed``.
        """
        start = time.perf_counter()
        device = self.device
        ref_w, tgt_w, shapes, size = self._prepare(ref_image, targets)
        mask_w = self._to_work(to_mask(ref_mask), size)
        retrain = pseudo_labels is not None and self.fitted
        if iters is None:
            iters = self.retrain_iters if retrain else self.iters
        pl_w = pl_valid = None
        if pseudo_labels is not None:
            if len(pseudo_labels) != len(shapes):
                raise ValueError(f'{len(pseudo_labels)} pseudo-labels for {len(shapes)} targets')
            pl_valid = torch.tensor([p is not None for p in pseudo_labels], device=device)
            pl_w = torch.cat([
                self._to_work(to_mask(p), size) if p is not None else
                ref_w.new_zeros((1, 1) + size) for p in pseudo_labels
            ]) if len(shapes) else None
        with_aug = self.aug_weight > 0
        n_targets = tgt_w.shape[0]
        if n_targets == 0 and not with_aug:
            iters = 0
        cuda = [device.index or 0] if device.type == 'cuda' else []
        seed = self.seed + (1 if retrain else 0)
        history: List[Dict[str, float]] = []
        was_training = self.training
        self.train()
        # enable_grad: fits also run inside mmengine's no-grad test loop and inference tools.
        with torch.random.fork_rng(devices=cuda), torch.enable_grad():
            torch.manual_seed(seed)
            if not retrain:
                self._reset_flow_net()
            gen = torch.Generator().manual_seed(seed)
            optim = self._make_optimizer(self.lr)
            order: List[int] = []
            for it in range(iters):
                scale = self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (
                    1 + math.cos(math.pi * it / max(iters, 1)))
                for group in optim.param_groups:
                    group['lr'] = self.lr * scale
                bs = min(self.batch_size, n_targets)
                if len(order) < bs:
                    order += torch.randperm(n_targets, generator=gen).tolist()
                idx, order = order[:bs], order[bs:]
                idx_t = torch.tensor(idx, dtype=torch.long, device=device)
                losses = self._loss_step(
                    ref_w, mask_w, tgt_w[idx_t],
                    pl_w[idx_t] if pl_w is not None else None,
                    pl_valid[idx_t] if pl_valid is not None else None,
                    gen, with_aug)
                optim.zero_grad(set_to_none=True)
                if losses['total'].requires_grad:
                    losses['total'].backward()
                    optim.step()
                history.append({k: float(v.detach()) for k, v in losses.items()})
        self.train(was_training)
        if iters > 0:
            self.fitted_flag.fill_(True)
        tail = history[-max(1, len(history) // 10):]
        result: Dict[str, float] = {
            f'loss_{k}': float(np.mean([h[k] for h in tail if k in h]))
            for k in (tail[0] if tail else {})}
        result.update(iters=iters, seconds=time.perf_counter() - start,
                      retrain=float(retrain))
        return result

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def _work_flows(self, ref_w: Tensor, tgt_w: Tensor) -> Tensor:
        was_training = self.training
        self.eval()
        flows = [
            self.flow_net(ref_w.expand(chunk.shape[0], -1, -1, -1), chunk)
            for chunk in torch.split(tgt_w, self.infer_batch_size)
        ]
        self.train(was_training)
        if not flows:
            return ref_w.new_zeros((0, 2) + tuple(ref_w.shape[-2:]))
        return torch.cat(flows)

    @torch.no_grad()
    def predict_flow(self, ref_image: ArrayLike, targets: Sequence[ArrayLike]) -> List[Tensor]:
        """Flows ``(2, H_i, W_i)`` from the reference to each target, at the target's size.

        Pixels of the target grid, sampling convention: ``warp(ref[None, None], flow[None])``
        is the reference brought onto target ``i`` (sizes may differ, see
        :mod:`.spatial_transformer`).
        """
        ref_w, tgt_w, shapes, _ = self._prepare(ref_image, targets)
        flows = self._work_flows(ref_w, tgt_w)
        return [resize_flow(f[None], s)[0] for f, s in zip(flows, shapes)]

    @torch.no_grad()
    def warp_masks(self, ref_image: ArrayLike, ref_mask: ArrayLike,
                   targets: Sequence[ArrayLike]) -> List[Tensor]:
        """The reference mask warped onto each target: ``(H_i, W_i)`` maps at original size.

        The full-resolution reference mask is sampled bilinearly, so a 0/1 mask gives a
        probability in ``[0, 1]`` (threshold 0.5 for a mask); any float map is warped alike.
        A ``(C, H, W)`` stack of maps (e.g. one per class) gives ``(C, H_i, W_i)`` maps from a
        single flow prediction. Tensors are on the model's device.
        """
        maps = ref_mask.detach().cpu() if isinstance(ref_mask, Tensor) else torch.as_tensor(
            np.asarray(ref_mask))
        stacked = maps.dim() == 3 and maps.shape[0] > 1
        maps = (maps.float() if stacked else to_mask(maps)[None]).to(self.device)
        if maps.numel() == 0:
            raise ValueError('empty reference mask array')
        flows = self.predict_flow(ref_image, targets)
        # Bilinear sampling is a convex combination: clamp away float rounding only.
        lo, hi = float(maps.min()), float(maps.max())
        out = [warp(maps[None], f[None])[0].clamp(lo, hi) for f in flows]
        return out if stacked else [o[0] for o in out]
