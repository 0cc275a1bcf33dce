"""WarpingModel: the per-task flow network that warps the reference mask onto each target.

Med-PerSAM's first stage. This module is the network and its inference: images become one
gray channel at a working resolution (:mod:`.intensity`, :func:`working_size`), the network
predicts a flow per target, and flows are resized back (:func:`resize_flow`), so the
full-resolution reference mask is warped to each target's original size, whatever the sizes of
reference and targets. How the network is fitted on a task (``fit``, ``refit``,
``warm_start``) is :class:`~.fitter.WarpFitter`'s; the settings are typed in :mod:`.settings`.
"""
from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmseg.registry import MODELS
from torch import Tensor

from .augment import RandomDeformation
from .fitter import FitLog, WarpFitter
from .flow_net import FlowUNet  # noqa: F401  (registers the default flow network)
from .intensity import ArrayLike, to_gray, to_mask
from .settings import (
    FLAT_KEYS,
    LossSettings,
    NetworkSettings,
    ScheduleSettings,
    group_flat_keys,
)
from .spatial_transformer import resize_flow, resize_image, warp


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


@MODELS.register_module()
class WarpingModel(nn.Module):
    """Per-task flow network with the fit / warp API of the Med-PerSAM head.

    Args:
        network: :class:`NetworkSettings` as a dict: ``flow_net``, ``work_size``,
            ``work_long_side``, ``infer_batch_size``, ``amp``.
        losses: :class:`LossSettings` as a dict: ``similarity``, ``weights``.
        schedule: :class:`ScheduleSettings` as a dict: ``iters``, ``retrain_iters``,
            ``warm_start_iters``, ``batch_size``, ``aug_batch_size``, ``optimizer``,
            ``min_lr_ratio``, ``seed``, ``convergence``.
        augmentation: kwargs of :class:`RandomDeformation` (the copies of ``L_aug``).
        **flat: the flat keys of earlier releases (``iters=...``, ``loss_weights=...``,
            ``work_long_side=...``: ``settings.FLAT_KEYS``), each moved into its group with
            a warning.
    """

    def __init__(self, network: Optional[Dict[str, Any]] = None,
                 losses: Optional[Dict[str, Any]] = None,
                 schedule: Optional[Dict[str, Any]] = None,
                 augmentation: Optional[Dict[str, Any]] = None, **flat: Any) -> None:
        super().__init__()
        groups = group_flat_keys(dict(network=network, losses=losses, schedule=schedule), flat)
        if flat:
            moved = ', '.join(f'{k} -> {".".join(FLAT_KEYS[k])}' for k in sorted(flat))
            print_log(f'WarpingModel: flat settings read into their groups ({moved}); '
                      'write them grouped', logger='current', level=logging.WARNING)
        self.network = NetworkSettings.from_cfg(groups['network'])
        self.fitter = WarpFitter(LossSettings.from_cfg(groups['losses']),
                                 ScheduleSettings.from_cfg(groups['schedule']),
                                 RandomDeformation(**(augmentation or {})))
        self.flow_net = MODELS.build(dict(self.network.flow_net))
        self.flow_net.to(memory_format=torch.channels_last)
        try:  # the optimizer's own checks (lr, betas, ...) now, not when a fit starts
            self.fitter.make_optimizer(self)
        except (TypeError, ValueError) as e:
            raise ValueError(f'WarpingModel: optimizer {self.fitter.schedule.optimizer}: '
                             f'{e}') from e
        # A buffer, so a saved state dict remembers that the network was fitted.
        self.register_buffer('fitted_flag', torch.zeros((), dtype=torch.bool))

    # ------------------------------------------------------------------ fitting
    def fit(self, references: Sequence[ArrayLike], masks: Sequence[ArrayLike],
            targets: Sequence[ArrayLike], iters: Optional[int] = None) -> FitLog:
        """A first fit on a task (``WarpFitter.fit``); k references as lists of k."""
        return self.fitter.fit(self, _listed(references), _listed(masks), targets, iters)

    def refit(self, references: Sequence[ArrayLike], masks: Sequence[ArrayLike],
              targets: Sequence[ArrayLike],
              pseudo_labels: Sequence[Optional[ArrayLike]]) -> FitLog:
        """The fitted network trained on with pseudo-labels (``WarpFitter.refit``)."""
        return self.fitter.refit(self, _listed(references), _listed(masks), targets,
                                 pseudo_labels)

    def warm_start(self, references: Sequence[ArrayLike], masks: Sequence[ArrayLike],
                   targets: Sequence[ArrayLike]) -> FitLog:
        """The fitted network trained briefly on a new pair (``WarpFitter.warm_start``)."""
        return self.fitter.warm_start(self, _listed(references), _listed(masks), targets)

    def reset_network(self) -> None:
        """The flow network's initial weights (under the caller's seed)."""
        if hasattr(self.flow_net, 'init_weights'):
            self.flow_net.init_weights()
            return
        for m in self.flow_net.modules():
            if hasattr(m, 'reset_parameters') and m is not self.flow_net:
                m.reset_parameters()

    # ------------------------------------------------------------------ the network
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
        amp = self.network.amp
        on = amp == 'bf16' or (amp == 'auto' and bf16_supported(device))
        if not on or device.type not in ('cpu', 'cuda'):
            return nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)

    # ------------------------------------------------------------------ inputs
    def work_size(self, ref: Tensor) -> Tuple[int, int]:
        """The working resolution for a reference of ``ref``'s shape."""
        if self.network.work_size is not None:
            return self.network.work_size
        return working_size(ref.shape, self.network.work_long_side)

    def to_work(self, img: Tensor, size: Tuple[int, int]) -> Tensor:
        """``(H, W)`` CPU tensor -> ``(1, 1, h, w)`` on the model's device."""
        return resize_image(img[None, None].to(self.device), size)

    def prepare(self, ref_image: ArrayLike, targets: Sequence[ArrayLike]
                ) -> Tuple[Tensor, Tensor, List[Tuple[int, int]], Tuple[int, int]]:
        """The reference and targets at working resolution, the targets' shapes, the size."""
        ref = to_gray(ref_image)
        size = self.work_size(ref)
        ref_w = self.to_work(ref, size)
        tgts = [to_gray(t) for t in targets]
        shapes = [tuple(t.shape) for t in tgts]
        if tgts:
            tgt_w = torch.cat([self.to_work(t, size) for t in tgts])
        else:
            tgt_w = ref_w.new_zeros((0, 1) + size)
        return ref_w, tgt_w, shapes, size

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def _work_flows(self, ref_w: Tensor, tgt_w: Tensor) -> Tensor:
        was_training = self.training
        self.eval()
        flows = [
            self(ref_w.expand(chunk.shape[0], -1, -1, -1), chunk)
            for chunk in torch.split(tgt_w, self.network.infer_batch_size)
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
        ref_w, tgt_w, shapes, _ = self.prepare(ref_image, targets)
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


def _listed(x) -> list:
    """k references (or masks) as a list; one may be given bare."""
    return list(x) if isinstance(x, (list, tuple)) else [x]


__all__ = ['WarpingModel', 'bf16_supported', 'to_gray', 'to_mask', 'working_size']
