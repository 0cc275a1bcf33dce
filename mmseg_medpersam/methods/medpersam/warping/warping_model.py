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

import time
from contextlib import nullcontext
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.registry import OPTIMIZERS
from mmseg.registry import MODELS
from torch import Tensor

from ....utils.validate import check_number
from .augment import RandomDeformation
from .flow_net import FlowUNet  # noqa: F401  (registers the default flow network)
from .losses import mask_loss, similarity_loss, smoothness_loss
from .spatial_transformer import resize_flow, resize_image, size2, warp

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


def working_size(shape: Sequence[int], long_side: int, multiple: int = 16) -> Tuple[int, int]:
    """The network's input size for an image of ``shape``: longest side ``long_side``,
    aspect ratio kept, both sides rounded to a multiple of ``multiple`` (the U-Net's stride)."""
    h, w = int(shape[-2]), int(shape[-1])
    scale = long_side / max(h, w)
    return (max(multiple, int(round(h * scale / multiple)) * multiple),
            max(multiple, int(round(w * scale / multiple)) * multiple))


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 autocast has fast kernels here (recent GPUs, AVX512-BF16/AMX CPUs)."""
    if device.type == 'cuda':
        return torch.cuda.is_bf16_supported()
    if device.type == 'cpu':
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


DEFAULT_SIMILARITY = dict(type='ncc', window=9, scales=(1, 2, 4))
DEFAULT_LOSS_WEIGHTS = dict(similarity=1.0, smooth=0.01, aug=0.1, pseudo=1.0, mask_bce=0.0)
DEFAULT_OPTIMIZER = dict(type='Adam', lr=5e-3)
DEFAULT_CONVERGENCE = dict(window=50, tol=0.01, factor=0.5, min_iters=200, max_iters=2000)


@MODELS.register_module()
class WarpingModel(nn.Module):
    """Per-task flow network with the fit / warp API used by the Med-PerSAM head.

    Args:
        flow_net: config of the flow network (registry type, default ``'FlowUNet'``).
        work_size: ``(H, W)`` (or an int) the images are resized to for the network; None
            takes the reference's shape with its longest side ``work_long_side`` (aspect kept,
            multiples of 16), so any slice size and orientation works.
        work_long_side: the longest side of the working resolution when ``work_size`` is None.
        similarity: ``L_warp``'s image term: ``type`` 'ncc' (local NCC, any intensity scale)
            or 'mse', ``window`` of the local NCC (odd, working pixels), ``scales``: the term
            is averaged over these downsampling factors (coarse scales widen the capture range).
        loss_weights: ``similarity``, ``smooth`` (flow-gradient penalty of ``L_warp``),
            ``aug`` (``L_aug``; 0 disables it), ``pseudo`` (pseudo-label mask loss when
            retraining) and ``mask_bce`` (BCE beside soft Dice in both mask losses: BCE on
            warped binary masks has steep gradients at the boundary that can swamp ``L_warp``).
        optimizer: a ``torch.optim`` class name and its arguments (``lr``, ...).
        min_lr_ratio: the learning rate decays by cosine annealing (torch's
            ``CosineAnnealingLR``) to this fraction of ``lr``.
        iters: optimisation steps of a first fit.
        retrain_iters: steps of a retraining (fit with pseudo-labels on a fitted model).
        warm_start_iters: steps of a fit that continues a fitted network on a new pair
            (``fit(..., warm_start=True)``: a volume propagation step starts from its
            neighbour's network, whose deformation is nearly the one it needs).
        batch_size: unlabeled targets per step.
        aug_batch_size: augmented reference copies per step (``L_aug``).
        augmentation: kwargs of :class:`RandomDeformation`.
        seed: seeds the initialisation, the target sampling and the augmentations of a fit.
        infer_batch_size: targets per forward pass at inference.
        amp: 'auto' (bfloat16 autocast of the network where the device has fast bf16 kernels),
            'bf16' or 'none'. Warps and losses are computed in float32 either way.
        convergence: None (a first fit runs ``iters`` steps under the cosine schedule), or a
            dict that makes a first fit run until its loss has converged: the mean loss of
            each ``window`` steps is compared with the best so far; a window that does not
            improve it by ``tol`` (relative) multiplies the learning rate by ``factor``
            (a plateau schedule); the fit stops at a non-improving window once the
            rate is at ``min_lr_ratio`` of ``lr``, and at ``max_iters`` steps at the latest
            (never before ``min_iters``). Keys default to ``DEFAULT_CONVERGENCE``.
    """

    def __init__(self,
                 flow_net: Optional[dict] = None,
                 work_size: Union[int, Sequence[int], None] = None,
                 work_long_side: int = 192,
                 similarity: Optional[dict] = None,
                 loss_weights: Optional[dict] = None,
                 optimizer: Optional[dict] = None,
                 min_lr_ratio: float = 0.1,
                 iters: int = 700,
                 retrain_iters: int = 200,
                 warm_start_iters: int = 60,
                 batch_size: int = 4,
                 aug_batch_size: int = 1,
                 augmentation: Optional[dict] = None,
                 seed: int = 0,
                 infer_batch_size: int = 8,
                 amp: str = 'auto',
                 convergence: Optional[dict] = None) -> None:
        super().__init__()
        name = type(self).__name__
        self.similarity = dict(DEFAULT_SIMILARITY, **(similarity or {}))
        if self.similarity['type'] not in ('ncc', 'mse'):
            raise ValueError(f"{name}: similarity type must be 'ncc' or 'mse', "
                             f"got {self.similarity['type']!r}")
        unknown = set(loss_weights or {}) - set(DEFAULT_LOSS_WEIGHTS)
        if unknown:
            raise ValueError(f'{name}: unknown loss_weights {sorted(unknown)}; '
                             f'known: {sorted(DEFAULT_LOSS_WEIGHTS)}')
        self.loss_weights = dict(DEFAULT_LOSS_WEIGHTS, **(loss_weights or {}))
        self.optimizer_cfg = dict(DEFAULT_OPTIMIZER, **(optimizer or {}))
        if OPTIMIZERS.get(str(self.optimizer_cfg['type'])) is None:
            raise ValueError(f"{name}: optimizer type {self.optimizer_cfg['type']!r} is not a "
                             "registered optimizer (mmengine's OPTIMIZERS: torch.optim's)")
        if amp not in ('auto', 'bf16', 'none'):
            raise ValueError(f"{name}: amp must be 'auto', 'bf16' or 'none', got {amp!r}")
        for arg, value, low in (('iters', iters, 0), ('retrain_iters', retrain_iters, 0),
                                ('warm_start_iters', warm_start_iters, 0),
                                ('batch_size', batch_size, 1),
                                ('aug_batch_size', aug_batch_size, 1),
                                ('work_long_side', work_long_side, 16),
                                ('infer_batch_size', infer_batch_size, 1)):
            check_number(name, arg, value, minimum=low, integer=True)
        check_number(name, 'min_lr_ratio', min_lr_ratio, minimum=0, maximum=1)
        self.flow_net = MODELS.build(dict(dict(type='FlowUNet'), **(flow_net or {})))
        self.flow_net.to(memory_format=torch.channels_last)
        try:  # the optimizer's own checks (lr, betas, ...) now, not when a fit starts
            self._make_optimizer()
        except (TypeError, ValueError) as e:
            raise ValueError(f'{name}: optimizer {self.optimizer_cfg}: {e}') from e
        self.work_size = None if work_size is None else size2(work_size)
        self.work_long_side = int(work_long_side)
        self.min_lr_ratio = float(min_lr_ratio)
        self.iters = int(iters)
        self.retrain_iters = int(retrain_iters)
        self.warm_start_iters = int(warm_start_iters)
        self.batch_size = int(batch_size)
        self.aug_batch_size = int(aug_batch_size)
        self.seed = seed
        self.augment = RandomDeformation(**(augmentation or {}))
        self.infer_batch_size = int(infer_batch_size)
        self.amp = amp
        self.convergence = self._check_convergence(convergence)
        # A buffer, so a saved state dict remembers that the network was fitted.
        self.register_buffer('fitted_flag', torch.zeros((), dtype=torch.bool))

    @staticmethod
    def _check_convergence(convergence: Optional[dict]) -> Optional[dict]:
        if convergence is None:
            return None
        unknown = set(convergence) - set(DEFAULT_CONVERGENCE)
        if unknown:
            raise ValueError(f'WarpingModel: unknown convergence keys {sorted(unknown)}; '
                             f'known: {sorted(DEFAULT_CONVERGENCE)}')
        out = dict(DEFAULT_CONVERGENCE, **convergence)
        for key in ('window', 'min_iters', 'max_iters'):
            check_number('WarpingModel', f'convergence.{key}', out[key], minimum=1,
                         integer=True)
        check_number('WarpingModel', 'convergence.tol', out['tol'], minimum=0, maximum=1)
        check_number('WarpingModel', 'convergence.factor', out['factor'], minimum=0,
                     maximum=1)
        if out['min_iters'] > out['max_iters']:
            raise ValueError(f"WarpingModel: convergence.min_iters {out['min_iters']} > "
                             f"max_iters {out['max_iters']}")
        return out

    def forward(self, reference: Tensor, target: Tensor) -> Tensor:
        """Flow ``(N, 2, h, w)`` between ``(N, 1, h, w)`` working-resolution images (float32).

        Channels-last layout: the convolution kernels of oneDNN and cuDNN are faster on it.
        """
        cl = torch.channels_last
        with self._autocast():
            flow = self.flow_net(reference.contiguous(memory_format=cl),
                                 target.contiguous(memory_format=cl))
        return flow.float().contiguous()

    @property
    def device(self) -> torch.device:
        """Device of the parameters: fitting and inference run there."""
        return next(self.parameters()).device

    @property
    def fitted(self) -> bool:
        return bool(self.fitted_flag)

    def _autocast(self):
        device = self.device
        on = self.amp == 'bf16' or (self.amp == 'auto' and bf16_supported(device))
        if not on or device.type not in ('cpu', 'cuda'):
            return nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)

    # ------------------------------------------------------------------ inputs
    def _work_size(self, ref: Tensor) -> Tuple[int, int]:
        if self.work_size is not None:
            return self.work_size
        return working_size(ref.shape, self.work_long_side)

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
    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.flow_net.parameters() if p.requires_grad]
        return OPTIMIZERS.build(dict(self.optimizer_cfg, params=params))

    def _reset_flow_net(self) -> None:
        if hasattr(self.flow_net, 'init_weights'):
            self.flow_net.init_weights()
            return
        for m in self.flow_net.modules():
            if hasattr(m, 'reset_parameters') and m is not self.flow_net:
                m.reset_parameters()

    def _similarity(self, warped: Tensor, target: Tensor) -> Tensor:
        """Image similarity averaged over the pyramid levels of ``similarity['scales']``."""
        total = warped.new_zeros(())
        scales = self.similarity['scales']
        for k in scales:
            w, t = (warped, target) if k == 1 else (F.avg_pool2d(warped, k, ceil_mode=True),
                                                   F.avg_pool2d(target, k, ceil_mode=True))
            total = total + similarity_loss(w, t, self.similarity['type'],
                                            self.similarity['window'])
        return total / len(scales)

    def _loss_step(self, ref_w: Tensor, mask_w: Tensor, tgt: Tensor, pl: Optional[Tensor],
                   pl_valid: Optional[Tensor], gen: torch.Generator,
                   with_aug: bool) -> Dict[str, Tensor]:
        """Losses of one step on a batch of targets (and augmented reference copies).

        ``ref_w``, ``mask_w``: ``(k, 1, h, w)`` references; with k > 1 each target of the
        batch is paired with a reference drawn at random, and so is the augmented copy.
        """
        weights = self.loss_weights
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
                                                self.aug_batch_size, gen)
            fixed.append(aug_img)
            aug_moving = ref_w[a:a + 1].expand(aug_img.shape[0], -1, -1, -1)
            moving = torch.cat([moving, aug_moving])
            moving_mask = torch.cat([moving_mask, mask_w[a:a + 1].expand_as(aug_moving)])
        fixed = torch.cat(fixed)
        flow = self(moving, fixed)
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

    def fit(self,
            ref_image: Union[ArrayLike, Sequence[ArrayLike]],
            ref_mask: Union[ArrayLike, Sequence[ArrayLike]],
            targets: Sequence[ArrayLike],
            pseudo_labels: Optional[Sequence[Optional[ArrayLike]]] = None,
            iters: Optional[int] = None, warm_start: bool = False) -> Dict[str, float]:
        """Fit the flow network on one task; returns final losses, seconds and iterations.

        ``ref_image`` / ``ref_mask`` may be lists: k labelled references, each warped to
        every target (a reference drawn at random per target and step; the working size is
        the first one's). A first fit (re)initialises the network under ``seed``. With
        ``pseudo_labels`` (one 0/1 mask or ``None`` per target) on a fitted model, training
        continues for ``retrain_iters`` with the extra pseudo-label loss. Deterministic under
        ``seed``. ``warm_start`` on a fitted model continues from its weights for
        ``warm_start_iters`` (no pseudo-labels). Progress is logged ten times per fit.
        """
        start = time.perf_counter()
        ref_images = list(ref_image) if isinstance(ref_image, (list, tuple)) else [ref_image]
        ref_masks = list(ref_mask) if isinstance(ref_mask, (list, tuple)) else [ref_mask]
        if len(ref_images) != len(ref_masks):
            raise ValueError(f'{len(ref_images)} reference images for {len(ref_masks)} masks')
        ref_w, tgt_w, shapes, size = self._prepare(ref_images[0], targets)
        if len(ref_images) > 1:
            ref_w = torch.cat([ref_w] + [self._to_work(to_gray(r), size)
                                         for r in ref_images[1:]])
        mask_w = torch.cat([self._to_work(to_mask(m), size) for m in ref_masks])
        pl_w, pl_valid = self._pseudo_label_batch(pseudo_labels, shapes, size, ref_w)
        retrain = pseudo_labels is not None and self.fitted
        warm = warm_start and self.fitted and not retrain
        until_converged = iters is None and self.convergence is not None and not (
            retrain or warm)
        if iters is None:
            iters = (self.retrain_iters if retrain else self.warm_start_iters if warm
                     else self.convergence['max_iters'] if until_converged else self.iters)
        if tgt_w.shape[0] == 0 and not self.loss_weights['aug'] > 0:
            iters = 0
        device = self.device
        cuda = [device.index or 0] if device.type == 'cuda' else []
        seed = self.seed + (1 if retrain else 0)
        was_training = self.training
        self.train()
        # enable_grad: fits also run inside mmengine's no-grad test loop and inference tools.
        with torch.random.fork_rng(devices=cuda), torch.enable_grad():
            torch.manual_seed(seed)
            if not (retrain or warm):
                self._reset_flow_net()
            history = self._optimise(ref_w, mask_w, tgt_w, pl_w, pl_valid, iters,
                                     torch.Generator().manual_seed(seed),
                                     f'warping {"re" if retrain else ""}fit', start,
                                     self.convergence if until_converged else None)
        self.train(was_training)
        if iters > 0:
            self.fitted_flag.fill_(True)
        tail = history[-max(1, len(history) // 10):]
        result: Dict[str, float] = {
            f'loss_{k}': float(np.mean([h[k] for h in tail if k in h]))
            for k in (tail[0] if tail else {})}
        result.update(iters=len(history), seconds=time.perf_counter() - start,
                      retrain=float(retrain))
        return result

    def _pseudo_label_batch(self, pseudo_labels: Optional[Sequence[Optional[ArrayLike]]],
                            shapes: List[Tuple[int, int]], size: Tuple[int, int],
                            ref_w: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """Pseudo-labels at working size (zeros where None) and which targets have one."""
        if pseudo_labels is None:
            return None, None
        if len(pseudo_labels) != len(shapes):
            raise ValueError(f'{len(pseudo_labels)} pseudo-labels for {len(shapes)} targets')
        valid = torch.tensor([p is not None for p in pseudo_labels], device=self.device)
        if not shapes:
            return None, valid
        return torch.cat([self._to_work(to_mask(p), size) if p is not None
                          else ref_w.new_zeros((1, 1) + size) for p in pseudo_labels]), valid

    def _optimise(self, ref_w: Tensor, mask_w: Tensor, tgt_w: Tensor, pl_w: Optional[Tensor],
                  pl_valid: Optional[Tensor], iters: int, gen: torch.Generator, what: str,
                  start: float, convergence: Optional[dict] = None) -> List[Dict[str, float]]:
        """Steps over shuffled target batches: ``iters`` under a cosine learning-rate
        schedule, or (``convergence``) until the loss has converged, ``iters`` at most."""
        optim = self._make_optimizer()
        base_lr = optim.param_groups[0]['lr']
        min_lr = base_lr * self.min_lr_ratio
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            optim, T_max=max(iters, 1), eta_min=min_lr) if convergence is None else None
        plateau: Dict[str, float] = {}
        with_aug = self.loss_weights['aug'] > 0
        n_targets = tgt_w.shape[0]
        log_every = max(1, iters // 10)
        history: List[Dict[str, float]] = []
        order: List[int] = []
        for it in range(iters):
            bs = min(self.batch_size, n_targets)
            if len(order) < bs:
                order += torch.randperm(n_targets, generator=gen).tolist()
            idx, order = order[:bs], order[bs:]
            idx_t = torch.tensor(idx, dtype=torch.long, device=self.device)
            losses = self._loss_step(
                ref_w, mask_w, tgt_w[idx_t], pl_w[idx_t] if pl_w is not None else None,
                pl_valid[idx_t] if pl_valid is not None else None, gen, with_aug)
            optim.zero_grad(set_to_none=True)
            if losses['total'].requires_grad:
                losses['total'].backward()
                optim.step()
            history.append({k: float(v.detach()) for k, v in losses.items()})
            if convergence is None:
                sched.step()
            elif self._converged(optim, plateau, history, convergence, min_lr):
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

    @staticmethod
    def _converged(optim: torch.optim.Optimizer, plateau: Dict[str, float],
                   history: List[Dict[str, float]], convergence: dict, min_lr: float) -> bool:
        """At the end of each window: a window whose mean loss is not below the best by
        ``tol`` (relative to its size) lowers the rate by ``factor`` (not under ``min_lr``);
        such a window at the smallest rate means the fit has converged."""
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

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def _work_flows(self, ref_w: Tensor, tgt_w: Tensor) -> Tensor:
        was_training = self.training
        self.eval()
        flows = [
            self(ref_w.expand(chunk.shape[0], -1, -1, -1), chunk)
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
